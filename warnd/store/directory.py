"""The directory store: regions, people, households, speakers and webhook subscribers.

Imports are one transaction: references are resolved against the data and the
database first, then only new or changed rows are upserted, so re-importing
the same files changes nothing (and keeps `updated_at`). Every write that
changes something is audited in its own transaction, with who made it
(`actor`: "cli", or the API principal's `scope.who`); one that changes nothing
leaves no entry.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.domain.authority import covers
from warnd.domain.directory import Household, Person, Region, Speaker, Subscriber
from warnd.domain.errors import Problem, WarndError, error
from warnd.domain.urlsafety import check_url_async
from warnd.ingest.directory import KEYS, KINDS, TYPES, DirectoryData, DirectoryFiles, Entry, Where, missing_backup, \
    missing_region, wanted_parents, with_parents
from warnd.store.bulk import batches
from warnd.store import audit, schema
from warnd.store.database import Database

TABLES: dict[str, sa.Table] = {"regions": schema.regions, "people": schema.people,
                               "households": schema.households, "speakers": schema.speakers,
                               "subscribers": schema.subscribers}
CHUNK = 500  # values per IN (…) list; far below SQLite's and PostgreSQL's bind limits
WRITE_CHUNK = 5_000  # entries compared and upserted at a time: a province's rows are never all built at once
# Past this many prefixes, regions_within reads the regions once and tests the prefixes here:
# an OR of LIKEs is tested row by row anyway (SQLite's LIKE uses no index), a hundred per row.
MANY_PREFIXES = 50


def upsert(db: Database, table: sa.Table, key: str) -> Any:
    """INSERT … ON CONFLICT (key) DO UPDATE for the database's dialect."""
    stmt = (sqlite.insert if db.is_sqlite else postgresql.insert)(table)
    return stmt.on_conflict_do_update(index_elements=[table.c[key]],
                                      set_={c.name: stmt.excluded[c.name] for c in table.c if c.name != key})


def _to_row(entry: Entry) -> dict[str, Any]:
    # What dataclasses.asdict gave, without its deep copy (a third of a big import's writing)
    row = {name: getattr(entry, name) for name in TYPE_FIELDS[type(entry)]}
    for name, value in row.items():
        if isinstance(value, tuple):
            row[name] = [list(v) if isinstance(v, tuple) else v for v in value]
        elif isinstance(value, dict):
            row[name] = dict(value)
    if isinstance(entry, Region) and entry.polygon is None:
        row["polygon"] = sa.null()  # SQL NULL, not JSON null, so "polygon IS NOT NULL" works
    return row


FIELDS = {kind: tuple(f.name for f in dataclasses.fields(cls)) for kind, cls in TYPES.items()}
TYPE_FIELDS = {cls: FIELDS[kind] for kind, cls in TYPES.items()}
# Texts many entries repeat (a grid's code in each of its people and speakers, "zh-CN"): one copy each
SHARED_TEXT = frozenset({"code", "kind", "parent", "region", "grid", "language"})
JSON_FIELDS = {kind: frozenset(c.name for c in TABLES[kind].c if isinstance(c.type, sa.JSON)) for kind in TYPES}


def _from_row(kind: str, row: Any) -> Entry:
    # Field names looked up once per kind: a warning to 20,000 subscribers reads them all,
    # and dataclasses.fields() per row was most of its intake.
    m = row._mapping
    json_names = JSON_FIELDS[kind]
    return TYPES[kind](**{name: _from_json(m[name]) if name in json_names else m[name] for name in FIELDS[kind]})


def _entries(kind: str, rows: Iterable[Any]) -> list[Entry]:
    """Entries from rows of `FIELDS[kind]` in that order, JSON columns as text (what `_list`
    selects). A province's 300,000 people share a handful of role lists: each distinct text
    is decoded once, and its tuple shared (tuples only: a dict, `groups`, stays one per row)."""
    cls = TYPES[kind]
    json_at = [i for i, name in enumerate(FIELDS[kind]) if name in JSON_FIELDS[kind]]
    shared_at = [i for i, name in enumerate(FIELDS[kind]) if name in SHARED_TEXT]
    decoded: dict[str, Any] = {}
    out = []
    for row in rows:
        values = list(row)
        for i in shared_at:
            if values[i] is not None:
                values[i] = sys.intern(values[i])
        for i in json_at:
            text = values[i]
            value = decoded.get(text) if isinstance(text, str) else None
            if value is None:
                value = _from_json(text)
                if isinstance(text, str) and isinstance(value, tuple):
                    decoded[text] = value
            values[i] = value
        out.append(cls(*values))
    return out


def _from_json(v: Any) -> Any:
    """A JSON column's value (text from SQLite, parsed from PostgreSQL), lists as the tuples
    the domain types hold."""
    if isinstance(v, str):
        v = [] if v == "[]" else json.loads(v)
    if isinstance(v, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return v


def redacted(sub: Subscriber) -> dict[str, Any]:
    """A subscriber as JSON-ready data without its secret (for list and get endpoints)."""
    out = dataclasses.asdict(sub)
    del out["secret"]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def _not_found(kind: str, key: str) -> WarndError:
    return error("directory.not_found", KEYS[kind], f"no {kind} entry {key}", f"名录中没有 {key}")


def _changed_fields(old: Entry, new: Entry) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def _in_use(field: str, en: str, zh: str) -> WarndError:
    return WarndError("request.invalid", [Problem(field, en, zh)])


async def _fetch(conn: AsyncConnection, kind: str, keys: Iterable[str]) -> dict[str, Entry]:
    table, key = TABLES[kind], KEYS[kind]
    out: dict[str, Entry] = {}
    for chunk in _chunks(keys):
        for row in await conn.execute(sa.select(table).where(table.c[key].in_(chunk))):
            entry = _from_row(kind, row)
            out[getattr(entry, key)] = entry
    return out


async def _region_kinds(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, str]:
    t, out = schema.regions, {}
    for chunk in _chunks(codes):
        out.update((code, kind) for code, kind in await conn.execute(
            sa.select(t.c.code, t.c.kind).where(t.c.code.in_(chunk))))
    return out


async def _person_ids(conn: AsyncConnection, ids: Iterable[str]) -> set[str]:
    t, out = schema.people, set()
    for chunk in _chunks(ids):
        out.update((await conn.execute(sa.select(t.c.id).where(t.c.id.in_(chunk)))).scalars())
    return out


class _Import:
    """One import's writes, in the caller's transaction. Entries are compared with what the
    database holds and upserted WRITE_CHUNK at a time; a chunk's references are then checked
    against the database, which holds the import's own earlier rows too; a backup not found
    is checked again at the end (it may come further down). Regions, which refer to each
    other and whose missing parents are filled in, are read whole first. Once the files have
    a bad row nothing more is written or checked, but every entry is still read, so that every
    bad row is reported. At the end any problem raises, and so rolls the transaction back: bad
    rows first, then unsafe URLs, then dangling references."""

    def __init__(self, conn: AsyncConnection, db: Database, now: datetime, files: DirectoryFiles | None, *,
                 allow_private_urls: bool, keep_updated: bool = False) -> None:
        self._conn, self._db, self._now = conn, db, now
        self._files = files  # where the entries come from, with their row problems (None: already checked)
        self._allow_private_urls = allow_private_urls
        self.counts = {f"{k}.{o}": 0 for k in KINDS for o in ("inserted", "updated", "unchanged")}
        self.updated: dict[tuple[str, str], tuple[Entry, Entry]] | None = {} if keep_updated else None
        self._unsafe: list[Problem] = []
        self._dangling: list[Problem] = []
        self._later: list[tuple[Where | None, Person]] = []  # backups not found yet

    async def all(self, entries: Callable[[str], Iterable[tuple[Where | None, Entry]]]) -> None:
        if not self._db.is_sqlite:
            # Every question here is by key. PostgreSQL plans them from statistics that
            # cannot know what this transaction wrote, takes the tables for empty and scans
            # them whole for each part: a province's import never finished (> 20 min).
            await self._conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        await self._regions(entries("regions"))
        for kind in KINDS[1:]:
            for part in batches(entries(kind), WRITE_CHUNK):
                if not self._failed():
                    await self._part(kind, part)
        if not self._failed():
            people = await _person_ids(self._conn, {p.backup for _, p in self._later if p.backup})
            self._dangling += filter(None, (missing_backup(w, p, people) for w, p in self._later))
        invalid = self._files.problems() if self._files is not None else []
        for code, problems in (("directory.invalid_row", invalid), ("directory.unsafe_url", self._unsafe),
                               ("directory.unknown_reference", self._dangling)):
            if problems:
                raise WarndError(code, problems)

    def _failed(self) -> bool:
        return self._files is not None and self._files.failed()

    async def _regions(self, pairs: Iterable[tuple[Where | None, Entry]]) -> None:
        regions: list[tuple[Where | None, Region]] = list(pairs)  # type: ignore[arg-type]
        if self._failed() or not regions:
            return
        kinds = {r.code: r.kind for _, r in regions}
        kinds |= await _region_kinds(self._conn, wanted_parents(r for _, r in regions) - kinds.keys())
        for part in batches(with_parents(regions, kinds, self._dangling), WRITE_CHUNK):
            await self._write("regions", part)

    async def _part(self, kind: str, part: list[tuple[Where | None, Any]]) -> None:
        if kind == "subscribers":
            await self._check_urls(part)
        await self._write(kind, [e for _, e in part])
        if kind == "subscribers":
            return
        kinds = await _region_kinds(self._conn, {e.region if kind == "people" else e.grid for _, e in part})
        self._dangling += filter(None, (missing_region(kind, w, e, kinds) for w, e in part))
        if kind == "people":
            people = await _person_ids(self._conn, {p.backup for _, p in part if p.backup})
            self._later += [(w, p) for w, p in part if missing_backup(w, p, people)]

    async def _check_urls(self, part: list[tuple[Where | None, Subscriber]]) -> None:
        for where, sub in part:
            try:
                await check_url_async(sub.url, allow_private=self._allow_private_urls)
            except WarndError as exc:
                p = exc.problems[0]
                at = where.at("url") if where is not None else f"subscribers[{sub.id}].url"
                self._unsafe.append(Problem(at, p.detail_en, p.detail_zh))

    async def _write(self, kind: str, entries: list[Entry]) -> None:
        """Upsert the new and changed entries; count each outcome."""
        key = KEYS[kind]
        existing = await _fetch(self._conn, kind, [getattr(e, key) for e in entries])
        rows = []
        for e in entries:
            old = existing.get(getattr(e, key))
            outcome = "inserted" if old is None else "unchanged" if old == e else "updated"
            self.counts[f"{kind}.{outcome}"] += 1
            if outcome != "unchanged":
                rows.append(_to_row(e) | {"updated_at": self._now})
            if old is not None and outcome == "updated" and self.updated is not None:
                self.updated[(kind, getattr(e, key))] = (old, e)
        if rows:
            await self._conn.execute(upsert(self._db, TABLES[kind], key), rows)


class DirectoryStore:
    def __init__(self, db: Database, clock: Clock, *, allow_private_urls: bool = False) -> None:
        self._db = db
        self._clock = clock
        self._allow_private_urls = allow_private_urls

    # ------------------------------------------------------------ import

    async def import_data(self, data: DirectoryData, *, actor: str = "cli") -> dict[str, int]:
        """Upsert everything in one transaction; counts per `kind.inserted|updated|unchanged`.
        Audited as `directory.import` with the counts (the ones not zero)."""
        return await self._import(data.pairs, None, actor)

    async def import_files(self, paths: list[Path], *, actor: str = "cli") -> dict[str, int]:
        """Import directory files (CSV, YAML) as `import_data` does, reading them as they are
        written (see DirectoryFiles): a province's files are never all in memory."""
        files = DirectoryFiles(paths)
        return await self._import(files.entries, files, actor)

    async def _import(self, entries: Callable[[str], Iterable[tuple[Where | None, Entry]]],
                      files: DirectoryFiles | None, actor: str) -> dict[str, int]:
        now = self._clock.now()
        async with self._db.write() as conn:
            write = _Import(conn, self._db, now, files, allow_private_urls=self._allow_private_urls)
            await write.all(entries)
            if any(n for c, n in write.counts.items() if not c.endswith(".unchanged")):
                await audit.append(conn, self._db, now, actor, "directory.import", "directory",
                                   {c: n for c, n in write.counts.items() if n})
        return write.counts

    # ------------------------------------------------------------ generic get / list / put / delete

    async def _get(self, kind: str, key: str) -> Entry:
        async with self._db.read() as conn:
            found = await _fetch(conn, kind, [key])
        if key not in found:
            raise _not_found(kind, key)
        return found[key]

    async def _list(self, kind: str, *where: Any, limit: int | None = None, after: str | None = None,
                    order: Sequence[Any] = ()) -> list[Any]:
        table = TABLES[kind]
        key = table.c[KEYS[kind]]
        # JSON columns as their text, decoded here: most are "[]" (no filter), and json.loads
        # per value was a third of the intake of a warning to 20,000 subscribers. Only the
        # entry's own fields, in its order (not updated_at: a province reads 300,000 people).
        columns = [sa.type_coerce(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
                   for c in (table.c[name] for name in FIELDS[kind])]
        stmt = sa.select(*columns).where(*where).order_by(*order, key)
        if after is not None:
            stmt = stmt.where(key > after)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._db.read() as conn:
            return _entries(kind, await conn.execute(stmt))

    async def _put(self, kind: str, entry: Entry, actor: str) -> str:
        """Insert or replace one entry; return "inserted", "updated" or "unchanged".

        Audited as `directory.put` when it changed something, with the names (not the
        values: phone numbers, secrets) of the fields an update changed."""
        key = getattr(entry, KEYS[kind])  # problems then name bare fields, as parse_entry's do
        data = DirectoryData(**{kind: (entry,)}, sources={(kind, key): Where("", 0)})
        now = self._clock.now()
        async with self._db.write() as conn:
            write = _Import(conn, self._db, now, None, allow_private_urls=self._allow_private_urls,
                            keep_updated=True)
            await write.all(data.pairs)
            outcome = next(o for o in ("inserted", "updated", "unchanged") if write.counts[f"{kind}.{o}"])
            if outcome != "unchanged":
                detail: dict[str, Any] = {"kind": kind, "key": key, "outcome": outcome}
                if write.updated and (kind, key) in write.updated:
                    detail["fields"] = _changed_fields(*write.updated[(kind, key)])
                await audit.append(conn, self._db, now, actor, "directory.put", f"{kind}:{key}", detail)
        return outcome

    async def _delete(self, kind: str, key: str, used_by: Sequence[tuple[str, str, str, str]] = (), *,
                      actor: str) -> None:
        """Delete one entry; refuse while a (kind, column) in `used_by` still refers to it."""
        table = TABLES[kind]
        async with self._db.write() as conn:
            for ref_kind, column, en, zh in used_by:
                ref_table = TABLES[ref_kind]
                ref = (await conn.execute(sa.select(ref_table.c[KEYS[ref_kind]])
                                          .where(ref_table.c[column] == key).limit(1))).scalar()
                if ref is not None:
                    raise _in_use(KEYS[kind], f"{key} is still used by {en} {ref}", f"{key} 仍被{zh} {ref} 引用")
            result = await conn.execute(sa.delete(table).where(table.c[KEYS[kind]] == key))
            if result.rowcount == 0:
                raise _not_found(kind, key)
            await audit.append(conn, self._db, self._clock.now(), actor, "directory.delete", f"{kind}:{key}",
                               {"kind": kind, "key": key})

    # ------------------------------------------------------------ regions

    async def list_regions(self, parent: str | None = None, *, kind: str | None = None,
                           limit: int | None = None, after: str | None = None) -> list[Region]:
        t = schema.regions
        where = []
        if parent is not None:
            where.append(t.c.parent == parent)
        if kind is not None:
            where.append(t.c.kind == kind)
        return await self._list("regions", *where, limit=limit, after=after)

    async def get_region(self, code: str) -> Region:
        return await self._get("regions", code)  # type: ignore[return-value]

    async def put_region(self, region: Region, *, actor: str = "cli") -> str:
        return await self._put("regions", region, actor)

    async def delete_region(self, code: str, *, actor: str = "cli") -> None:
        await self._delete("regions", code, [
            ("regions", "parent", "region", "下级区划"), ("people", "region", "person", "人员"),
            ("households", "grid", "household", "住户"), ("speakers", "grid", "speaker", "广播终端")], actor=actor)

    # ------------------------------------------------------------ people

    async def list_people(self, region: str | None = None, *, role: str | None = None,
                          limit: int | None = None, after: str | None = None) -> list[Person]:
        """People answering for `region` or any region inside it; optionally with `role`."""
        t = schema.people
        where = [t.c.region.startswith(region, autoescape=True)] if region else []
        if role is None:
            return await self._list("people", *where, limit=limit, after=after)  # type: ignore[return-value]
        out: list[Person] = []
        while limit is None or len(out) < limit:  # roles is a JSON list: filter here, page through
            page = await self._list("people", *where, limit=CHUNK, after=after)
            out += [p for p in page if role in p.roles]
            if len(page) < CHUNK:
                break
            after = page[-1].id
        return out[:limit] if limit is not None else out

    async def get_person(self, id: str) -> Person:
        return await self._get("people", id)  # type: ignore[return-value]

    async def put_person(self, person: Person, *, actor: str = "cli") -> str:
        return await self._put("people", person, actor)

    async def delete_person(self, id: str, *, actor: str = "cli") -> None:
        await self._delete("people", id, [("people", "backup", "the backup of person", "人员（AB 角）")],
                           actor=actor)

    # ------------------------------------------------------------ households

    async def list_households(self, grid: str | None = None, *, vulnerable: bool | None = None,
                              limit: int | None = None, after: str | None = None) -> list[Household]:
        t = schema.households
        where = []
        if grid is not None:
            where.append(t.c.grid == grid)
        if vulnerable is not None:
            where.append(t.c.vulnerable == vulnerable)
        return await self._list("households", *where, limit=limit, after=after)

    async def get_household(self, id: str) -> Household:
        return await self._get("households", id)  # type: ignore[return-value]

    async def put_household(self, household: Household, *, actor: str = "cli") -> str:
        return await self._put("households", household, actor)

    async def delete_household(self, id: str, *, actor: str = "cli") -> None:
        await self._delete("households", id, actor=actor)

    # ------------------------------------------------------------ speakers

    async def list_speakers(self, grid: str | None = None, *, limit: int | None = None,
                            after: str | None = None) -> list[Speaker]:
        where = [schema.speakers.c.grid == grid] if grid is not None else []
        return await self._list("speakers", *where, limit=limit, after=after)

    async def get_speaker(self, id: str) -> Speaker:
        return await self._get("speakers", id)  # type: ignore[return-value]

    async def put_speaker(self, speaker: Speaker, *, actor: str = "cli") -> str:
        return await self._put("speakers", speaker, actor)

    async def delete_speaker(self, id: str, *, actor: str = "cli") -> None:
        await self._delete("speakers", id, actor=actor)

    # ------------------------------------------------------------ subscribers (secrets included: use redacted())

    async def list_subscribers(self, *, active: bool | None = None, limit: int | None = None,
                               after: str | None = None) -> list[Subscriber]:
        where = [schema.subscribers.c.active == active] if active is not None else []
        return await self._list("subscribers", *where, limit=limit, after=after)

    async def get_subscriber(self, id: str) -> Subscriber:
        return await self._get("subscribers", id)  # type: ignore[return-value]

    async def put_subscriber(self, sub: Subscriber, *, actor: str = "cli") -> str:
        """Checks the URL against the SSRF guard first (directory.unsafe_url)."""
        return await self._put("subscribers", sub, actor)

    async def delete_subscriber(self, id: str, *, actor: str = "cli") -> None:
        await self._delete("subscribers", id, actor=actor)

    # ------------------------------------------------------------ lookups for the planner

    async def regions_within(self, codes: Iterable[str]) -> list[Region]:
        """Every region whose code starts with one of `codes` ("*" = all), the regions themselves included."""
        codes = sorted(set(codes))
        if not codes:
            return []
        code = schema.regions.c.code
        if "*" in codes:
            return await self._list("regions")
        if len(codes) > MANY_PREFIXES:  # region codes are digits: LIKE's case folding changes nothing
            prefixes = tuple(codes)
            found = [r for r in await self._list("regions") if r.code.startswith(prefixes)]
        else:
            found = await self._list("regions", sa.or_(*(code.startswith(c, autoescape=True) for c in codes)))
        # A prefix is only a candidate: grid 4211261002010011 is not below grid 421126100201001.
        parents = {x.code: x.parent for x in found}  # once: per region it made a province quadratic
        return [region for region in found if covers(codes, region.code, parents)]

    async def parents_of(self, codes: Iterable[str]) -> dict[str, str | None]:
        """The directory's parent links of these codes and of all their ancestors."""
        out: dict[str, str | None] = {}
        todo = {c for c in codes if c and c != "*"}
        r = schema.regions.c
        async with self._db.read() as conn:
            while todo:
                rows = (await conn.execute(sa.select(r.code, r.parent).where(r.code.in_(sorted(todo))))).all()
                out.update({row.code: row.parent for row in rows})
                todo = {row.parent for row in rows if row.parent and row.parent not in out}
        return out

    async def regions_with_polygons(self) -> list[Region]:
        regions = await self._list("regions", schema.regions.c.polygon.is_not(None))
        return [r for r in regions if r.polygon]

    async def people_in(self, region_codes: Iterable[str], roles: Iterable[str] | None = None) -> list[Person]:
        """People answering for exactly these regions with any of `roles` (None or empty = any role)."""
        wanted = set(roles or ())
        out = await self._in_regions("people", "region", region_codes)
        return sorted((p for p in out if not wanted or wanted & set(p.roles)), key=lambda p: p.id)

    async def people_by_ids(self, ids: Iterable[str]) -> list[Person]:
        """The people with these ids, in the order given; unknown ids are left out."""
        ids = list(dict.fromkeys(ids))
        async with self._db.read() as conn:
            found = await _fetch(conn, "people", ids)
        return [found[i] for i in ids if i in found]  # type: ignore[misc]

    async def active_subscribers(self) -> list[Subscriber]:
        return await self.list_subscribers(active=True)

    async def speakers_in(self, grids: Iterable[str]) -> list[Speaker]:
        out = await self._in_regions("speakers", "grid", grids)
        return sorted(out, key=lambda s: s.id)

    async def households_in(self, grids: Iterable[str]) -> list[Household]:
        """Households of these grids, vulnerable first (the door-to-door order), then by grid and id."""
        out = await self._in_regions("households", "grid", grids)
        return sorted(out, key=lambda h: (not h.vulnerable, h.grid, h.id))

    async def _in_regions(self, kind: str, column: str, codes: Iterable[str]) -> list[Any]:
        """The entries whose `column` is one of `codes`, in no particular order (callers sort).

        IN lists of CHUNK codes; but when the codes are half of the directory's regions or
        more (a province-wide warning: 125,000), one pass over the table, kept by the same
        test: hundreds of queries fewer, the same entries."""
        wanted = set(codes)
        if len(wanted) > CHUNK:
            async with self._db.read() as conn:
                regions = (await conn.execute(sa.select(sa.func.count()).select_from(schema.regions))).scalar_one()
            if 2 * len(wanted) >= regions:
                return [e for e in await self._list(kind) if getattr(e, column) in wanted]
        out: list[Any] = []
        for chunk in _chunks(wanted):
            out += await self._list(kind, TABLES[kind].c[column].in_(chunk))
        return out

    async def counts(self) -> dict[str, int]:
        """Rows per kind."""
        async with self._db.read() as conn:
            return {kind: (await conn.execute(sa.select(sa.func.count()).select_from(TABLES[kind]))).scalar_one()
                    for kind in KINDS}

