"""Planning: from a warning and a directory snapshot to deliveries and confirmations.

Pure: the store loads what planning needs (`PlanInput`), planning returns what
to write (`Plan`), and the store writes all of it in one transaction.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from warnd.config import Config
from warnd.domain.directory import Person, Region, Speaker, Subscriber, with_ancestors, within
from warnd.domain.escalation import PlannedRung, start_ladder, steps
from warnd.domain.model import Alert, Level, MsgType, Status
from warnd.domain.readiness import can_ask
from warnd.domain.sending import Audience, Recipient, RecipientKind, reaches_public
from warnd.domain.updates import Kept, PriorGrid, keep

NOT_DISSEMINATED = (Status.DRAFT, Status.SYSTEM)


# Slots: a province-wide warning plans 470,000 deliveries and 100,000 requirements at once.
@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    channel: str
    recipient: Recipient
    grid: str | None = None  # the grid this send serves: its confirmation stops it
    params: Mapping | None = None  # kept with the delivery: a group message's mentions


@dataclass(frozen=True, slots=True)
class PlannedConfirmation:
    grid: str
    person_id: str | None
    backup_id: str | None
    deadline: datetime
    rungs: tuple[PlannedRung, ...] = ()
    kept: Kept | None = None  # what an Update keeps of the earlier version's requirement

    @property
    def carried(self) -> bool:
        """Already confirmed or covered for an earlier version at this level or higher."""
        return self.kept is not None and self.kept.state != "open"


@dataclass(frozen=True)
class Prior:
    """What the earlier versions of an Update or Cancel left behind."""

    receivers: tuple[PlannedDelivery, ...] = ()
    level: Level | None = None
    grids: Mapping[str, PriorGrid] = field(default_factory=dict)  # each grid's requirement in force


@dataclass(frozen=True)
class Plan:
    regions: tuple[str, ...]
    deliveries: tuple[PlannedDelivery, ...]
    confirmations: tuple[PlannedConfirmation, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanInput:
    alert: Alert
    level: Level
    now: datetime
    target_codes: tuple[str, ...]  # resolved from geocodes and shapes, before expansion
    regions: dict[str, Region]  # every target region and its descendants
    people: tuple[Person, ...]  # people of those regions and of their ancestors
    subscribers: tuple[Subscriber, ...]
    prior: Prior = field(default_factory=Prior)
    channels: Mapping[str, Audience] = field(default_factory=dict)  # the enabled channels and whom they reach
    speakers: tuple[Speaker, ...] = ()  # loudspeakers in the target grids


def plan(inp: PlanInput, config: Config) -> Plan:
    alert = inp.alert
    if alert.msg_type in (MsgType.ACK, MsgType.ERROR) or alert.status in NOT_DISSEMINATED:
        return Plan(tuple(sorted(inp.regions)), (), (), (f"{alert.msg_type.value}/{alert.status.value}: not disseminated",))
    restricted = frozenset(s.id for s in inp.subscribers if s.restricted)
    expires = alert.expires
    if expires is not None and expires <= inp.now:
        return Plan(tuple(sorted(inp.regions)), (), (), ("already expired: recorded, nothing sent",))
    if alert.msg_type is MsgType.CANCEL:
        # A cancel goes to exactly those who may have the earlier versions.
        return Plan(tuple(sorted(inp.regions)), _unique(inp.prior.receivers, alert, config, restricted), (), ())
    deliveries, notes = _route(inp, config)
    deliveries = _unique(list(deliveries) + list(inp.prior.receivers), alert, config, restricted)
    # A Private message is addressed, not broadcast: nobody's grid waits for it.
    confirmations = () if alert.scope == "Private" else _confirmations(inp, config)
    if confirmations and not can_ask(config, inp.level, inp.channels):  # see warnd/domain/readiness.py
        notes.append(f"{len(confirmations)} grids must confirm but no enabled channel reaches a person "
                     "to ask: nobody will be asked (enable sms, voice, speaker or wecom) / "
                     f"{len(confirmations)} 个网格须叫应，但没有已启用的渠道能通知到人：无人会被询问")
    return Plan(tuple(sorted(inp.regions)), deliveries, confirmations, tuple(notes))


def _route(inp: PlanInput, config: Config) -> tuple[list[PlannedDelivery], list[str]]:
    out: list[PlannedDelivery] = []
    notes: list[str] = []
    # the leaf regions and every area with its ancestors: the same for every rule, made once
    # (a province has 100,000 grids)
    reach: tuple[set[str], set[str]] | None = None
    recipients: dict[str, Recipient] = {}  # a person's, the same on every channel: made once
    for rule in config.routing:
        if not rule.matches(inp.level, inp.alert.status):
            continue
        for channel in rule.channels:
            audience = inp.channels.get(channel)
            if audience is None:
                notes.append(f"channel {channel} is not enabled: skipped")
                continue
            if audience is Audience.SUBSCRIBER:
                out += [PlannedDelivery(channel, _subscriber_recipient(s))
                        for s in inp.subscribers if _subscriber_wants(s, inp)]
            elif audience is Audience.DEVICE:
                out += [PlannedDelivery(channel, Recipient(RecipientKind.SPEAKER.value, sp.id, sp.id, "zh-CN"), sp.grid)
                        for sp in inp.speakers if sp.grid in inp.regions]
            elif audience is Audience.GROUP:
                out += _groups(inp, channel, rule.roles or ["grid_responsible"])
            else:
                if reach is None:
                    reach = set(_leaf_regions(inp.regions)), with_ancestors(inp.regions)
                leaves, areas = reach
                out += [PlannedDelivery(channel, _recipient_of(recipients, p), p.region if p.region in leaves else None)
                        for p in _people_with_roles(inp, rule.roles, areas) if p.phone]
    return out, notes


def _unique(deliveries: list[PlannedDelivery] | tuple[PlannedDelivery, ...], alert: Alert,
            config: Config, restricted_ids: frozenset[str] = frozenset()) -> tuple[PlannedDelivery, ...]:
    """One delivery per (channel, recipient), to the audience the message allows.

    Drills never reach public channels. CAP scope: Restricted and Private never
    reach a public outlet; Restricted goes only to subscribers flagged for it,
    Private only to the recipients named in <addresses> (subscriber or person id,
    or phone number).
    """
    seen: set[tuple[str, str, str]] = set()
    out = []
    closed = alert.drill_or_closed  # asked once, not for each of 20,000 subscribers
    private = alert.scope == "Private"
    named = set(alert.address_list) if private else set()
    for d in deliveries:
        key = (d.channel, d.recipient.kind, d.recipient.id)
        if key in seen or (closed and _is_public(d, config)):
            continue
        if private and d.recipient.id not in named and d.recipient.address not in named:
            continue
        if alert.scope == "Restricted" and d.recipient.kind == RecipientKind.SUBSCRIBER.value and d.recipient.id not in restricted_ids:
            continue
        seen.add(key)
        out.append(d)
    return tuple(out)


def _is_public(d: PlannedDelivery, config: Config) -> bool:
    return reaches_public(d.recipient, config.channel(d.channel).public)


def _groups(inp: PlanInput, channel: str, roles: list[str]) -> list[PlannedDelivery]:
    """A message to each target region's group on this channel (a village's, a township's),
    mentioning the people with the rule's roles in that region and below (by mobile)."""
    out = []
    for code in sorted(inp.regions):
        address = inp.regions[code].groups.get(channel)
        if not address:
            continue
        mentioned = sorted({p.phone for p in inp.people
                            if p.phone and within(p.region, code) and set(p.roles) & set(roles)})
        out.append(PlannedDelivery(channel, Recipient(RecipientKind.GROUP.value, code, address, "zh-CN",
                                                      mentions=tuple(mentioned)),
                                   params={"mentions": mentioned} if mentioned else None))
    return out


def _subscriber_wants(s: Subscriber, inp: PlanInput) -> bool:
    alert = inp.alert
    if not s.active:
        return False
    if s.levels and inp.level not in {Level.parse(x) for x in s.levels}:
        return False
    if s.statuses and alert.status.value not in s.statuses:
        return False
    if s.events and not any(i.event in s.events for i in alert.infos):
        return False
    if s.regions:
        codes = inp.regions.keys() or inp.target_codes
        return any(within(c, r) or within(r, c) for c in codes for r in s.regions)
    return True


def _people_with_roles(inp: PlanInput, roles: list[str], areas: set[str]) -> list[Person]:
    """People whose role is wanted, in `areas` (the target regions and their ancestors)."""
    wanted = set(roles)
    return [p for p in inp.people if p.region in areas and not wanted.isdisjoint(p.roles)]


def _confirmations(inp: PlanInput, config: Config) -> tuple[PlannedConfirmation, ...]:
    policy = config.level_policy(inp.level)
    if policy.confirm_minutes is None:
        return ()
    confirm = timedelta(minutes=policy.confirm_minutes)
    deadline = inp.now + confirm
    responsible = {p.region: p for p in inp.people if "grid_responsible" in p.roles}
    name = inp.level.label
    ladder = steps(config.ladder(name))
    rungs = start_ladder(name, ladder, inp.now)
    out = []
    for code in _leaf_regions(inp.regions):
        person = responsible.get(code)
        who = (getattr(person, "id", None), getattr(person, "backup", None))
        prior = inp.prior.grids.get(code)
        # An Update keeps the work done for grids it still targets (domain/updates); new grids start fresh.
        kept = keep(prior, inp.level, confirm, name, ladder, inp.now) if prior is not None else None
        if kept is None:
            out.append(PlannedConfirmation(code, *who, deadline, rungs))
        else:
            out.append(PlannedConfirmation(code, *who, kept.deadline, kept.rungs, kept))
    return tuple(out)


def _leaf_regions(regions: dict[str, Region]) -> list[str]:
    """Grids, or the lowest regions targeted where no grid lies below them."""
    parents = {r.parent for r in regions.values() if r.parent}
    return sorted(code for code in regions if code not in parents)


def _subscriber_recipient(s: Subscriber) -> Recipient:
    return Recipient(RecipientKind.SUBSCRIBER.value, s.id, s.url, "zh-CN", s.format, s.secret, s.public)


def _recipient_of(made: dict[str, Recipient], p: Person) -> Recipient:
    """`p`'s recipient, made once for all channels (a province: 100,000 fewer objects)."""
    found = made.get(p.id)
    if found is None:
        found = made[p.id] = _person_recipient(p)
    return found


def _person_recipient(p: Person) -> Recipient:
    return Recipient(RecipientKind.PERSON.value, p.id, p.phone or "", p.language)
