"""The state machines are tables (warnd.domain.states), and the store's SQL is the tables'.

- every machine's table names every state of its enum, with the values the database stores;
- for every machine and target state, the `WHERE state IN (…)` the store helper builds lists
  exactly the table's sources, on both dialects; the delivery store's hot statements too;
- every state string a store module writes or compares is a member of its entity's enum, and
  every change of state it spells by hand (UPDATE … WHERE state = a … SET state = b) is one
  the table allows (a scan of the source);
- against real databases (SQLite and PostgreSQL): every (from, to) pair moves a row iff the
  table allows it, a narrowed CAS refuses the other sources, a version mismatch changes nothing.
"""
from __future__ import annotations

import ast
import enum
import itertools
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories import T0
from sqlalchemy.dialects import postgresql, sqlite

from warnd.domain import delivery, households
from warnd.domain.states import (CONFIRMATION, DELIVERY, MACHINES, RUNG, WARNING,
                                 ConfirmationState, DeliveryState, IllegalTransition, ItemMark, Machine, RungState,
                                 WarningState, allowed_from, common_sources)
from warnd.store import deliveries as delivery_store
from warnd.store.database import Database
from warnd.store.deliveries import RECEIPT_STATES, RESULT_STATES, Applied, DeliveryStore, Receipt
from warnd.store.schema import call_list_items, call_lists, confirmations, deliveries, metadata, rungs, warnings
from warnd.store.transitions import column_of, sources, table_of, transition, where_from

STORE = Path(delivery_store.__file__).parent
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}
PAIRS = [(m, t) for m in MACHINES for t in m.states]


def _values(states) -> set:  # noqa: ANN001
    return {s.value for s in states if s is not None}


# --- the tables --------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_is_in_its_table_and_its_column_exists(machine):
    assert set(machine.allowed) - {None} == set(machine.states)
    assert all(set(t) <= set(machine.states) for t in machine.allowed.values())
    assert machine.column in table_of(machine).c and table_of(machine).name in metadata.tables
    assert set(machine.initial) <= set(machine.allowed)
    for state in machine.states:  # every state can be reached: inserted so, or moved into
        assert state in machine.initial or allowed_from(machine, state), state


def test_the_delivery_module_reexports_the_table():
    assert delivery.State is DeliveryState
    assert delivery.TRANSITIONS is DELIVERY.allowed
    assert [s.value for s in DeliveryState] == ["pending", "sending", "sent", "delivered", "failed", "superseded",
                                                 "cancelled", "expired", "uncertain"]


def test_the_enums_hold_the_values_the_database_stores():
    assert _values(ConfirmationState) == {"open", "confirmed", "covered", "closed"}
    assert _values(RungState) == {"pending", "fired", "skipped"}
    assert _values(WarningState) == {"awaiting", "rejected", "active", "superseded", "cancelled", "expired"}
    assert {(o.name, o.value) for o in households.Outcome} == {(m.name, m.value) for m in ItemMark}


def test_terminal_states_have_no_way_out():
    for machine, terminal in ((DELIVERY, {"delivered", "failed", "superseded", "cancelled", "expired"}),
                              (CONFIRMATION, {"confirmed", "covered", "closed"}), (RUNG, {"fired", "skipped"}),
                              (WARNING, {"rejected", "superseded", "cancelled", "expired"})):
        assert {s.value for s, targets in machine.allowed.items() if not targets} == terminal


def test_a_table_must_be_complete():
    with pytest.raises(ValueError, match="every state"):
        Machine("half", "rungs", "state", RungState, {RungState.PENDING: frozenset({RungState.FIRED})},
                frozenset({RungState.PENDING}))


# --- the SQL is derived from the tables -------------------------------------------------


def _in_list(clause: sa.ColumnElement, dialect) -> tuple[set, bool]:  # noqa: ANN001
    """The state values a compiled WHERE compares with, and whether it accepts NULL."""
    compiled = clause.compile(dialect=dialect)
    return set(compiled.params.values()), "IS NULL" in str(compiled)


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
@pytest.mark.parametrize(("machine", "target"), PAIRS, ids=[f"{m.name}-{t.value}" for m, t in PAIRS])
def test_the_where_clause_lists_exactly_the_tables_sources(machine, target, dialect):
    expected = allowed_from(machine, target)
    if not expected:  # nothing moves there (a row is only inserted so): no statement can be built
        with pytest.raises(IllegalTransition, match="no state may move"):
            where_from(machine, target)
        return
    values, null = _in_list(where_from(machine, target), dialect)
    assert values == _values(expected) and null == (None in expected)
    statement = transition(machine, target).compile(dialect=dialect)
    assert f"{machine.table}.{machine.column} IN" in str(statement)
    assert statement.params[machine.column] == target.value


def test_a_narrowed_cas_keeps_to_the_table_and_a_wider_one_is_refused():
    S = DeliveryState
    assert sources(DELIVERY, S.PENDING, within=(S.SENDING,)) == (S.SENDING,)
    with pytest.raises(IllegalTransition):
        transition(DELIVERY, S.SENDING, within=(S.SENT,))  # a sent row is never claimed again
    with pytest.raises(IllegalTransition):
        transition(CONFIRMATION, ConfirmationState.OPEN)  # nothing reopens a requirement
    with pytest.raises(IllegalTransition):
        transition(RUNG, (RungState.FIRED, RungState.PENDING), state=sa.bindparam("b_state"))
    with pytest.raises(IllegalTransition):
        sources(WARNING, "ended")  # not a state of the warning machine


def test_a_state_written_by_a_bound_parameter_may_come_only_from_what_every_target_allows():
    S = DeliveryState
    assert common_sources(DELIVERY, RESULT_STATES) == (S.SENDING,)
    assert common_sources(DELIVERY, RECEIPT_STATES) == (S.SENDING, S.SENT, S.UNCERTAIN)


def test_the_delivery_stores_hot_statements_compare_the_tables_sources(tmp_path):
    S = DeliveryState
    hot = delivery_store._Hot(Database(f"sqlite:///{tmp_path / 'h.db'}"))

    def compared(prepared) -> set:  # noqa: ANN001 - the bound state values of the WHERE
        where = prepared.sql.split(" WHERE ", 1)[1]
        names = [n for n in prepared._defaults if n.startswith("param_")]
        assert where.count("deliveries.state IN") == 1
        return {prepared._defaults[n] for n in names}

    assert compared(hot.mark) == _values(allowed_from(DELIVERY, S.SENDING)) == {"pending"}
    assert compared(hot.result) == _values(common_sources(DELIVERY, RESULT_STATES)) == {"sending"}
    # the very sets the store spelled by hand before the tables, so the behaviour is the same
    after_send = {"sending", "sent", "uncertain"}
    assert compared(hot.receipt) == _values(common_sources(DELIVERY, RECEIPT_STATES)) == after_send
    assert compared(hot.receipt_delivered) == _values(allowed_from(DELIVERY, S.DELIVERED)) == after_send | {"pending"}
    # `hand` keeps a hand-written CAS (it changes no state): still the claim's `sending`
    assert "deliveries.state = ?" in hot.hand.sql and "sending" in hot.hand._defaults.values()
    # the recovery fates move only what a dead claim may become
    for fate in delivery_store.RECOVERY.values():
        assert S.SENDING in allowed_from(DELIVERY, S(fate["state"]))


def test_the_rate_limits_hand_written_requeue_is_a_move_the_table_allows(tmp_path):
    from warnd.store import rate_limits  # a CAS spelled by hand in its own module: sending → pending
    requeue = rate_limits._Hot(Database(f"sqlite:///{tmp_path / 'r.db'}")).requeue
    where = requeue.sql.split(" WHERE ", 1)[1]
    assert "deliveries.state = ?" in where
    values = set(requeue._defaults.values())
    assert {"sending", "pending"} <= values and DELIVERY.can_move(DeliveryState.SENDING, DeliveryState.PENDING)


# --- the store's own words: every state string is a member, every hand-spelled move legal --

ENUMS: dict[str, type[enum.Enum]] = {"State": DeliveryState, "DeliveryState": DeliveryState,
                                    "ConfirmationState": ConfirmationState, "RungState": RungState,
                                    "WarningState": WarningState, "ItemMark": ItemMark, "Outcome": ItemMark}
BY_TABLE = {m.table: m for m in MACHINES}
STATE_COLUMNS = {m.column for m in MACHINES}  # state, mark
EVERY_VALUE = set().union(*(_values(m.states) for m in MACHINES))


def _value(node: ast.AST) -> str | None:
    """A state spelled in the source: "open", State.OPEN.value or State.OPEN; None: not literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and node.attr == "value":
        node = node.value
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ENUMS
            and node.attr in ENUMS[node.value.id].__members__):
        return ENUMS[node.value.id][node.attr].value
    return None


def _chain(call: ast.Call) -> tuple[str | None, list[ast.Call]]:
    """The table an UPDATE/INSERT chain starts from (`sa.update(deliveries)…`), and its calls."""
    calls, node = [], call
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr not in ("update", "insert", "transition"):
        calls.append(node)
        node = node.func.value
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in ("update", "insert") and node.args and isinstance(node.args[0], ast.Name):
            return node.args[0].id, calls
        if name == "transition":
            return "transition", calls
    return None, calls


def _scan(modules: dict[str, str] | None = None) -> tuple[list, list, list]:
    """(written, compared, moves) over every store module (or these sources by name): (where,
    value) of each state string written or compared, and (where, machine, sources, target) of
    each hand-spelled UPDATE."""
    if modules is None:
        modules = {path.name: path.read_text() for path in sorted(STORE.glob("*.py"))}
    written, compared, moves = [], [], []
    for name, source in modules.items():
        tree = ast.parse(source)
        for node in ast.walk(tree):
            at = f"{name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                table, calls = _chain(node)
                into = BY_TABLE.get(table) if isinstance(node.func, ast.Attribute) and node.func.attr == "values" \
                    else None
                for kw in node.keywords:  # state="…" in .values(…), dict(…), insert_rows(…)
                    if kw.arg in STATE_COLUMNS and (v := _value(kw.value)) is not None:
                        written.append((at, v, into))
                if table in BY_TABLE and isinstance(node.func, ast.Attribute) and node.func.attr == "values":
                    machine = BY_TABLE[table]
                    target = next((_value(k.value) for k in node.keywords if k.arg == machine.column), None)
                    froms = {v for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "where"
                             for a in c.args for v in _compared_states(a, machine.column)}
                    if target is not None and froms:
                        moves.append((at, machine, froms, target))
            elif isinstance(node, ast.Dict):  # {"state": "…"}
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value in STATE_COLUMNS and (s := _value(v)) is not None:
                        written.append((at, s, None))
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) \
                    and node.left.attr in STATE_COLUMNS:
                for right in node.comparators:
                    if (v := _value(right)) is not None:
                        compared.append((at, v, None))
    return written, compared, moves


def _compared_states(node: ast.AST, column: str) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Attribute) and sub.left.attr == column \
                and isinstance(sub.ops[0], ast.Eq):
            out |= {v for r in sub.comparators if (v := _value(r)) is not None}
    return out


def test_every_state_string_the_store_writes_or_compares_is_a_member_of_an_enum():
    written, compared, _ = _scan()
    assert len(written) >= 5 and len(compared) >= 20  # the scan sees the store (it is not looking elsewhere)
    # a state written by an UPDATE of a known table is one of that table's; any other one of some machine's
    assert [(at, v) for at, v, m in written + compared if v not in (EVERY_VALUE if m is None else _values(m.states))
            ] == []


def _illegal(moves: list) -> list:
    return [(at, m.name, sorted(froms), target) for at, m, froms, target in moves
            if not all(m.can_move(m.states(f), m.states(target)) for f in froms)]


def test_every_change_of_state_the_store_spells_by_hand_is_allowed_by_its_table():
    *_, moves = _scan()
    assert _illegal(moves) == []


def test_the_scan_sees_a_bad_state_and_an_illegal_move():
    bad = """
async def f(conn):
    await conn.execute(sa.update(rungs).where(r.id == 1, r.state == "fired").values(state=RungState.PENDING.value))
    await conn.execute(sa.update(deliveries).where(d.state == State.PENDING.value).values(state="cancelled"))
    await conn.execute(sa.update(warnings).where(w.id == 1).values(state="covered"))
    rows = dict(state="opened")
"""
    written, compared, moves = _scan({"bad.py": bad})
    assert {v for _, v, _ in written} == {"pending", "cancelled", "covered", "opened"}
    assert {v for _, v, _ in compared} == {"fired", "pending"}
    assert [(v, m.name) for _, v, m in written if m is not None and v not in _values(m.states)] == [
        ("covered", "warning")]
    assert [(at, name, froms, to) for at, name, froms, to in _illegal(moves)] == [
        ("bad.py:3", "rung", ["fired"], "pending")]
    assert [v for _, v, _ in written if v not in EVERY_VALUE] == ["opened"]


# --- against real databases ----------------------------------------------------------------

N = itertools.count()


async def _warning(conn, state: str = "active") -> int:  # noqa: ANN001
    return (await conn.execute(sa.insert(warnings).values(
        sender="s", identifier=f"i{next(N)}", sent=T0, status="Actual", msg_type="Alert", level=4, event="e",
        state=state, department="d", cap_xml="<alert/>", regions=[], notes=[], created_at=T0, version=1,
    ).returning(warnings.c.id))).scalar_one()


async def _confirmation(conn, wid: int, state: str = "open") -> int:  # noqa: ANN001
    return (await conn.execute(sa.insert(confirmations).values(
        warning_id=wid, grid=f"g{next(N)}", deadline=T0, state=state, version=1).returning(confirmations.c.id))
            ).scalar_one()


async def _row(conn, machine: Machine, state, parent: dict) -> int:  # noqa: ANN001
    """A row of the machine's table in `state` (None: the column NULL)."""
    value = None if state is None else state.value
    if machine is WARNING:
        return await _warning(conn, value)
    if machine is CONFIRMATION:
        return await _confirmation(conn, parent["warning"], value)
    if machine is DELIVERY:
        return (await conn.execute(sa.insert(deliveries).values(
            warning_id=parent["warning"], channel="webhook", recipient_kind="subscriber", recipient_id="s",
            address="http://x", language="zh-CN", priority=4, state=value, attempts=1, next_attempt_at=T0,
            claimed_by="n/1", created_at=T0, updated_at=T0, version=1).returning(deliveries.c.id))).scalar_one()
    if machine is RUNG:
        return (await conn.execute(sa.insert(rungs).values(
            confirmation_id=parent["confirmation"], warning_id=parent["warning"], grid="g", ladder="red", step=0,
            action="notify", params={}, due_at=T0, state=value, version=1).returning(rungs.c.id))).scalar_one()
    return (await conn.execute(sa.insert(call_list_items).values(
        list_id=parent["list"], position=next(N), household_id="h", address="a", vulnerable=False, mark=value,
        version=1).returning(call_list_items.c.id))).scalar_one()


async def _parents(conn) -> dict:  # noqa: ANN001
    wid = await _warning(conn)
    cid = await _confirmation(conn, wid)
    lid = (await conn.execute(sa.insert(call_lists).values(warning_id=wid, confirmation_id=cid, grid="g",
                                                           created_at=T0).returning(call_lists.c.id))).scalar_one()
    return {"warning": wid, "confirmation": cid, "list": lid}


async def _state_of(conn, machine: Machine, row_id: int) -> tuple:  # noqa: ANN001
    t = table_of(machine)
    return tuple((await conn.execute(sa.select(column_of(machine), t.c.version).where(t.c.id == row_id))).one())


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
async def test_every_move_the_table_refuses_changes_nothing_in_the_database(database, machine):
    async with database.write() as conn:
        parent = await _parents(conn)
        for old, new in itertools.product(machine.sources, machine.states):
            if not allowed_from(machine, new):
                with pytest.raises(IllegalTransition):
                    transition(machine, new)
                continue
            row = await _row(conn, machine, old, parent)
            t = table_of(machine)
            changed = (await conn.execute(transition(machine, new).where(t.c.id == row))).rowcount
            allowed = machine.can_move(old, new)
            assert changed == int(allowed), (old, new)
            expected = (new.value, 2) if allowed else (None if old is None else old.value, 1)
            assert await _state_of(conn, machine, row) == expected, (old, new)


async def test_a_narrowed_cas_refuses_rows_in_the_other_allowed_states(database):
    S = DeliveryState
    async with database.write() as conn:
        parent = await _parents(conn)
        rows = {s: await _row(conn, DELIVERY, s, parent) for s in (S.SENDING, S.SENT, S.UNCERTAIN)}
        d = deliveries.c
        changed = (await conn.execute(transition(DELIVERY, S.PENDING, within=(S.UNCERTAIN,))
                                      .where(d.id.in_(list(rows.values()))))).rowcount
        assert changed == 1
        assert [(await _state_of(conn, DELIVERY, rows[s]))[0] for s in rows] == ["sending", "sent", "pending"]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
async def test_a_version_mismatch_updates_nothing(database, machine):
    source, target = next((s, t) for s in machine.sources for t in sorted(machine.allowed[s], key=str))
    async with database.write() as conn:
        row = await _row(conn, machine, source, await _parents(conn))
        t = table_of(machine)
        before = await _state_of(conn, machine, row)
        stale = transition(machine, target, version=before[1] + 1).where(t.c.id == row)
        assert (await conn.execute(stale)).rowcount == 0
        assert await _state_of(conn, machine, row) == before
        bound = transition(machine, target, version=sa.bindparam("b_version")).where(t.c.id == row)
        assert (await conn.execute(bound, {"b_version": 99})).rowcount == 0
        assert (await conn.execute(bound, {"b_version": before[1]})).rowcount == 1
        assert await _state_of(conn, machine, row) == (target.value, before[1] + 1)
        assert (await conn.execute(bound, {"b_version": before[1]})).rowcount == 0  # a second writer loses


async def test_the_delivery_stores_receipts_and_results_move_only_what_the_table_allows(database, clock):
    S = DeliveryState
    store = DeliveryStore(database, clock, "n/1")
    async with database.write() as conn:
        parent = await _parents(conn)
        rows = {(kind, s): await _row(conn, DELIVERY, s, parent) for kind in ("delivered", "failed", "result")
                for s in S}
    got = await store.receipts([Receipt(rows[(kind, s)], S(kind), f"x.{kind}", None)
                                for kind in ("delivered", "failed") for s in S])
    assert got == [DELIVERY.can_move(s, S(kind)) for kind in ("delivered", "failed") for s in S]
    assert got.count(True) == 4 + 3  # delivered after pending, sending, sent, uncertain; failed after the last 3
    # a result: only the row still `sending` (and claimed by this node) is written
    results = [Applied(rows[("result", s)], 1, T0, T0 + timedelta(seconds=1),
                       delivery.Decision(S.FAILED, None, "x", ""), None) for s in S]
    assert await store.apply(results) == 1
    async with database.read() as conn:
        d = deliveries.c
        states = dict((await conn.execute(sa.select(d.id, d.state)
                                          .where(d.id.in_([rows[("result", s)] for s in S])))).all())
    assert {s: states[rows[("result", s)]] for s in S} == {s: "failed" if s is S.SENDING else s.value for s in S}
