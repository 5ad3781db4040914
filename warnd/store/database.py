"""The database handle: one async SQLAlchemy engine, SQLite (WAL) or PostgreSQL.

The small dialect differences live here and nowhere else:
- SQLite: WAL, synchronous=FULL (a commit survives a crash of the process and
  of the machine), a busy timeout, and write transactions that start with
  BEGIN IMMEDIATE so two writers queue instead of failing on lock upgrade.
  The writers of one process queue in the event loop, not in SQLite.
  A node copies the write-ahead log back into the file itself (`checkpoint`),
  so that no commit waits for it.
- PostgreSQL: claims use FOR UPDATE SKIP LOCKED (see deliveries.py).
- The dispatcher's hot path (`transact`) runs whole transactions of
  `Prepared` statements on a database thread, with the plain DB-API driver;
  values take the driver's form: `stamp`/`unstamp` for times, `unjson` for JSON.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterator, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

from warnd.grouping import Grouped

SQLITE_BUSY_MS = 30_000
GROUP_MAX = 200  # works per grouped transaction
# How often a node copies SQLite's write-ahead log back into the database file (see checkpoint)
CHECKPOINT_SECONDS = 1.0
T = TypeVar("T")


def async_url(url: str) -> str:
    """Map a plain URL to the async driver warnd uses (sqlite → aiosqlite, postgresql → psycopg)."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The synchronous twin of a URL, for Alembic."""
    u = make_url(async_url(url))
    if u.drivername == "sqlite+aiosqlite":
        u = u.set(drivername="sqlite")
    return u.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, background_checkpoints: bool = False) -> None:
        """`background_checkpoints` (SQLite, a file): commits leave the write-ahead log to
        `checkpoint`, which its owner (a node's sweeps) calls every CHECKPOINT_SECONDS."""
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._sqlite_writes = asyncio.Lock()
        path = make_url(self.url).database if self.is_sqlite else None
        self._checkpoint_path = path if background_checkpoints and path and path != ":memory:" else None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()
        autocheckpoint = self._checkpoint_path is None
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                self.url, pool_size=4, max_overflow=0,
                connect_args={"timeout": SQLITE_BUSY_MS / 1000})
            _sqlite_pragmas(self.engine.sync_engine, autocheckpoint)
            _sqlite_begin(self.engine.sync_engine)
            # One connection on one thread: no pre-ping (a broken one is discarded on error).
            self._hot_engine = create_engine(sync_url(url), pool_size=1, max_overflow=0,
                                             connect_args={"timeout": SQLITE_BUSY_MS / 1000})
            _sqlite_pragmas(self._hot_engine, autocheckpoint)
            _sqlite_begin(self._hot_engine)  # for write_hot's Core connection; transact begins by itself
        else:
            self.engine = create_async_engine(self.url, pool_size=pool_size, max_overflow=pool_size,
                                              pool_pre_ping=True)
            self._hot_engine = create_engine(sync_url(url), pool_size=1, max_overflow=0)
        self._hot_thread: ThreadPoolExecutor | None = None
        self._grouped: Grouped = Grouped(self._write_works, GROUP_MAX, "db-group-commit")
        self._hot_grouped: Grouped = Grouped(self._write_hot_works, GROUP_MAX, "db-hot-group-commit")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction: committed on exit, rolled back on error.

        SQLite has one writer at a time, and a writer that finds the lock taken sleeps
        in SQLite's busy handler, in steps of up to 100 ms: during a fan-out, claims
        waited 5-190 ms behind result writes and the sweeps. Queued here, in the event
        loop, each starts the moment the one before commits. (Other processes, such as
        the CLI, still meet the busy handler.)
        """
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._sqlite_writes, self.engine.begin() as conn:
            yield conn

    async def write_grouped(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in a write transaction shared with other callers' work (group commit,
        see warnd.grouping); its result once committed. Each work runs in its own savepoint:
        a failing one is rolled back alone and only its caller gets the error."""
        return await self._grouped(work)

    async def _write_works(self, works: list[Callable[[AsyncConnection], Awaitable[Any]]]) -> list[Any]:
        results: list[Any] = []
        async with self.write() as conn:
            for work in works:
                try:
                    async with conn.begin_nested():
                        results.append(await work(conn))
                except Exception as exc:  # noqa: BLE001 - this caller's error, not the group's
                    results.append(exc)
        return results

    async def write_hot(self, work: Callable[[Connection], T]) -> T:
        """Run `work` (plain, synchronous Core on a `Connection`) in a write transaction on the
        database thread, shared with other callers' work (group commit); its result once committed.

        For what arrives by the thousand and must be durable before it is answered (people's
        replies): through the async engine each of a reply's statements waited for a turn of
        the event loop (and aiosqlite's thread), about 12 ms of CPU a reply in all; here the
        loop waits once per group. When a work fails, the group is rolled back and run
        again with each work in its own savepoint: the failing one is rolled back alone and
        only its caller gets the error, so a work must be safe to run twice (it reads what
        it decides on in the transaction). `work` runs on another thread: it may only use
        the connection and values it was given."""
        return await self._hot_grouped(work)

    async def _write_hot_works(self, works: list[Callable[[Connection], Any]]) -> list[Any]:
        async with self._sqlite_writes if self.is_sqlite else contextlib.nullcontext():
            return await self._on_hot_thread(self._run_hot_works, works)

    def _run_hot_works(self, works: list[Callable[[Connection], Any]]) -> list[Any]:
        with self._hot_engine.connect() as conn:
            tx = conn.begin()
            try:  # the usual case, nothing fails: no savepoints (two statements a work)
                results = [work(conn) for work in works]
            except Exception:  # noqa: BLE001 - one failed: all again, each in its own savepoint
                tx.rollback()
            else:
                tx.commit()  # if this raises, every caller hears why
                return results
            results = []
            with conn.begin():
                for work in works:
                    try:
                        with conn.begin_nested():
                            results.append(work(conn))
                    except Exception as exc:  # noqa: BLE001 - this caller's error, not the group's
                        results.append(exc)
            return results

    async def drain(self) -> None:
        """Wait for grouped writes under way (at shutdown)."""
        await self._grouped.drain()
        await self._hot_grouped.drain()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (no write lock on SQLite)."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(warnd_readonly=True)
            async with conn.begin():
                yield conn

    async def checkpoint(self) -> None:
        """Copy what the write-ahead log holds back into the database file, without waiting for
        readers or writers (PASSIVE), on a thread of its own. SQLite's own way runs this in the
        commit that crosses 1,000 pages: the province-wide warning's commit took 1.5 s instead of
        0.4 s, and a reply's commit now and then waited for it. Nothing when not asked for."""
        if self._checkpoint_path is not None:
            await asyncio.to_thread(self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self._checkpoint_path, timeout=SQLITE_BUSY_MS / 1000,
                                                     isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        await self.drain()
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        if self._hot_thread is not None:  # its connection is closed on the thread that made it
            await asyncio.get_running_loop().run_in_executor(self._hot_thread, self._hot_engine.dispose)
            self._hot_thread.shutdown()
            self._hot_thread = None
        self._hot_engine.dispose()
        await self.engine.dispose()

    # -- the hot path: whole transactions on a database thread --

    def prepare(self, statement: Executable) -> "Prepared":
        return Prepared(self._hot_engine.dialect, statement)

    async def transact(self, work: Callable[["Tx"], T]) -> T:
        """Run `work` in one write transaction on the database thread; committed when it returns.

        For the dispatcher's claims and results, thousands a minute. Through the async
        engine every statement was a round trip to aiosqlite's thread (or to the server)
        whose answer waited for a turn of the event loop, and a turn during a fan-out is
        2-15 ms of sends: a claim took 15-40 ms, and the senders ran dry. Here the loop
        waits once per transaction. `work` runs on another thread: it may only use `Tx`
        and values it was given.
        """
        async with self._sqlite_writes if self.is_sqlite else contextlib.nullcontext():
            return await self._on_hot_thread(self._transact, work)

    async def _on_hot_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._hot_thread is None:
            self._hot_thread = ThreadPoolExecutor(1, thread_name_prefix="warnd-db")
        return await asyncio.get_running_loop().run_in_executor(self._hot_thread, fn, *args)

    def _transact(self, work: Callable[["Tx"], T]) -> T:
        conn = self._hot_engine.raw_connection()
        try:
            if self.is_sqlite:
                conn.cursor().execute("BEGIN IMMEDIATE")
            result = work(Tx(conn, pipeline=not self.is_sqlite))
            conn.commit()
            return result
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.invalidate()  # a fresh connection next time, should this one be broken
            raise
        finally:
            conn.close()

    def stamp(self, moment: datetime) -> Any:
        """An aware datetime as the driver stores it (what UTCDateTime and the dialect would bind)."""
        if moment.tzinfo is not timezone.utc:
            moment = moment.astimezone(timezone.utc)
        if self.is_sqlite:  # SQLAlchemy's SQLite DATETIME text: naive UTC, always with microseconds
            return moment.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
        return moment

    def unstamp(self, value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    def unjson(self, value: Any) -> Any:
        """A JSON column's value: SQLite hands back the text, psycopg the parsed value."""
        if not self.is_sqlite or value is None or value == "null":  # SQLAlchemy stores None as null
            return None if value == "null" else value
        return json.loads(value)


class Prepared:
    """A Core statement compiled once, for `Tx` to run with the DB-API driver.

    Going through SQLAlchemy's execution for every claim and every batch of
    results (cache key, bind and result processing) cost the dispatcher more than
    the sends did. Parameters are given by bind name, already in the driver's form
    (`Database.stamp`); rows come back as the driver's tuples. Statements with an
    expanding IN cannot be prepared.
    """

    def __init__(self, dialect: Any, statement: Executable) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._defaults = compiled.params  # the statement's own values; a call gives the others
        # qmark (SQLite): the values in the order of the placeholders; pyformat (psycopg): by name
        order = tuple(compiled.positiontup) if compiled.positional else ()
        self._pick = (operator.itemgetter(*order) if len(order) > 1
                      else (lambda values: (values[order[0]],)) if order else None)

    def params(self, params: Mapping[str, Any]) -> Any:
        values = {**self._defaults, **params}
        return values if self._pick is None else self._pick(values)


class Tx:
    """The open transaction of `Database.transact` (on the database thread)."""

    def __init__(self, conn: Any, *, pipeline: bool) -> None:
        self._conn = conn  # the DB-API connection
        self._pipeline = pipeline

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Statements sent as one batch: a single round trip to PostgreSQL (pipeline mode).

        Within, `many` gives its cursor, whose rowcount is known once the block is left.
        """
        if not self._pipeline:
            yield
            return
        with self._conn.driver_connection.pipeline():
            yield

    def rows(self, statement: Prepared, params: Mapping[str, Any]) -> list[tuple]:
        """One statement; the rows it returns."""
        return self.run(statement, params).fetchall()

    def run(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        """One statement; its cursor (within `together`, its rowcount is known once the block is left)."""
        cursor = self._conn.cursor()
        cursor.execute(statement.sql, statement.params(params))
        return cursor

    def rows_changed(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        """One statement that changes rows; how many it changed."""
        return self.run(statement, params).rowcount

    def many(self, statement: Prepared, params: Sequence[Mapping[str, Any]]) -> Any:
        """One statement per parameter set; the cursor (its rowcount: the rows changed in all)."""
        cursor = self._conn.cursor()
        if params:
            cursor.executemany(statement.sql, [statement.params(p) for p in params])
        return cursor


def _sqlite_pragmas(engine: Engine, autocheckpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # Database.checkpoint does it, off the commit's path
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()


def _sqlite_begin(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        readonly = conn.get_execution_options().get("warnd_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
