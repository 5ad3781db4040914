"""Fault windows, crashes at an event, per-attempt and time-dependent behaviour (issue 15, point 6).

Three layers: the scenario format (loader and JSON schema: new forms accepted, bad ones
refused naming the key), the Twilio simulator's new behaviours driven over real HTTP
with the twilio SDK, and one short `warnd simulate` run with a window of 429s and a
crash at the first rung.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import aiohttp
import pytest
from test_sim_twilio import PERSON, SENDER, SID, TOKEN, Receiver, configure, make_client
from test_simulate import assert_inside_equals_outside, assert_nothing_lost_and_all_reached, scenario, simulate
from twilio.base.exceptions import TwilioRestException

from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Behaviour, Scenario
from warnd.simulate.runner import MIN_SWEEP_SECONDS, scaled_sweeps
from warnd.simulate.scenario import ScenarioError, from_data, load, schema_problems

DOCS = Path(__file__).resolve().parents[1] / "docs"


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as caught:
        from_data(data, base_dir=DOCS, source="s.yaml")
    return caught.value.problems


# -- the scenario format --

def test_the_documented_example_loads_with_every_new_form():
    sc = load(DOCS / "faults-and-crash.yaml")
    assert [(w.start, w.until, w.settings) for w in sc.fault_windows] == [
        (0.0, 120.0, {"rate_429": 1.0, "retry_after": 5}), (300.0, 360.0, {"rate_5xx": 0.5})]
    assert sc.faults.callback_loss == 0.02  # the constant mapping keeps working beside the windows
    assert (sc.crash.at, sc.crash.at_event, sc.crash.restart_after) == (None, "first_rung", 30.0)
    phones = list(sc.phones.values())
    assert any(b.call_attempts == ("no-answer", "no-answer", "answer") and b.reply is None for b in phones)
    assert any(b.sms_attempts == ("undelivered", "deliver") for b in phones)
    assert all(30 <= b.reply.after <= 240 for b in phones if b.reply is not None)  # reply: {after: [30, 240]}


def test_the_new_forms_pass_the_schema_and_the_old_ones_still_do():
    base = scenario()
    for provider in ([{"from": 0, "until": "02:00", "rate_429": 1.0, "retry_after": 5}],
                     {"rate_5xx": 0.01, "windows": [{"from": 300, "until": 360, "rate_5xx": 0.5}]},
                     {"rate_429": 0.05, "retry_after": 1}):
        for crash in ({"at_event": "first_rung", "restart_after": 30}, {"at_event": "published", "after": 5},
                      {"at": "00:04:50", "restart_after": 40}):
            data = {**base, "behaviours": {**base["behaviours"], "provider": provider}, "crash": crash}
            assert schema_problems(data) == [], (provider, crash)
    people = {"default": {"call": {"attempts": ["no-answer", "answer"]}, "sms": "deliver",
                          "reply": {"after": [60, 300], "text": "1"}, "answer_after": [180, 480]}}
    assert schema_problems({**base, "behaviours": {"people": people}}) == []


@pytest.mark.parametrize(("change", "where", "says"), [
    ({"crash": {"at_event": "lunch", "restart_after": 5}}, "crash.at_event", "lunch"),
    ({"crash": {"at": 10, "at_event": "first_rung"}}, "crash", "at_event"),
    ({"crash": {"at_event": "first_rung", "restart_in": 5}}, "crash", "restart_in"),
    ({"behaviours": {"provider": [{"from": 0, "rate_429": 1}]}}, "behaviours.provider[0]", "until"),
    ({"behaviours": {"provider": [{"from": 0, "until": 60, "rate_429": 2}]}}, "behaviours.provider[0].rate_429",
     "2"),
    ({"behaviours": {"provider": [{"from": 0, "until": 60, "rate_492": 1}]}}, "behaviours.provider[0]",
     "rate_492"),
    ({"behaviours": {"provider": {"windows": [{"from": 0, "until": 60}]}}}, "behaviours.provider.windows[0]",
     "at least one fault setting"),
    ({"behaviours": {"people": {"default": {"call": {"attempts": ["answer", "pick-up"]}}}}},
     "behaviours.people.default.call.attempts[1]", "pick-up"),
    ({"behaviours": {"people": {"default": {"call": {"attempt": ["answer"]}}}}},
     "behaviours.people.default.call", "attempt"),
    ({"behaviours": {"people": {"default": {"reply": {"after": [60, 300], "txt": "1"}}}}},
     "behaviours.people.default.reply", "txt"),
])
def test_a_bad_new_form_is_refused_naming_its_key(change, where, says):
    data = {**scenario(), **change}
    found = problems_of(data)
    assert any(w == where and says in what for w, what in found), found


def test_a_window_that_ends_before_it_starts_is_refused_by_the_loader():
    data = {**scenario(), "behaviours": {"provider": [{"from": "02:00", "until": 60, "rate_429": 1}]}}
    assert problems_of(data) == [("behaviours.provider[0].until", "60 s is not after from (120 s)")]


def test_the_simulators_own_file_takes_windows_and_refuses_bad_ones_by_name():
    s = Scenario()
    s.update({"faults": {"rate_5xx": 0.01, "windows": [{"from": 0, "until": 120, "rate_429": 1.0}]}})
    assert (s.faults.rate_5xx, len(s.windows)) == (0.01, 1)
    s.update({"faults": [{"from": 10, "until": 20, "latency": 1}]})  # a list: the windows alone
    assert [(w.start, w.until) for w in s.windows] == [(10.0, 20.0)] and s.faults.rate_5xx == 0.01
    for bad, says in (([{"from": 5, "until": 5, "rate_429": 1}], "faults.windows[0].until"),
                      ([{"from": 0, "until": 5, "rate_429": 3}], "rate_429"),
                      ([{"until": 5, "rate_429": 1}], "faults.windows[0].from"),
                      ({"windows": "soon"}, "faults.windows")):
        with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
            s.update({"faults": bad})
    with pytest.raises(ValueError, match="call"):
        Behaviour.from_dict({"call": {"attempts": ["answer", "hang-up"]}})
    with pytest.raises(ValueError, match="answer_after"):
        Behaviour.from_dict({"answer_after": [1, 2, 3]})


def test_generated_sweeps_suit_the_speed():
    assert scaled_sweeps(1)["reconcile_seconds"] == 60.0  # warnd's own default at speed 1
    fast = scaled_sweeps(30)
    assert fast["reconcile_seconds"] == 2.0  # 60 simulated seconds between reconcile sweeps, as at speed 1
    assert min(scaled_sweeps(1000).values()) == MIN_SWEEP_SECONDS


# -- the Twilio simulator --

@pytest.fixture
async def receiver():
    r = Receiver(TOKEN)
    await r.start()
    yield r
    await r.stop()
    assert r.forged == 0


@pytest.fixture
async def sim(receiver):
    s = TwilioSimulator(SID, TOKEN, Scenario(speed=50.0, inbound_sms_url=receiver.url("/inbound")), seed=7)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def client(sim):
    c = await make_client(sim)
    yield c
    await c.http_client.close()


async def test_a_window_of_429s_refuses_requests_inside_it_only(sim, client):
    sim.scenario.update({"speed": 1, "faults": [{"from": 0, "until": 120, "rate_429": 1.0, "retry_after": 5},
                                                {"from": 300, "until": 360, "rate_5xx": 1.0}]})
    url = sim.base_url + f"/2010-04-01/Accounts/{SID}/Messages.json"
    auth = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}
    async with aiohttp.ClientSession() as http:
        for elapsed, expected in ((0, 429), (119.5, 429), (120, 201), (200, 201), (300, 500), (360, 201)):
            sim.scenario.epoch = time.time() - elapsed  # T+0 that long ago (speed 1: simulated = real)
            async with http.post(url, headers=auth, data={"To": PERSON, "From": SENDER, "Body": "x"}) as r:
                assert (elapsed, r.status // 100 * 100 if r.status >= 500 else r.status) == (elapsed, expected)
                if r.status == 429:
                    assert (r.headers["Retry-After"], (await r.json())["code"]) == ("5", 20429)
                else:
                    assert "Retry-After" not in r.headers
    sim.scenario.epoch = time.time() - 10
    with pytest.raises(TwilioRestException) as caught:  # the SDK sees the same
        await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert (sim.stats.injected_429, sim.stats.injected_5xx, sim.stats.messages) == (3, 1, 3)


async def test_the_third_call_is_answered(sim, client, receiver):
    configure(sim, PERSON, call={"attempts": ["no-answer", "no-answer", "answer"]}, answer_after=1)
    statuses = []
    for _ in range(4):
        call = await client.calls.create_async(to=PERSON, from_=SENDER, twiml="<Response><Say>x</Say></Response>",
                                               status_callback=receiver.url("/status"), timeout=5)
        await sim.wait_idle(timeout=5)
        statuses.append((await client.calls(call.sid).fetch_async()).status)
    assert statuses == ["no-answer", "no-answer", "completed", "completed"]  # the last outcome repeats
    finals = [p["CallStatus"] for p in receiver.received["/status"]]
    assert finals == ["no-answer", "no-answer", "completed", "completed"]


async def test_sms_attempts_and_a_plain_outcome_still_work(sim, client):
    configure(sim, PERSON, sms={"attempts": ["undelivered", "deliver"]})
    configure(sim, "+8613800000002", sms="undelivered")
    sids = [(await client.messages.create_async(to=to, from_=SENDER, body="x")).sid
            for to in (PERSON, PERSON, "+8613800000002", "+8613800000002")]
    await sim.wait_idle(timeout=5)
    assert [sim.messages[s].status for s in sids] == ["undelivered", "delivered", "undelivered", "undelivered"]


def test_ranges_are_drawn_per_call_and_are_the_same_with_the_same_seed():
    b = Behaviour.from_dict({"answer_after": [180, 480], "reply": {"after": [60, 300]}})
    draws = [b.call_attempt(i, random.Random(3)).answer_after for i in range(2)]
    assert draws[0] == draws[1] and 180 <= draws[0] <= 480  # same seed, same value
    rng = random.Random(3)
    several = [b.call_attempt(i, rng).answer_after for i in range(20)]
    assert len(set(several)) > 1 and all(180 <= v <= 480 for v in several)  # a fresh draw per call
    replies = [b.sms_attempt(0, random.Random(s)).reply.after for s in range(20)]
    assert all(60 <= v <= 300 for v in replies)
    plain = Behaviour.from_dict({"answer_after": 3, "reply": {"after": 10, "text": "1"}})
    untouched = random.Random(1)
    assert plain.call_attempt(0, untouched) == plain and untouched.random() == random.Random(1).random()


async def test_a_reply_range_plays_at_a_drawn_moment(sim, client, receiver):
    configure(sim, PERSON, reply={"after": [50, 100], "text": "1"})  # speed 50: 1–2 real seconds
    start = time.monotonic()
    await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
    await receiver.wait_for("/inbound", timeout=5)
    assert 0.9 <= time.monotonic() - start <= 4


# -- one short run --

@pytest.mark.slow
def test_a_429_window_and_a_crash_at_the_first_rung_lose_nothing(tmp_path):
    # 429s for the first minute of the warning; killed when the first rung fires (5 min after
    # the warning: g4 and its backup never answer); down for exactly 30 simulated seconds.
    # One status callback in ten is lost all along: only the reconcile sweep, scaled to the
    # speed, settles those before the end (else the views would disagree).
    data = scenario(crash={"at_event": "first_rung", "restart_after": 30}, speed=60)
    data["behaviours"]["provider"] = {"callback_loss": 0.1,
                                      "windows": [{"from": 0, "until": 60, "rate_429": 1.0, "retry_after": 0.5}]}
    code, report, stderr = simulate(tmp_path, data, timeout=90)
    assert report is not None, stderr
    crash = report["crash"]
    assert crash["at_event"] == "first_rung" and report["run"]["warnd_lives"] == 2, crash
    first_rung = min(float(r.split("@")[1]) for w in report["warnings"] for g in w["grids"]
                     for r in g["rungs_fired"])
    # seen within a real second of firing (60 simulated seconds at this speed), killed at once
    assert first_rung <= crash["event_seen_at_seconds"] <= crash["at_seconds"] <= first_rung + 60, (first_rung, crash)
    assert crash["outage_seconds"] == pytest.approx(30, abs=3), crash  # the kill to the restart command
    assert crash["startup_seconds"] >= 0 and crash["startup_real_seconds"] > 0
    assert report["outside"]["twilio"]["injected_429"] > 0 and report["outside"]["twilio"]["callbacks_lost"] > 0
    assert report["scenario"]["fault_windows"] == [{"from": 0.0, "until": 60.0, "rate_429": 1.0, "retry_after": 0.5}]
    assert any(e["event"].startswith("crash event: first_rung") for e in report["events"])
    assert_nothing_lost_and_all_reached(report)
    assert_inside_equals_outside(report)
    assert code == 0, stderr
