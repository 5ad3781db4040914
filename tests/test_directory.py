"""The directory: parsing YAML/CSV files, and the store on SQLite and PostgreSQL."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from warnd.domain.directory import Household, Person, Region, Subscriber
from warnd.domain.errors import WarndError
from warnd.ingest.directory import DirectoryData, KnownIds, load_directory, parse_entry
from warnd.store import directory as store_module
from warnd.store import schema
from warnd.store.directory import DirectoryStore, redacted

CONFIG = Path(__file__).resolve().parents[1] / "config"
YAML = CONFIG / "directory.example.yaml"
CSV = CONFIG / "people.example.csv"
COUNTY, QINGSHI = "421126", "421126100"
GRID = "421126100201001"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fields_of(exc: pytest.ExceptionInfo) -> set[str]:
    return {p.field for p in exc.value.problems}


@pytest.fixture
def example() -> DirectoryData:
    return load_directory([YAML, CSV])


@pytest.fixture
def store(database, clock) -> DirectoryStore:
    return DirectoryStore(database, clock, allow_private_urls=True)  # the example uses loopback webhooks


# ---------------------------------------------------------------- parsing

def test_example_parses(example):
    assert len(example.regions) == 15
    assert sum(r.kind == "grid" for r in example.regions) == 8
    assert {r.kind for r in example.regions} == {"county", "township", "village", "grid"}
    assert len(example.people) == 21 and len(example.households) == 10
    assert len(example.speakers) == 6 and {s.format for s in example.subscribers} == {"cap", "json"}
    people = {p.id: p for p in example.people}
    assert people["lt-liaison-1"].phone == "+8613800003001"  # 11-digit mobile normalised
    assert people["sm-liaison-1"].phone == "+8613800003003"  # spaces removed
    assert people["sm-liaison-1"].roles == ("liaison", "grid_responsible")
    assert people["fl-liaison-1"].language == "zh-CN"  # empty cell -> default
    assert people["ylw-liaison-1"].language == "en"
    hh = {h.id: h for h in example.households}
    assert hh["hh-lt-0201"].phone == "+867137201234" and hh["hh-lt-0201"].vulnerable
    assert hh["hh-lt-0202"].phone is None and not hh["hh-lt-0202"].vulnerable
    village = next(r for r in example.regions if r.polygon)
    assert village.polygon[0] == village.polygon[-1]
    json_sub = next(s for s in example.subscribers if s.format == "json")
    assert json_sub.levels == ("orange", "red")
    assert example.where("people", "lt-liaison-1", "phone") == "people.example.csv:3.phone"


def test_bad_csv_reports_every_row(tmp_path):
    path = write(tmp_path, "people.csv", "\n".join([
        "id,name,region,roles,phone,language,backup",
        "ok-1,好人,421126,county_duty,13800000001,zh-CN,",
        "bad-phone,甲,421126,county_duty,12345,zh-CN,",
        "bad-role,乙,421126,mayor,13800000002,zh-CN,",
        "bad-lang,丙,421126,liaison,13800000003,chinese please,",
        "bad-region,丁,42112X,liaison,,zh-CN,",
        ",,421126,liaison,,,",
        "self-backup,戊,421126,liaison,,,self-backup",
        "ok-1,重复,421126,liaison,,,",
    ]) + "\n")
    with pytest.raises(WarndError) as exc:
        load_directory([path])
    assert exc.value.code == "directory.invalid_row" and exc.value.status == 400
    assert fields_of(exc) == {
        "people.csv:3.phone", "people.csv:4.roles", "people.csv:5.language", "people.csv:6.region",
        "people.csv:7.id", "people.csv:7.name", "people.csv:8.backup", "people.csv:9.id"}
    assert all(p.detail_en and p.detail_zh for p in exc.value.problems)
    dup = next(p for p in exc.value.problems if p.field == "people.csv:9.id")
    assert "people.csv:2" in dup.detail_en


def test_bad_yaml_rows_name_their_lines(tmp_path):
    path = write(tmp_path, "dir.yaml", """\
regions:
  - {code: "421126", name: 县}
  - code: "4211261"
    name: 七位
  - {code: "421126100201001", name: 网格, parent: "421126"}
  - code: "421126100"
    name: 镇
    kind: village
    polygon: [[30.1, 115.1], [30.2, 115.2], [30.1, 115.3]]
people:
  - {id: p1, name: 人, region: "421126", roles: [], colour: blue}
subscribers:
  - {id: s1, url: "ftp://example.com/", secret: short, format: xml, levels: [purple], statuses: [Real]}
speakers:
  - {id: sp1, grid: "421126100201"}
""")
    with pytest.raises(WarndError) as exc:
        load_directory([path])
    assert fields_of(exc) == {
        "dir.yaml:3.code", "dir.yaml:5.parent", "dir.yaml:9.polygon", "dir.yaml:8.kind",
        "dir.yaml:11.roles", "dir.yaml:11.colour",
        "dir.yaml:13.url", "dir.yaml:13.secret", "dir.yaml:13.format", "dir.yaml:13.levels",
        "dir.yaml:13.statuses", "dir.yaml:15.grid"}


def test_yaml_syntax_and_duplicate_keys(tmp_path):
    broken = write(tmp_path, "broken.yaml", "regions:\n  - {code: 1\n")
    dupkey = write(tmp_path, "dup.yaml", "regions:\n  - code: '421126'\n    code: '421127'\n    name: x\n")
    with pytest.raises(WarndError) as exc:
        load_directory([broken, dupkey])
    assert {f.split(":")[0] for f in fields_of(exc)} == {"broken.yaml", "dup.yaml"}
    assert "dup.yaml:3" in fields_of(exc)


def test_csv_kind_from_name_or_argument(tmp_path):
    text = "code,name,parent\n421126,县,\n421126100,镇,421126\n"
    assert len(load_directory([write(tmp_path, "regions.csv", text)]).regions) == 2
    other = write(tmp_path, "areas.csv", text)
    with pytest.raises(WarndError):
        load_directory([other])
    assert len(load_directory([other], kind="regions").regions) == 2
    assert len(load_directory([(other, "regions")]).regions) == 2
    with pytest.raises(WarndError) as exc:
        load_directory([write(tmp_path, "households-x.csv", "id,grid,address,备注\nh1,421126100201001,一号,x\n")])
    assert fields_of(exc) == {"households-x.csv:1.备注"}


def test_csv_lists_and_empty_strings(tmp_path):
    path = write(tmp_path, "subscribers.csv",
                 "id,url,secret,format,regions,levels,events,statuses,public,active\n"
                 "s1,https://93.184.216.34/h,0123456789abcdef,,421126|421127,红;II,,actual,否,\n")
    [sub] = load_directory([path]).subscribers
    assert sub == Subscriber("s1", "https://93.184.216.34/h", "0123456789abcdef", "cap", ("421126", "421127"),
                             ("red", "orange"), (), ("Actual",), public=False, active=True)


def test_duplicates_across_files(tmp_path):
    a = write(tmp_path, "speakers-a.csv", "id,grid\nsp1,421126100201001\n")
    b = write(tmp_path, "speakers-b.csv", "id,grid\nsp1,421126100201002\n")
    with pytest.raises(WarndError) as exc:
        load_directory([a, b])
    assert fields_of(exc) == {"speakers-b.csv:2.id"}


def test_references_checked_against_known():
    data = load_directory([CSV], known=KnownIds(
        regions={"421126100201001": "grid", "421126100202002": "grid", "421126101201001": "grid",
                 "421126101": "township", "421126101202001": "grid"},
        people={"lt-g1", "fl-g2", "sm-g1", "tz-duty-1", "ylw-g1"}))
    assert len(data.people) == 5
    with pytest.raises(WarndError) as exc:
        load_directory([CSV], known=KnownIds())
    assert exc.value.code == "directory.unknown_reference"
    assert "people.example.csv:3.backup" in fields_of(exc)
    assert "people.example.csv:3.region" in fields_of(exc)


def test_parse_entry_for_api_bodies():
    p = parse_entry("people", {"id": "x1", "name": "某", "region": "421126", "roles": ["liaison"],
                               "phone": "13800000009", "language": "en-us"})
    assert p == Person("x1", "某", "421126", ("liaison",), "+8613800000009", "en-US")
    with pytest.raises(WarndError) as exc:
        parse_entry("households", {"id": "h", "grid": "421126", "address": ""})
    assert fields_of(exc) == {"grid", "address"}


# ---------------------------------------------------------------- the store (SQLite and PostgreSQL)

async def test_import_and_reimport_is_idempotent(store, example, database, clock):
    counts = await store.import_data(example)
    assert counts["regions.inserted"] == 15 and counts["people.inserted"] == 21
    assert counts["households.inserted"] == 10 and counts["speakers.inserted"] == 6
    assert counts["subscribers.inserted"] == 2
    assert sum(v for k, v in counts.items() if not k.endswith(".inserted")) == 0

    clock.advance(60)
    again = await store.import_data(load_directory([YAML, CSV]))
    assert {k: v for k, v in again.items() if v} == {
        "regions.unchanged": 15, "people.unchanged": 21, "households.unchanged": 10,
        "speakers.unchanged": 6, "subscribers.unchanged": 2}
    async with database.read() as conn:
        stamps = set((await conn.execute(sa.select(schema.people.c.updated_at))).scalars())
    assert len(stamps) == 1  # nothing rewritten by the second import

    changed = dataclasses.replace(await store.get_person("lt-g1"), phone="+8613800009999")
    assert await store.put_person(changed) == "updated"
    assert (await store.get_person("lt-g1")).phone == "+8613800009999"
    assert await store.put_person(changed) == "unchanged"


async def test_round_trip_and_parents(store, example):
    await store.import_data(example)
    village = await store.get_region("421126100201")
    assert village == next(r for r in example.regions if r.code == "421126100201")
    assert (await store.get_region(GRID)).parent == "421126100201"  # inferred: the grid's village
    assert (await store.get_region(COUNTY)).parent is None
    assert [r.code for r in await store.list_regions(parent=QINGSHI)] == ["421126100201", "421126100202"]
    assert len(await store.list_regions(kind="grid")) == 8
    page = await store.list_regions(limit=4)
    assert len(page) == 4 and (await store.list_regions(limit=4, after=page[-1].code))[0].code > page[-1].code


async def test_references_resolve_against_the_database(store, tmp_path):
    await store.import_data(load_directory([YAML]))
    counts = await store.import_data(load_directory([CSV]))  # backups live in the database
    assert counts["people.inserted"] == 5
    grids = write(tmp_path, "regions.csv", "code,name\n421126100201009,柳塘村第九网格\n")
    await store.import_data(load_directory([grids]))
    assert (await store.get_region("421126100201009")).parent == "421126100201"


async def test_unknown_backup_rejected_and_nothing_half_imported(store, example, tmp_path):
    await store.import_data(example)
    before = await store.counts()
    path = write(tmp_path, "dir.yaml", """\
regions:
  - {code: "421126100201010", name: 新网格}
people:
  - {id: new-1, name: 新人, region: "421126100201010", roles: [liaison], backup: nobody}
  - {id: new-2, name: 新人二, region: "421126999", roles: [liaison]}
households:
  - {id: new-h, grid: "421126100202009", address: 无处}
""")
    with pytest.raises(WarndError) as exc:
        await store.import_data(load_directory([path]))
    assert exc.value.code == "directory.unknown_reference"
    assert fields_of(exc) == {"dir.yaml:4.backup", "dir.yaml:5.region", "dir.yaml:7.grid"}
    assert await store.counts() == before
    with pytest.raises(WarndError) as exc:
        await store.get_region("421126100201010")
    assert exc.value.code == "directory.not_found" and exc.value.status == 404


async def test_failure_mid_import_rolls_back(store, example, monkeypatch):
    real = store_module.upsert

    def failing(db, table, key):
        if table is schema.subscribers:
            raise RuntimeError("disk full")
        return real(db, table, key)

    monkeypatch.setattr(store_module, "upsert", failing)
    with pytest.raises(RuntimeError):
        await store.import_data(example)
    assert set((await store.counts()).values()) == {0}


async def test_planner_lookups(store, example):
    await store.import_data(example)
    within = await store.regions_within([QINGSHI])
    assert len(within) == 7 and within[0].code == QINGSHI
    assert len(await store.regions_within(["*"])) == 15
    assert len(await store.regions_within(["421126100", "421126101201"])) == 10
    assert [r.code for r in await store.regions_with_polygons()] == ["421126100201"]
    async with store._db.read() as conn:  # no polygon is SQL NULL, not JSON null
        with_polygon = sa.select(sa.func.count()).where(schema.regions.c.polygon.is_not(None))
        assert (await conn.execute(with_polygon)).scalar_one() == 1

    grids = [r.code for r in within if r.kind == "grid"]
    responsible = await store.people_in(grids, ["grid_responsible"])
    assert [p.id for p in responsible] == ["fl-g1", "fl-g2", "lt-g1", "lt-g2"]
    assert {p.id for p in await store.people_in(grids, None)} >= {"lt-liaison-1", "fl-liaison-1"}
    assert [p.id for p in await store.people_by_ids(["lt-head", "missing", "lt-g1"])] == ["lt-head", "lt-g1"]

    households = await store.households_in(grids)
    assert [h.vulnerable for h in households] == [True, True, True, False, False, False]
    assert [s.id for s in await store.speakers_in([GRID, "421126100201002"])] == ["spk-lt-01", "spk-lt-02"]
    assert {s.id for s in await store.active_subscribers()} == {"county-tv-playout", "wechat-bridge"}
    assert [p.id for p in await store.list_people(QINGSHI, role="township_duty")] == ["qs-duty-1", "qs-duty-2"]
    assert len(await store.list_households(vulnerable=True)) == 5


async def test_subscribers_crud_secrets_and_ssrf(store, example, database, clock):
    await store.import_data(example)
    sub = Subscriber("bridge-2", "https://93.184.216.34/hook", "0123456789abcdef-secret", "json",
                     levels=("red",))
    strict = DirectoryStore(database, clock)
    assert await strict.put_subscriber(sub) == "inserted"
    assert (await strict.get_subscriber("bridge-2")).secret == "0123456789abcdef-secret"
    view = redacted(sub)
    assert "secret" not in view and view["levels"] == ["red"]

    for url in ("http://127.0.0.1:9/", "http://169.254.169.254/", "http://[::1]/", "http://localhost/"):
        with pytest.raises(WarndError) as exc:
            await strict.put_subscriber(dataclasses.replace(sub, url=url))
        assert exc.value.code == "directory.unsafe_url" and fields_of(exc) == {"url"}
    with pytest.raises(WarndError) as exc:
        await strict.import_data(load_directory([YAML]))
    assert exc.value.code == "directory.unsafe_url" and all(".url" in f for f in fields_of(exc))

    await store.put_subscriber(dataclasses.replace(sub, active=False))
    assert "bridge-2" not in {s.id for s in await store.active_subscribers()}
    await store.delete_subscriber("bridge-2")
    with pytest.raises(WarndError) as exc:
        await store.delete_subscriber("bridge-2")
    assert exc.value.code == "directory.not_found"


async def test_delete_refuses_entries_in_use(store, example):
    await store.import_data(example)
    for delete, key in ((store.delete_region, GRID), (store.delete_region, QINGSHI), (store.delete_person, "lt-head")):
        with pytest.raises(WarndError) as exc:
            await delete(key)
        assert exc.value.code == "request.invalid"
    await store.delete_speaker("spk-lt-01")
    await store.delete_household("hh-lt-0101")
    await store.delete_household("hh-lt-0102")
    assert await store.list_households(GRID) == []


async def test_put_one_of_each(store, example):
    await store.import_data(example)
    assert await store.put_region(Region("421126100201011", "新网格", "grid")) == "inserted"
    assert (await store.get_region("421126100201011")).parent == "421126100201"
    assert await store.put_household(Household("hh-new", "421126100201011", "新村 1 号", vulnerable=True)) == "inserted"
    with pytest.raises(WarndError) as exc:
        await store.put_person(Person("p-x", "某", "421126", ("liaison",), backup="ghost"))
    assert exc.value.code == "directory.unknown_reference" and fields_of(exc) == {"backup"}


def test_a_drawn_shape_means_the_innermost_regions_it_touches_not_the_county_around_them():
    from warnd.domain.directory import finest
    touched = {"421126", "421126101", "421126101201", "421126101201001", "421126101201002"}
    assert finest(touched) == {"421126101201001", "421126101201002"}
    # a village whose grids have no outline stays itself; two villages stay two
    assert finest({"421126", "421126100201", "421126101202"}) == {"421126100201", "421126101202"}
