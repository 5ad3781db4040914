"""Planning is pure: a warning and a directory snapshot in, deliveries and confirmations out."""
from __future__ import annotations

from datetime import timedelta

from factories import GRIDS, T0, VILLAGE, alert, people, regions, subscriber

from warnd.config import Config, RoutingRule
from warnd.domain.model import Level, MsgType, Status
from warnd.domain.planning import PlanInput, PlannedDelivery, Prior, plan
from warnd_channels.base import Recipient
from warnd_channels.registry import audiences


def _input(a, *, subs=(), prior=(), level=Level.RED, channels=frozenset({"webhook"})):  # noqa: ANN001, ANN202
    return PlanInput(a, level, T0, (VILLAGE,), regions(), people(), tuple(subs), Prior(tuple(prior)),
                     audiences(channels))


def test_every_matching_subscriber_gets_one_delivery():
    p = plan(_input(alert(), subs=[subscriber("tv"), subscriber("web", format="json")]), Config())
    assert sorted(d.recipient.id for d in p.deliveries) == ["tv", "web"]
    assert {d.channel for d in p.deliveries} == {"webhook"}


def test_subscriber_filters_by_region_level_event_and_status():
    subs = [subscriber("other-county", regions=("110101",)), subscriber("only-blue", levels=("blue",)),
            subscriber("floods", events=("山洪",)), subscriber("drills", statuses=("Exercise",)),
            subscriber("village", regions=(VILLAGE,)), subscriber("county", regions=("421126",)),
            subscriber("one-grid", regions=(GRIDS[1],)), subscriber("off", active=False)]
    p = plan(_input(alert(), subs=subs), Config())
    assert sorted(d.recipient.id for d in p.deliveries) == ["county", "one-grid", "village"]


def test_drills_never_reach_public_outlets_and_are_planned_for_private_ones():
    subs = [subscriber("tv", public=True), subscriber("drill-desk", public=False)]
    for status in (Status.EXERCISE, Status.TEST):
        p = plan(_input(alert(status=status), subs=subs), Config())
        assert [d.recipient.id for d in p.deliveries] == ["drill-desk"]


def test_one_confirmation_per_grid_with_responsible_person_backup_and_deadline():
    p = plan(_input(alert()), Config())
    by_grid = {c.grid: c for c in p.confirmations}
    assert sorted(by_grid) == list(GRIDS)
    assert (by_grid[GRIDS[0]].person_id, by_grid[GRIDS[0]].backup_id) == ("p1", "p2")
    assert by_grid[GRIDS[0]].deadline == T0 + timedelta(minutes=5)  # red default


def test_blue_needs_no_confirmation_by_default():
    assert plan(_input(alert(severity="Minor"), level=Level.BLUE), Config()).confirmations == ()


def test_person_channels_route_by_role_including_enclosing_regions():
    config = Config(routing=[RoutingRule(levels=["red"], channels=["sms"], roles=["grid_responsible",
                                                                                   "township_duty"])])
    p = plan(_input(alert(), channels=frozenset({"sms"})), config)
    assert sorted(d.recipient.id for d in p.deliveries) == ["p1", "p3", "p9"]


def test_a_channel_that_is_not_enabled_is_reported_not_silently_dropped():
    config = Config(routing=[RoutingRule(channels=["sms"], roles=["grid_responsible"])])
    p = plan(_input(alert()), config)
    assert p.deliveries == ()
    assert any("sms" in n for n in p.notes)


def test_an_expired_warning_is_recorded_and_sends_nothing():
    p = plan(_input(alert(expires=T0 - timedelta(minutes=1)), subs=[subscriber()]), Config())
    assert p.deliveries == () and p.confirmations == ()


def test_update_also_reaches_whoever_had_the_earlier_version_once():
    prior = [PlannedDelivery("webhook", Recipient("subscriber", "tv", "http://127.0.0.1:9/tv")),
             PlannedDelivery("webhook", Recipient("subscriber", "moved-away", "http://127.0.0.1:9/x"))]
    p = plan(_input(alert("W2", msg_type=MsgType.UPDATE), subs=[subscriber("tv")], prior=prior), Config())
    assert sorted(d.recipient.id for d in p.deliveries) == ["moved-away", "tv"]


def test_cancel_goes_only_to_those_who_had_it_and_needs_no_confirmation():
    prior = [PlannedDelivery("webhook", Recipient("subscriber", "tv", "http://127.0.0.1:9/tv"))]
    p = plan(_input(alert("W3", msg_type=MsgType.CANCEL), subs=[subscriber("tv"), subscriber("new")],
                    prior=prior), Config())
    assert [d.recipient.id for d in p.deliveries] == ["tv"]
    assert p.confirmations == ()


def test_speakers_of_the_target_grids_are_planned_and_drills_spare_them():
    from warnd.domain.directory import Speaker
    config = Config(routing=[RoutingRule(channels=["speaker"])])
    speakers = (Speaker("sp1", GRIDS[0]), Speaker("sp2", GRIDS[1]), Speaker("far", "110101001001001"))
    inp = PlanInput(alert(), Level.RED, T0, (VILLAGE,), regions(), people(), (), Prior(), audiences({"speaker"}),
                    speakers)
    assert sorted(d.recipient.id for d in plan(inp, config).deliveries) == ["sp1", "sp2"]
    drill = PlanInput(alert(status=Status.EXERCISE), Level.RED, T0, (VILLAGE,), regions(), people(), (), Prior(),
                      audiences({"speaker"}), speakers)
    assert plan(drill, config).deliveries == ()  # loudspeakers are public


def test_draft_and_system_messages_are_not_disseminated():
    for status in (Status.DRAFT, Status.SYSTEM):
        assert plan(_input(alert(status=status), subs=[subscriber()]), Config()).deliveries == ()
