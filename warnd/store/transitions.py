"""State changes as compare-and-set UPDATEs whose source states come from the domain's tables.

    transition(DELIVERY, State.CANCELLED)        UPDATE deliveries SET state='cancelled', version=version+1
                                                 WHERE deliveries.state IN ('pending')

The `WHERE state IN (…)` is `allowed_from` of the machine (warnd.domain.states): the SQL
cannot allow what the table does not. A caller may narrow it (`within`: a CAS from fewer
states, e.g. only `sending` rows of this node's claim), never widen it: a state the table
does not allow is refused when the statement is built (IllegalTransition), so at import
for the statements built then. With `version` the row must also still be the version the
caller read. Every transition counts the row's version up.

The IN list holds one bound value per state, not an expanding IN, so the statements can be
compiled once (`Database.prepare`): the hot paths build theirs once, and pay nothing per row.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from warnd.domain.states import IllegalTransition, Machine, narrowed
from warnd.store.schema import metadata

__all__ = ["IllegalTransition", "column_of", "in_states", "sources", "table_of", "transition", "where_from"]


def table_of(machine: Machine) -> sa.Table:
    return metadata.tables[machine.table]


def column_of(machine: Machine) -> sa.Column:
    return table_of(machine).c[machine.column]


def _targets(into: Any) -> tuple:
    return (into,) if isinstance(into, (enum.Enum, str)) else tuple(into)


def sources(machine: Machine, into: Any, within: Iterable[Any] | None = None) -> tuple:
    """The states a row may be in for this change: to `into` (a state, or every state a
    bound parameter may name), from the table's sources or only those of `within`."""
    return narrowed(machine, _targets(into), within)


def in_states(column: sa.ColumnElement, states: Iterable[Any]) -> sa.ColumnElement[bool]:
    """`column IN (…)` of these states (None: the column is NULL), with one bound value each."""
    states = tuple(states)
    values = [s.value for s in states if s is not None]
    clauses = []
    if values:
        clauses.append(column.in_([sa.literal(v, column.type) for v in values]))
    if None in states:
        clauses.append(column.is_(None))
    if not clauses:  # no state may move there: a statement that changes nothing
        return sa.false()
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def where_from(machine: Machine, into: Any, within: Iterable[Any] | None = None,
               column: sa.ColumnElement | None = None) -> sa.ColumnElement[bool]:
    """The condition on the current state of a row moving `into` (see `sources`); `column`:
    the state column of an alias of the machine's table."""
    return in_states(column_of(machine) if column is None else column, sources(machine, into, within))


def transition(machine: Machine, into: Any, *, within: Iterable[Any] | None = None, state: Any = None,
               version: Any = None) -> sa.Update:
    """UPDATE the machine's table to `into`, WHERE the current state may move there [AND the
    version is `version`], counting the version up; the caller adds its rows and other values.

    `into` is a state, or (with `state`, the bound parameter or expression written) every
    state that parameter may name: the sources are then those all of them allow. `version`:
    a value or bound parameter the row's version must equal (None: not compared)."""
    table = table_of(machine)
    targets = _targets(into)
    if state is None:
        if len(targets) != 1:
            raise ValueError(f"{machine.name}: several target states need the `state` written")
        state = machine.states(targets[0]).value
    stmt = sa.update(table).where(where_from(machine, targets, within))
    if version is not None:
        stmt = stmt.where(table.c.version == version)
    return stmt.values({machine.column: state, "version": table.c.version + 1})
