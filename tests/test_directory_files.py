"""Importing directory files as `warnd directory import` does: read kind by kind, written a
chunk at a time in one transaction, each chunk's references checked against the database.

The files here are longer than one write chunk (WRITE_CHUNK entries), so that what one chunk
refers to, repeats or breaks lies in another one, and a failure late in the files must undo
chunks already written."""
from __future__ import annotations

from pathlib import Path

import pytest

from warnd.domain.errors import WarndError
from warnd.store.directory import WRITE_CHUNK, DirectoryStore

VILLAGE = "421126100201"
GRIDS = [f"{VILLAGE}{n:03d}" for n in range(1, 4)]
ROWS = WRITE_CHUNK + 1_500  # two chunks: the second starts at row WRITE_CHUNK + 1


@pytest.fixture
def store(database, clock) -> DirectoryStore:
    return DirectoryStore(database, clock)


def regions(tmp_path: Path) -> Path:
    path = tmp_path / "regions.csv"
    path.write_text("code,name\n421126,县\n421126100,镇\n421126100201,村\n"
                    + "".join(f"{g},第{i}网格\n" for i, g in enumerate(GRIDS, 1)), encoding="utf-8")
    return path


def households(tmp_path: Path, rows: list[str], name: str = "households.csv") -> Path:
    path = tmp_path / name
    path.write_text("id,grid,address\n" + "".join(rows), encoding="utf-8")
    return path


def many(n: int = ROWS) -> list[str]:
    return [f"hh-{i},{GRIDS[i % 3]},{i}号\n" for i in range(n)]


async def test_files_in_any_order_import_kind_by_kind_across_chunks(store, tmp_path):
    hh = households(tmp_path, many())
    counts = await store.import_files([hh, regions(tmp_path)])  # households named first: regions still go first
    assert counts["regions.inserted"] == 6 and counts["households.inserted"] == ROWS
    assert (await store.counts())["households"] == ROWS
    again = await store.import_files([regions(tmp_path), hh])
    assert again["households.unchanged"] == ROWS and again["households.inserted"] == again["households.updated"] == 0


async def test_a_key_repeated_in_a_later_chunk_names_both_lines_and_nothing_is_written(store, tmp_path):
    rows = many()
    rows.append("hh-7,{},又一次\n".format(GRIDS[0]))  # line ROWS + 2 (the header is line 1)
    with pytest.raises(WarndError) as exc:
        await store.import_files([regions(tmp_path), households(tmp_path, rows)])
    assert exc.value.code == "directory.invalid_row"
    (problem,) = exc.value.problems
    assert problem.field == f"households.csv:{ROWS + 2}.id" and "first at households.csv:9" in problem.detail_en
    assert set((await store.counts()).values()) == {0}  # the regions and the first chunk rolled back


async def test_every_bad_row_is_reported_though_the_first_stops_the_writing(store, tmp_path):
    rows = many()
    rows[10] = "hh-10,,无网格\n"  # line 12: no grid
    rows[-1] = f"hh-{ROWS - 1},{GRIDS[0]},{'很长' * 201}\n"  # the last line: address too long
    with pytest.raises(WarndError) as exc:
        await store.import_files([regions(tmp_path), households(tmp_path, rows)])
    assert exc.value.code == "directory.invalid_row"
    assert {p.field for p in exc.value.problems} == {"households.csv:12.grid", f"households.csv:{ROWS + 1}.address"}
    assert set((await store.counts()).values()) == {0}


async def test_a_grid_unknown_in_a_late_chunk_rolls_back_the_early_ones(store, tmp_path):
    rows = many()
    rows[-1] = f"hh-{ROWS - 1},{VILLAGE}999,无此网格\n"
    with pytest.raises(WarndError) as exc:
        await store.import_files([regions(tmp_path), households(tmp_path, rows)])
    assert exc.value.code == "directory.unknown_reference"
    assert [p.field for p in exc.value.problems] == [f"households.csv:{ROWS + 1}.grid"]
    assert set((await store.counts()).values()) == {0}


async def test_backups_further_down_resolve_and_missing_ones_are_named(store, tmp_path):
    await store.import_files([regions(tmp_path)])  # the regions from the database, this time
    people = [f"p-{i},人{i},{GRIDS[0]},liaison,p-{i + WRITE_CHUNK}\n" for i in range(WRITE_CHUNK + 2)]
    path = tmp_path / "people.csv"
    path.write_text("id,name,region,roles,backup\n" + "".join(people), encoding="utf-8")
    with pytest.raises(WarndError) as exc:  # p-0 and p-1 name people in the next chunk; the rest name nobody
        await store.import_files([path])
    assert exc.value.code == "directory.unknown_reference"
    named = [p.field for p in exc.value.problems]  # the first 20, then how many more
    assert named[:2] == ["people.csv:4.backup", "people.csv:5.backup"] and "people.csv:2.backup" not in named
    assert f"and {WRITE_CHUNK - 20} more" in exc.value.problems[-1].detail_en
    path.write_text("id,name,region,roles,backup\n" + "".join(people[:2]) + "".join(
        f"p-{i},人{i},{GRIDS[0]},liaison,\n" for i in range(2, WRITE_CHUNK + 2)), encoding="utf-8")
    counts = await store.import_files([path])
    assert counts["people.inserted"] == WRITE_CHUNK + 2
    assert (await store.get_person("p-0")).backup == f"p-{WRITE_CHUNK}"


async def test_a_file_that_stops_being_utf8_midway_is_refused_whole(store, tmp_path):
    hh = households(tmp_path, many())
    hh.write_bytes(hh.read_bytes() + f"hh-x,{GRIDS[0]},".encode() + "坏".encode("gbk") + b"\n")
    with pytest.raises(WarndError) as exc:
        await store.import_files([regions(tmp_path), hh])
    assert exc.value.code == "directory.invalid_row"
    assert [p.field for p in exc.value.problems] == ["households.csv:1"]
    assert "UTF-8" in exc.value.problems[0].detail_en
    assert set((await store.counts()).values()) == {0}
