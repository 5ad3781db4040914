"""Bulk INSERT without converting the same values once per row."""
from __future__ import annotations

import itertools
import operator
from typing import Any, Callable, Iterable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")
CHUNK = 20_000  # rows turned into parameters at a time: a province's 470,000 plan rows never all at once


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last shorter), read as they are needed."""
    todo = iter(items)
    while part := list(itertools.islice(todo, size)):
        yield part


async def insert_rows_chunked(conn: AsyncConnection, table: sa.Table, shared: dict[str, Any],
                              rows: Iterable[dict[str, Any]], size: int = CHUNK) -> None:
    """`insert_rows` in parts of `size` rows, in order: the same rows as one call, in the
    same transaction, without the parameters of all of them held at once."""
    for part in batches(rows, size):
        await insert_rows(conn, table, shared, part)


async def insert_rows(conn: AsyncConnection, table: sa.Table, shared: dict[str, Any],
                      rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (each completed by the values in `shared`) with one executemany.

    `conn.execute(insert, rows)` passes every value of every row through its column
    type (times, JSON, booleans): for a warning to 20,000 subscribers that was 0.4 s of
    the intake, spent converting the same few times over and over. Here the shared
    values are converted once, a row's own values only where their type needs it, and
    the driver is handed tuples: the row's own values, then the shared ones (not a dict
    of every column per row: 5-8 % faster on 200,000 deliveries; SQLite's own work is
    most of an insert). Every row must have the same keys.
    """
    if not rows:
        return
    dialect = conn.dialect
    own_names = list(rows[0])
    compiled = sa.insert(table).inline().compile(dialect=dialect, column_keys=[*shared, *own_names])
    # every column the INSERT sets: the given ones and those with a Python-side default
    fixed_names = [n for n in (compiled.positiontup if compiled.positional else compiled.params) if n not in rows[0]]

    def processor(name: str) -> Callable[[Any], Any] | None:
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    fixed = []
    for name in fixed_names:  # the shared values, and the Python-side defaults SQLAlchemy would fill in
        default = table.c[name].default
        if name in shared:
            value = shared[name]
        elif default is None or default.is_scalar:
            value = None if default is None else default.arg
        else:
            raise ValueError(f"{table.name}.{name} needs a value: its default is not a constant")
        process = processor(name)
        fixed.append(process(value) if process else value)
    shared_values = tuple(fixed)
    own = [(i, process) for i, name in enumerate(own_names) if (process := processor(name))]
    pick = operator.itemgetter(*own_names) if len(own_names) > 1 else lambda row: (row[own_names[0]],)

    def params(row: dict[str, Any]) -> tuple:
        values = pick(row)
        if own:
            converted = list(values)
            for i, process in own:
                converted[i] = process(converted[i])
            values = tuple(converted)
        return values + shared_values

    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = [*own_names, *fixed_names]
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    await conn.exec_driver_sql(sql, [params(row) for row in rows])
