"""The state machines of warnd, as tables: one enum and one transition table per entity.

Every state a row can be in is a member of its entity's enum, with the value the
database stores; every change of state the store makes is one the table allows. The
store never spells the allowed source states itself: `warnd.store.transitions` derives
the `WHERE state IN (…)` of each UPDATE from `allowed_from`, so SQL and table cannot
drift apart (tests/test_state_tables.py proves it).

    delivery      pending → sending → sent | delivered | failed | uncertain | pending (retry)
                  pending → superseded | cancelled | expired | delivered (a receipt overtook a re-queue)
                  sent | uncertain → delivered | failed | pending (redial); uncertain → sent (found at the provider)
    confirmation  open → confirmed | covered | closed
    rung          pending → fired | skipped
    warning       awaiting → active | expired | rejected;  active → superseded | cancelled | expired
    call-list item  (unmarked) → any mark; a mark → any mark (the latest wins)

Pure: no I/O, no SQLAlchemy.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class DeliveryState(str, enum.Enum):
    """deliveries.state (re-exported as `warnd.domain.delivery.State`)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNCERTAIN = "uncertain"


class ConfirmationState(str, enum.Enum):
    """confirmations.state: a grid's requirement to confirm (回复1确认)."""

    OPEN = "open"
    CONFIRMED = "confirmed"  # somebody answered for the grid
    COVERED = "covered"  # every household of its door-to-door list was reached
    CLOSED = "closed"  # its warning was updated, cancelled or expired while it was open


class RungState(str, enum.Enum):
    """rungs.state: one step of a requirement's escalation ladder."""

    PENDING = "pending"
    FIRED = "fired"
    SKIPPED = "skipped"  # its grid was confirmed or covered, or its warning ended


class WarningState(str, enum.Enum):
    """warnings.state."""

    AWAITING = "awaiting"  # held for approval (签发): nothing planned, nothing sent
    REJECTED = "rejected"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ItemMark(str, enum.Enum):
    """call_list_items.mark: a household's outcome of a door-to-door visit (NULL: not marked yet).

    The same values as `warnd.domain.households.Outcome` ("notified" is 已通知, told)."""

    TOLD = "notified"
    MOVED = "moved"
    NOT_HOME = "not_home"
    REFUSED = "refused"
    NEEDS_HELP = "needs_help"


class IllegalTransition(ValueError):
    """A change of state its machine's table does not allow."""


@dataclass(frozen=True)
class Machine:
    """One entity's state machine: where its state is stored and which changes are allowed.

    `allowed` maps every state to the states it may move to (a terminal state: to none).
    A key of None is a row whose state column is NULL (an unmarked call-list item).
    `initial`: the states a row may be inserted in.
    """

    name: str
    table: str
    column: str
    states: type[enum.Enum]
    allowed: Mapping[Any, frozenset]
    initial: frozenset

    def __post_init__(self) -> None:
        members = set(self.states)
        keys = set(self.allowed) - {None}
        if keys != members:
            raise ValueError(f"{self.name}: the table must list every state, once: {members ^ keys}")
        for source, targets in self.allowed.items():
            if not set(targets) <= members:
                raise ValueError(f"{self.name}: {source} moves to unknown states {set(targets) - members}")
        if not set(self.initial) <= members | ({None} if None in self.allowed else set()):
            raise ValueError(f"{self.name}: unknown initial states {set(self.initial) - members}")

    @property
    def sources(self) -> tuple:
        """Every state a row can be in, in the table's order (None first when the column may be NULL)."""
        return tuple(self.allowed)

    def can_move(self, old: Any, new: Any) -> bool:
        return new in self.allowed[old]


def allowed_from(machine: Machine, to_state: Any) -> tuple:
    """The states a row may be in to move to `to_state`, in the table's order."""
    if to_state not in set(machine.states):
        raise IllegalTransition(f"{machine.name}: no state {to_state!r}")
    return tuple(s for s, targets in machine.allowed.items() if to_state in targets)


def common_sources(machine: Machine, to_states: Iterable[Any]) -> tuple:
    """The states from which a row may move to each of `to_states` (an UPDATE whose new state
    is a bound parameter that may be any of them): those every one of them allows."""
    targets = tuple(to_states)
    if not targets:
        raise IllegalTransition(f"{machine.name}: no target state")
    each = [set(allowed_from(machine, t)) for t in targets]
    return tuple(s for s in machine.allowed if all(s in sources for sources in each))


def narrowed(machine: Machine, to_states: Iterable[Any], within: Iterable[Any] | None) -> tuple:
    """`common_sources`, or only those of `within` (a compare-and-set from fewer states than
    the table allows). A state of `within` the table does not allow, or a target no state
    may move to (nothing reopens a confirmation), is an IllegalTransition."""
    targets = tuple(to_states)
    allowed = common_sources(machine, targets)
    if not allowed:
        raise IllegalTransition(f"{machine.name}: no state may move to {list(targets)}")
    if within is None:
        return allowed
    wanted = tuple(within)
    illegal = [s for s in wanted if s not in allowed]
    if illegal:
        raise IllegalTransition(f"{machine.name}: {illegal} may not move to {list(targets)}")
    return tuple(s for s in allowed if s in wanted)


D = DeliveryState
DELIVERY = Machine("delivery", "deliveries", "state", DeliveryState, {
    # A receipt may overtake a re-queued row (a played-ack after a recovery): it was delivered.
    D.PENDING: frozenset({D.SENDING, D.SUPERSEDED, D.CANCELLED, D.EXPIRED, D.DELIVERED}),
    D.SENDING: frozenset({D.SENT, D.DELIVERED, D.FAILED, D.PENDING, D.UNCERTAIN}),
    # A call that was not answered is redialled: its receipt puts it back in the queue.
    D.SENT: frozenset({D.DELIVERED, D.FAILED, D.PENDING}),
    # Asked at the provider after a crash: it has the send (sent), or not (pending again).
    D.UNCERTAIN: frozenset({D.SENT, D.DELIVERED, D.FAILED, D.PENDING}),
    D.DELIVERED: frozenset(),
    D.FAILED: frozenset(),
    D.SUPERSEDED: frozenset(),
    D.CANCELLED: frozenset(),
    D.EXPIRED: frozenset(),
}, initial=frozenset({D.PENDING}))

C = ConfirmationState
CONFIRMATION = Machine("confirmation", "confirmations", "state", ConfirmationState, {
    C.OPEN: frozenset({C.CONFIRMED, C.COVERED, C.CLOSED}),
    C.CONFIRMED: frozenset(),
    C.COVERED: frozenset(),
    C.CLOSED: frozenset(),
}, initial=frozenset({C.OPEN, C.CONFIRMED, C.COVERED}))  # an Update carries confirmed and covered grids

R = RungState
RUNG = Machine("rung", "rungs", "state", RungState, {
    R.PENDING: frozenset({R.FIRED, R.SKIPPED}),
    R.FIRED: frozenset(),
    R.SKIPPED: frozenset(),
}, initial=frozenset({R.PENDING, R.FIRED}))  # an Update carries the rungs already fired

W = WarningState
WARNING = Machine("warning", "warnings", "state", WarningState, {
    # Published on the last approval (or at once): already past its expiry, it is expired.
    W.AWAITING: frozenset({W.ACTIVE, W.EXPIRED, W.REJECTED}),
    W.ACTIVE: frozenset({W.SUPERSEDED, W.CANCELLED, W.EXPIRED}),
    W.REJECTED: frozenset(),
    W.SUPERSEDED: frozenset(),
    W.CANCELLED: frozenset(),
    W.EXPIRED: frozenset(),
}, initial=frozenset({W.AWAITING}))

_EVERY_MARK = frozenset(ItemMark)
CALL_LIST_ITEM = Machine("call_list_item", "call_list_items", "mark", ItemMark, {
    # The latest mark wins: a visitor corrects a mark, a household not at home is told later;
    # the same mark again with another head count or note is a change too.
    None: _EVERY_MARK,
    **{m: _EVERY_MARK for m in ItemMark},
}, initial=frozenset({None}))
del D, C, R, W

MACHINES: tuple[Machine, ...] = (DELIVERY, CONFIRMATION, RUNG, WARNING, CALL_LIST_ITEM)
