"""Adversarial suite (issue 10): property-based fuzzing of the directory importer.

Rows of every kind through `parse_entry` (what the API's PUT does), and YAML
and CSV files through `load_directory` (what `warnd directory import` and the
import endpoint do): the answer is an entry / DirectoryData or a WarndError
with a `directory.*` code, a status below 500 and printable problems — never
another exception. An accepted entry, written back as a row, parses to itself.

Reproducible like tests/test_fuzz_cap.py: profile "warnd-ci" by default,
WARND_FUZZ_PROFILE=warnd-deep for a longer random hunt.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import yaml
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warnd.domain.directory import ROLES
from warnd.domain.errors import CATALOGUE, WarndError
from warnd.ingest.directory import KINDS, SPECS, TYPES, DirectoryData, KnownIds, load_directory, parse_entry

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]
settings.register_profile("warnd-ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("warnd-deep", derandomize=False, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
PROFILE = os.environ.get("WARND_FUZZ_PROFILE", "warnd-ci")
SCALE = 10 if PROFILE == "warnd-deep" else 1


def fuzz(examples: int) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


def refused_properly(exc: WarndError, codes: tuple[str, ...] = ("directory.invalid_row",)) -> None:
    assert exc.code in CATALOGUE and exc.code in codes, exc.code
    assert exc.status < 500
    assert exc.problems
    for p in exc.problems:  # problem+json is UTF-8: a lone surrogate here is a 500
        for text in (p.field, p.detail_en, p.detail_zh):
            assert isinstance(text, str)
            text.encode("utf-8")
    str(exc)


# ---------------------------------------------------------------- values

VILLAGE = "421126100201"
codes = st.one_of(st.sampled_from(["42", "4211", "421126", "421126100", VILLAGE, VILLAGE + "001", VILLAGE + "0019"]),
                  st.from_regex(r"[0-9]{1,20}", fullmatch=True),
                  st.sampled_from(["", "*", "42112x", "４２１１２６", "421126 ", "-421126", "421126100201001\n"]))
ids = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,70}", fullmatch=True),
                st.sampled_from(["", "-a", "a b", "中文", "a" * 65]))
phones = st.one_of(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.from_regex(r"\+[0-9]{5,16}", fullmatch=True),
                   st.sampled_from(["0713-1234567", "(0713) 123 4567", "008613800138000", "+8613800138000", "+86123",
                                    "+12025550123", "12", "１３８００１３８０００", "+", "00", "+8601234567"]))
urls = st.one_of(st.sampled_from([
    "https://example.org/hook", "http://127.0.0.1:9/x", "http://[::1]/", "http://169.254.169.254/latest",
    "http://0x7f.1/", "http://2130706433/", "ftp://example.org/", "https://user@example.org/", "http://h:99999/",
    "http://h:-1/", "http://[fe80::1%25eth0]/", "https://例子.测试/", "http:///x", "//example.org", "http://[::1",
    "http://h:\ud800/", "https://example.org/" + "a" * 2001]), st.text(max_size=40))
polygons = st.one_of(
    st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=3, max_size=6).map(
        lambda ps: [list(p) for p in ps + [ps[0]]]),
    st.lists(st.lists(st.one_of(st.floats(), st.integers(-10**400, 10**400), st.booleans(), st.text(max_size=4),
                                st.none()), max_size=3), max_size=6),
    st.sampled_from(["30,114;30,115;31,115;30,114", "30,114 30,115 31,115 30,114", "1,2", "a,b;c,d;e,f;a,b", ""]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=20),
                    st.binary(max_size=4), st.dates(), st.datetimes(), st.just(float("nan")))
anything = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3),
    st.frozensets(st.integers(0, 3), max_size=2), st.tuples(kids, kids)), max_leaves=8)


def some(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value, sometimes anything at all."""
    return st.integers(0, 5).flatmap(lambda i: good if i else anything)


def many(good: st.SearchStrategy) -> st.SearchStrategy:
    return some(st.one_of(st.lists(good, max_size=3), st.lists(good, max_size=3).map(";".join), good))


words = st.text(max_size=30)
FIELD_VALUES: dict[str, st.SearchStrategy] = {
    "code": codes, "parent": codes, "region": codes, "grid": codes, "name": words, "address": words,
    "kind": st.sampled_from(["county", "township", "village", "grid", "province", "x", ""]),
    "polygon": polygons, "id": ids, "backup": ids, "phone": phones,
    "groups": st.one_of(st.dictionaries(st.sampled_from(["wecom", "sms", "Wecom", ""]), st.sampled_from(
        ["693a91f6-7b2c-4bc4-97a0-0ec2a1fa5aaa", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7b2c",
         "http://x/?key=a&key=b", "short", "", "密钥密钥密钥密钥"]), max_size=2),
        st.sampled_from(["wecom=693a91f6-7b2c-4bc4", "wecom", "=x;wecom=", ""])),
    "roles": many(st.sampled_from([*ROLES, "pilot", ""])),
    "language": st.sampled_from(["zh-CN", "zh_cn", "en", "zh-Hans-CN", "yue-HK", "e", "english", "zh-419", ""]),
    "vulnerable": st.sampled_from([True, False, "yes", "否", "1", "maybe", 2]),
    "url": urls, "secret": st.one_of(st.just("whsec_" + "A" * 32), st.text(max_size=24)),
    "format": st.sampled_from(["cap", "JSON", "xml", ""]),
    "regions": many(st.one_of(codes, st.just("*"))),
    "levels": many(st.sampled_from(["red", "红", "IV", "1", "purple", ""])),
    "events": many(words), "statuses": many(st.sampled_from(["Actual", "test", "Other", ""])),
    "public": st.sampled_from([True, "no", "y", ""]), "active": st.booleans(), "restricted": st.sampled_from(["是", 0]),
}


@st.composite
def rows(draw: st.DrawFn, kind: str) -> dict:
    spec = SPECS[kind]
    names = draw(st.lists(st.sampled_from(sorted(spec)), unique=True, max_size=len(spec)))
    if draw(st.integers(0, 2)):  # most rows have every required field
        names = sorted(set(names) | {n for n, (_, required) in spec.items() if required})
    row = {n: draw(some(FIELD_VALUES[n])) for n in names}
    if draw(st.integers(0, 9)) == 0:
        row[draw(st.one_of(st.text(max_size=6), st.sampled_from(["\ud800", "Code", "id "])))] = draw(anything)
    return row


GRID = VILLAGE + "001"
VALID_ROWS = {
    "regions": {"code": GRID, "name": "一组", "kind": "grid", "parent": VILLAGE,
                "polygon": "30,114;30,115;31,115;30,114"},
    "people": {"id": "p1", "name": "张三", "region": GRID, "roles": "grid_responsible;liaison", "phone": "13800138000",
               "language": "zh_cn", "backup": "p2"},
    "households": {"id": "h1", "grid": GRID, "address": "一组3号", "phone": "0713-1234567", "vulnerable": "是"},
    "speakers": {"id": "s1", "grid": GRID},
    "subscribers": {"id": "tv", "url": "https://example.org/hook", "secret": "whsec_" + "A" * 32, "format": "JSON",
                    "regions": ["421126", "*"], "levels": "红|orange", "events": ["暴雨"], "statuses": ["actual"],
                    "public": "yes", "active": True, "restricted": "否"},
}


@st.composite
def near_valid_rows(draw: st.DrawFn, kind: str) -> dict:
    """A valid row with a field or two replaced by plausible values: most are accepted, so the
    write-back round trip is exercised."""
    row = dict(VALID_ROWS[kind])
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(row) or ["id"]))
        if draw(st.integers(0, 3)) == 0 and not SPECS[kind][name][1]:
            row.pop(name, None)
        else:
            row[name] = draw(FIELD_VALUES[name])
    return row


kinds = st.sampled_from(KINDS)


def as_row(entry: object) -> dict:
    """An entry written back the way a client would send it."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(entry).items()
            if v is not None}


# ---------------------------------------------------------------- parse_entry

def entry_or_refusal(kind: str, raw: dict) -> None:
    try:
        entry = parse_entry(kind, raw)
    except WarndError as exc:
        refused_properly(exc)
        return
    assert isinstance(entry, TYPES[kind])
    assert parse_entry(kind, as_row(entry)) == entry  # normalised values are fixed points


@pytest.mark.parametrize(("kind", "raw"), [
    ("regions", {"code": "421126", "name": "x", "polygon": [[10**400, 1], [1, 1], [1, 2], [10**400, 1]]}),
    ("people", {"id": "p", "name": "n", "region": "421126", "roles": ["liaison"], "\ud800": 1}),
    ("subscribers", {"id": "s", "url": "http://h:\ud800/", "secret": "s" * 16}),
    ("households", {"id": "h", "grid": VILLAGE + "001", "address": "a", "vulnerable": float("nan")}),
], ids=["huge-int-point", "surrogate-field-name", "surrogate-in-url-port", "nan-bool"])
def test_hostile_rows(kind, raw):
    entry_or_refusal(kind, raw)


@fuzz(600)
@given(data=st.data())
def test_rows_through_parse_entry(data):
    kind = data.draw(kinds)
    entry_or_refusal(kind, data.draw(st.one_of(rows(kind), near_valid_rows(kind))))


@fuzz(150)
@given(kind=kinds, raw=st.dictionaries(st.text(max_size=8), anything, max_size=6))
def test_arbitrary_mappings_through_parse_entry(kind, raw):
    try:
        assert isinstance(parse_entry(kind, raw), TYPES[kind])
    except WarndError as exc:
        refused_properly(exc)


# ---------------------------------------------------------------- files

_DIR = Path(tempfile.mkdtemp(prefix="warnd-fuzz-dir-"))  # module-wide: @given tests take no tmp_path


@pytest.fixture(scope="module", autouse=True)
def _remove_the_files_afterwards():
    yield
    shutil.rmtree(_DIR, ignore_errors=True)


def load(files: list[tuple[str, bytes]], known: KnownIds | None) -> None:
    paths = []
    for i, (name, content) in enumerate(files):
        folder = _DIR / str(i)
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    try:
        data = load_directory(paths, known=known)
    except WarndError as exc:
        refused_properly(exc, ("directory.invalid_row", "directory.unknown_reference"))
        return
    assert isinstance(data, DirectoryData)
    for kind in KINDS:
        assert all(isinstance(e, TYPES[kind]) for e in getattr(data, kind))


yaml_safe_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=20),
                              st.dates(), st.datetimes(), st.binary(max_size=4))
yaml_values = st.recursive(yaml_safe_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)), max_leaves=6)


@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    """Well-formed YAML: sections of rows, sometimes the wrong shape."""
    doc: object = {kind: draw(st.one_of(st.lists(st.one_of(rows(kind), near_valid_rows(kind)), max_size=4),
                                        st.none(), yaml_values))
                   for kind in draw(st.lists(kinds, unique=True, max_size=5))}
    if draw(st.integers(0, 9)) == 0:
        doc = draw(st.one_of(yaml_values, st.dictionaries(st.text(max_size=8), yaml_values, max_size=2)))

    def plain(value: object) -> object:  # frozensets and tuples as YAML's safe dumper knows them
        if isinstance(value, (list, tuple, frozenset)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    text = yaml.safe_dump(plain(doc), allow_unicode=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


YAML_FRAGMENTS = st.sampled_from([
    "regions:\n", "people:\n", "subscribers:\n", "households:\n", "speakers:\n", "  - ", "{", "}", "[", "]", ": ",
    ", ", "\n", "    ", "code: \"421126\"", "code: 421126100201001", "name: x", "id: p1", "roles: [liaison]",
    "region: 421126", "grid: 421126100201001", "url: https://example.org/h", "secret: 0123456789abcdef",
    "&a ", "*a", "<<: *a", "!!binary aGk=", "!!python/object:os.system ", "!!set {a, b}", "!!omap [a: 1]",
    "!!timestamp 2026-07-01", "!!float .nan", ".inf", "~", "null", "yes", "0x1F", "0o17", "1_000", "9" * 5000,
    "? [a, b]\n: c", "? {a: 1}\n: c", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x:\n", "# c\n", "|\n  x\n",
    ">-\n  y\n", "'", "\"", "\\", "\t", "\x00", "\x85", "\ufeff", "\ud800", "中文", "[" * 60, "]" * 60,
    "code: 1\ncode: 2\n",
])


@fuzz(300)
@given(text=st.lists(st.one_of(YAML_FRAGMENTS, st.text(max_size=5)), max_size=30).map("".join),
       known=st.sampled_from([None, KnownIds(), KnownIds({VILLAGE: "village"}, frozenset({"p1"}))]))
@example(text="regions:\n" + "[" * 2000 + "]" * 2000 + "\n", known=None)
@example(text="regions:\n  - {code: 421126, name: x, polygon: [[" + "9" * 400 + ", 1]]}\n", known=None)
@example(text="people:\n  - {id: " + "9" * 5000 + "}\n", known=None)
def test_yaml_text_through_load_directory(text, known):
    load([("directory.yaml", text.encode("utf-8", "surrogatepass"))], known)


@fuzz(250)
@given(content=yaml_documents(),
       known=st.sampled_from([None, KnownIds(), KnownIds({VILLAGE: "village", "421126": "county"}, frozenset({"p1"}))]))
def test_yaml_documents_through_load_directory(content, known):
    load([("dir.yml", content)], known)


CSV_CELLS = st.one_of(*(FIELD_VALUES[n].filter(lambda v: isinstance(v, str)) for n in ("code", "id", "phone", "name")),
                      st.sampled_from(['"', '""', '"a,b"', "a\nb", '"a\nb"', "\x00", "#", " # x", "\r", "\ufeff", ";",
                                       "liaison;village_head", "x" * 200_000]),
                      st.text(max_size=8))


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(kinds)
    names = sorted(SPECS[kind])
    header = draw(st.lists(st.one_of(st.sampled_from(names), st.text(max_size=5)), min_size=1, max_size=8))
    if draw(st.integers(0, 2)):
        header = list(dict.fromkeys(names + header))
    lines = [header] + draw(st.lists(st.lists(CSV_CELLS, max_size=len(header) + 1), max_size=5))

    def cell(c: str) -> str:
        return c if draw(st.booleans()) else '"' + c.replace('"', '""') + '"'

    text = "\n".join(",".join(cell(c) for c in line) for line in lines)
    name = draw(st.sampled_from([f"{kind}.csv", f"{kind}-2026.CSV", "unknown.csv", f"{kind}.txt"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
    return name, text.encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")


@fuzz(250)
@given(files=st.lists(csv_files(), min_size=1, max_size=3),
       known=st.sampled_from([None, KnownIds({VILLAGE: "village"}, frozenset({"p1"}))]))
def test_csv_files_through_load_directory(files, known):
    load(files, known)


@fuzz(100)
@given(files=st.lists(st.tuples(st.sampled_from(["regions.csv", "people.csv", "d.yaml", "x.yml", "speakers"]),
                                st.binary(max_size=300)), min_size=1, max_size=2))
def test_arbitrary_bytes_through_load_directory(files):
    load(files, None)


def test_the_example_directory_still_loads():
    """The fuzz's happy path is real: the shipped example passes through the same `load`."""
    config = Path(__file__).resolve().parents[1] / "config"
    data = load_directory([config / "directory.example.yaml", config / "people.example.csv"])
    assert data.regions and data.people
