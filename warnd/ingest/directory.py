"""Parse and validate directory files: YAML (every kind) and CSV (one kind per file).

Pure: reads only the files it is given. Every bad row is collected before one
`directory.invalid_row` error is raised; each problem names `file:line.field`.
`DirectoryFiles` reads files kind by kind for an import that writes as it reads;
`load_directory` reads them whole. Whether references (parents, backups, grids)
exist is decided by `with_parents`, `missing_region` and `missing_backup`, given
the ids known (`check_references` applies them to a whole DirectoryData).
"""
from __future__ import annotations

import csv
import dataclasses
import re
import sys
import types
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

import yaml

from warnd.domain import phones
from warnd.domain.directory import ROLES, Household, Person, Region, Speaker, Subscriber, region_kind, region_parent
from warnd.domain.errors import Problem, WarndError
from warnd.domain.model import Level, Status
from warnd.domain.urlsafety import parse_target

KINDS = ("regions", "people", "households", "speakers", "subscribers")
TYPES: dict[str, type] = {"regions": Region, "people": Person, "households": Household,
                          "speakers": Speaker, "subscribers": Subscriber}
KEYS = {"regions": "code", "people": "id", "households": "id", "speakers": "id", "subscribers": "id"}
Entry = Region | Person | Household | Speaker | Subscriber
NO_FIELD_LINES: Mapping[str, int] = types.MappingProxyType({})  # a CSV row's: its fields are all on its line


@dataclass(frozen=True, slots=True)
class Where:
    """Where a row came from; `at(field)` gives `file:line.field`. One is kept per row until
    the import is written (a province: a million), hence the slots and the shared empty map."""

    file: str
    line: int
    field_lines: Mapping[str, int] = field(default_factory=lambda: NO_FIELD_LINES, compare=False)

    def at(self, name: str) -> str:
        if not self.file:
            return name
        return f"{self.file}:{self.field_lines.get(name, self.line)}.{name}"


@dataclass(frozen=True)
class DirectoryData:
    regions: tuple[Region, ...] = ()
    people: tuple[Person, ...] = ()
    households: tuple[Household, ...] = ()
    speakers: tuple[Speaker, ...] = ()
    subscribers: tuple[Subscriber, ...] = ()
    sources: Mapping[tuple[str, str], Where] = field(default_factory=dict, compare=False, repr=False)

    def where(self, kind: str, key: str, name: str) -> str:
        return _at(self.sources.get((kind, key)), kind, key, name)

    def pairs(self, kind: str) -> Iterator[tuple[Where | None, Entry]]:
        """The entries of `kind`, each with where it came from (None: not from a file)."""
        key = KEYS[kind]
        return ((self.sources.get((kind, getattr(e, key))), e) for e in getattr(self, kind))


@dataclass(frozen=True)
class KnownIds:
    """What the database already holds, for the references not found in the data."""

    regions: Mapping[str, str] = field(default_factory=dict)  # code -> kind
    people: Collection[str] = frozenset()


class _Invalid(Exception):
    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh


# ---------------------------------------------------------------- field converters

def _text(v: Any, max_len: int = 200) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise _Invalid(f"expected text, got {type(v).__name__}", f"应为文本，实际为 {type(v).__name__}")
    t = str(v).strip()
    if len(t) > max_len:
        raise _Invalid(f"longer than {max_len} characters", f"超过 {max_len} 个字符")
    return t or None


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _id(v: Any) -> str | None:
    t = _text(v, 64)
    if t is not None and not _ID.fullmatch(t):
        raise _Invalid("id may hold only letters, digits and . _ : - (at most 64)",
                       "编号只能包含字母、数字和 . _ : -（最多 64 个字符）")
    return t


def _code(v: Any) -> str | None:
    t = _text(v, 32)
    if t is None:
        return None
    if region_kind(t) is None:
        raise _Invalid(f"region code {t!r} must be digits: 6 (county), 9 (township), 12 (village) "
                       "or more (grid, prefixed by its village code)",
                       f"区划代码 {t!r} 须为数字：6 位（县）、9 位（乡镇）、12 位（村）或更长（网格，以村代码开头）")
    return sys.intern(t)  # a grid's code is repeated by its households, people and speakers: kept once


def _grid(v: Any) -> str | None:
    t = _code(v)
    if t is not None and region_kind(t) != "grid":
        raise _Invalid(f"{t} is not a grid code (village code + more digits)", f"{t} 不是网格代码（村代码加若干位数字）")
    return t


def _phone(v: Any) -> str | None:
    # An unquoted YAML number loses what was written: 07131234567 is octal, +86… drops the "+".
    t = _text(v.source if isinstance(v, _YamlInt) else v, 32)
    if t is None:
        return None
    try:
        return phones.normalise(t)
    except phones.InvalidPhone as exc:
        raise _Invalid(exc.en, exc.zh) from None


_CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,31}")
_GROUP_ADDRESS = re.compile(r"[A-Za-z0-9._~-]{8,128}")


def _group_address(t: str) -> str:
    """A group's address: a robot's webhook key, or its webhook URL (…/send?key=KEY), kept as the key.
    The endpoint is configuration (the channel's base_url), so directory data never chooses a host."""
    if t.lower().startswith(("https://", "http://")):
        keys = urllib.parse.parse_qs(urllib.parse.urlsplit(t).query).get("key", [])
        if len(keys) != 1:
            raise _Invalid("a group's webhook URL must carry its key (…/webhook/send?key=KEY)",
                           "群机器人 webhook 地址须带 key 参数（…/webhook/send?key=KEY）")
        t = keys[0]
    if not _GROUP_ADDRESS.fullmatch(t):
        raise _Invalid("a group address (robot webhook key) is 8–128 letters, digits and . _ ~ -",
                       "群地址（机器人 webhook key）须为 8–128 个字母、数字或 . _ ~ -")
    return t


def _groups(v: Any) -> dict[str, str] | None:
    """channel → group address: a mapping in YAML and the API, `wecom=KEY;other=KEY` in a CSV cell."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        pairs = []
        for item in _items(v):
            name, sep, address = item.partition("=")
            if not sep:
                raise _Invalid(f"expected channel=address pairs separated by ; (wecom=KEY), got {item!r}",
                               f"应为以 ; 分隔的“渠道=地址”（wecom=KEY），实际为 {item!r}")
            pairs.append((name.strip(), address.strip()))
    elif isinstance(v, Mapping):
        pairs = list(v.items())
    else:
        raise _Invalid("groups must be a mapping of channel to group address (wecom: KEY)",
                       "groups 须为“渠道: 群地址”的映射（wecom: KEY）")
    out: dict[str, str] = {}
    for name, address in pairs:
        name = _text(name, 32)
        if name is None or not _CHANNEL.fullmatch(name):
            raise _Invalid(f"{_printable(name)!r} is not a channel name", f"{_printable(name)!r} 不是渠道名")
        if name not in _group_channels():
            known = ", ".join(sorted(_group_channels())) or "none"
            raise _Invalid(f"channel {name!r} does not post to groups (group channels: {known})",
                           f"渠道 {name!r} 不向群发送（群渠道：{known}）")
        text = _text(address, 2000)
        if text is None:
            raise _Invalid(f"{name}: the group address is empty", f"{name}：群地址为空")
        out[name] = _group_address(text)
    return out or None


def _group_channels() -> frozenset[str]:
    """The registered channels that post to a region's group (their spec's audience)."""
    from warnd.domain.sending import Audience
    from warnd_channels.registry import SPECS  # here: the channels import the configuration, which imports ingest

    return frozenset(name for name, spec in SPECS.items() if spec.audience is Audience.GROUP)


_LANG = re.compile(r"([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|\d{3}))?")


def _language(v: Any) -> str | None:
    t = _text(v, 16)
    if t is None:
        return None
    m = _LANG.fullmatch(t.replace("_", "-").lower())
    if not m:
        raise _Invalid(f"language {t!r} is not a tag like zh-CN or en", f"语言 {t!r} 不是 zh-CN、en 这样的语言标签")
    lang, script, region = m.groups()
    return "-".join(p for p in (lang, script and script.title(), region and region.upper()) if p)


def _items(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [x for x in v if x is not None and x != ""]
    if isinstance(v, str):
        return [x.strip() for x in re.split(r"[;|]", v) if x.strip()]
    return [v]


def _list_of(conv: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    def parse(v: Any) -> tuple:
        out: list[Any] = []
        for item in _items(v):
            x = conv(item)
            if x is not None and x not in out:
                out.append(x)
        return tuple(out)
    return parse


def _role(v: Any) -> str | None:
    t = _text(v, 32)
    if t is not None and t not in ROLES:
        raise _Invalid(f"unknown role {t!r}; roles are {', '.join(ROLES)}", f"未知角色 {t!r}；可用角色：{', '.join(ROLES)}")
    return t


def _level(v: Any) -> str | None:
    t = _text(v, 16)
    if t is None:
        return None
    try:
        return Level.parse(t).label
    except ValueError:
        raise _Invalid(f"unknown level {t!r} (blue, yellow, orange, red / 蓝 黄 橙 红 / IV–I)",
                       f"未知级别 {t!r}（蓝、黄、橙、红 / blue yellow orange red / IV–I）") from None


def _status(v: Any) -> str | None:
    t = _text(v, 16)
    if t is None:
        return None
    for s in Status:
        if s.value.lower() == t.lower():
            return s.value
    raise _Invalid(f"unknown CAP status {t!r}", f"未知 CAP 状态 {t!r}")


def _filter_code(v: Any) -> str | None:
    return None if _text(v, 32) == "*" else _code(v)


def _event(v: Any) -> str | None:
    return _text(v, 100)


def _bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    t = _text(v, 8)
    if t is None:
        return None
    key = t.lower()
    if key in ("true", "yes", "y", "1", "是"):
        return True
    if key in ("false", "no", "n", "0", "否"):
        return False
    raise _Invalid(f"expected true or false, got {t!r}", f"应为 true 或 false，实际为 {t!r}")


def _format(v: Any) -> str | None:
    t = _text(v, 8)
    if t is not None and t.lower() not in ("cap", "json"):
        raise _Invalid(f"format must be cap or json, got {t!r}", f"格式须为 cap 或 json，实际为 {t!r}")
    return t and t.lower()


def _url(v: Any) -> str | None:
    t = _text(v, 2000)
    if t is not None:
        try:
            parse_target(t)
        except WarndError as exc:
            p = exc.problems[0]
            raise _Invalid(p.detail_en, p.detail_zh) from None
    return t


def _secret(v: Any) -> str | None:
    t = _text(v, 200)
    if t is not None and len(t) < 16:
        raise _Invalid("secret must be at least 16 characters", "密钥至少需要 16 个字符")
    return t


def _polygon(v: Any) -> tuple[tuple[float, float], ...] | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):  # "lat,lon;lat,lon;…" or CAP style "lat,lon lat,lon …"
        pairs = re.split(r"[;|]", v) if re.search(r"[;|]", v) else v.split()
        points: Any = [re.split(r"[,\s]+", p.strip()) for p in pairs if p.strip()]
    else:
        points = v
    bad = _Invalid("polygon must be a list of [lat, lon] points forming a closed ring (first = last, ≥ 4 points)",
                   "多边形须为 [纬度, 经度] 点列表，且首尾相同构成闭合环（至少 4 个点）")
    if not isinstance(points, (list, tuple)) or len(points) < 4:
        raise bad
    ring = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise bad
        try:
            lat, lon = (float(x) for x in p if not isinstance(x, bool))
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past the largest float
            raise bad from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _Invalid(f"point ({lat}, {lon}) is outside lat −90…90 / lon −180…180",
                           f"点 ({lat}, {lon}) 超出纬度 −90…90 / 经度 −180…180")
        ring.append((lat, lon))
    if ring[0] != ring[-1]:
        raise bad
    return tuple(ring)


# ---------------------------------------------------------------- rows

REQUIRED, OPTIONAL = True, False
Spec = dict[str, tuple[Callable[[Any], Any], bool]]
SPECS: dict[str, Spec] = {
    "regions": {"code": (_code, REQUIRED), "name": (_text, REQUIRED), "kind": (_text, OPTIONAL),
                "parent": (_code, OPTIONAL), "polygon": (_polygon, OPTIONAL), "groups": (_groups, OPTIONAL)},
    "people": {"id": (_id, REQUIRED), "name": (_text, REQUIRED), "region": (_code, REQUIRED),
               "roles": (_list_of(_role), REQUIRED), "phone": (_phone, OPTIONAL),
               "language": (_language, OPTIONAL), "backup": (_id, OPTIONAL)},
    "households": {"id": (_id, REQUIRED), "grid": (_grid, REQUIRED),
                   "address": (lambda v: _text(v, 400), REQUIRED), "phone": (_phone, OPTIONAL),
                   "vulnerable": (_bool, OPTIONAL)},
    "speakers": {"id": (_id, REQUIRED), "grid": (_grid, REQUIRED)},
    "subscribers": {"id": (_id, REQUIRED), "url": (_url, REQUIRED), "secret": (_secret, REQUIRED),
                    "format": (_format, OPTIONAL), "regions": (_list_of(_filter_code), OPTIONAL),
                    "levels": (_list_of(_level), OPTIONAL), "events": (_list_of(_event), OPTIONAL),
                    "statuses": (_list_of(_status), OPTIONAL), "public": (_bool, OPTIONAL),
                    "active": (_bool, OPTIONAL), "restricted": (_bool, OPTIONAL)},
}


def _problem(where: Where, name: str, en: str, zh: str) -> Problem:
    return Problem(where.at(name), en, zh)


def _printable(name: Any) -> str:
    """A name the input chose (a field, a section) as text that encodes: "\\ud800", not a lone surrogate."""
    return str(name).encode("utf-8", "backslashreplace").decode("utf-8")


def _region_rules(v: dict[str, Any], where: Where, problems: list[Problem]) -> None:
    code, kind = v["code"], region_kind(v["code"])
    if v.get("kind") not in (None, kind):
        problems.append(_problem(where, "kind", f"kind {v['kind']!r} does not match code {code} (a {kind})",
                                 f"类型 {v['kind']!r} 与代码 {code}（{kind}）不符"))
    v["kind"] = kind
    parent = v.get("parent")
    if parent is None:
        return
    if kind == "grid":
        ok = parent == code[:12]
    else:
        ok = len(parent) < len(code) and code.startswith(parent) and region_kind(parent) != "grid"
    if not ok:
        problems.append(_problem(where, "parent", f"parent {parent} is not an enclosing region of {code} "
                                 "(a grid's parent is its village: the first 12 digits)",
                                 f"上级 {parent} 不是 {code} 的上级区划（网格的上级是其所在村：前 12 位）"))


def parse_row(kind: str, raw: Mapping[Any, Any], where: Where, problems: list[Problem]) -> Entry | None:
    """Validate one row; append its problems and return None if it has any."""
    spec = SPECS[kind]
    start = len(problems)
    for key in raw:
        if str(key) not in spec:
            problems.append(_problem(where, _printable(key), f"unknown field; expected {', '.join(spec)}",
                                     f"未知字段；可用字段：{', '.join(spec)}"))
    values: dict[str, Any] = {}
    for name, (conv, required) in spec.items():
        try:
            value = conv(raw.get(name))
        except _Invalid as exc:
            problems.append(_problem(where, name, exc.en, exc.zh))
            continue
        if value in (None, ()) and required:
            problems.append(_problem(where, name, "is required", "为必填项"))
        elif value is not None:
            values[name] = value
    if kind == "regions" and "code" in values:
        _region_rules(values, where, problems)
    if kind == "people" and "id" in values and values.get("backup") == values["id"]:
        problems.append(_problem(where, "backup", "a person cannot be their own backup", "不能指定本人为 AB 角"))
    return None if len(problems) > start else TYPES[kind](**values)


def parse_entry(kind: str, raw: Mapping[str, Any]) -> Entry:
    """Validate one entry from an API body; raise directory.invalid_row naming the fields."""
    problems: list[Problem] = []
    entry = parse_row(kind, raw, Where("", 0), problems)
    if problems or entry is None:
        raise WarndError("directory.invalid_row", problems)
    return entry


# ---------------------------------------------------------------- files

class _LineDict(dict):
    line = 0
    field_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's safe constructors raise ValueError, KeyError, AttributeError… for a bad
        scalar (`2026-13-45`, `!!int x`, `!!bool x`, `!!timestamp x`): make it a YAML error at its line."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            problem = _printable(f"cannot read {node.tag} {type(exc).__name__}: {exc}")
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


class _YamlInt(int):
    """An integer as YAML read it, with the text it was written as (for phone numbers)."""

    source: str


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    value = _YamlInt(loader.construct_yaml_int(node))
    value.source = str(node.value)
    return value


def _construct_map(loader: _Loader, node: yaml.MappingNode):  # noqa: ANN202
    data = _LineDict()
    data.line, data.field_lines = node.start_mark.line + 1, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int)) or str(key) in data.field_lines:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate or invalid key {key!r}",
                                                    key_node.start_mark)
        data[str(key)] = loader.construct_object(value_node, deep=True)
        data.field_lines[str(key)] = key_node.start_mark.line + 1


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)

Row = tuple[str, Where, Mapping[Any, Any]]  # kind, where, raw


def _yaml_rows(path: Path, text: str, problems: list[Problem]) -> Iterable[Row]:
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problems.append(Problem(f"{path.name}:{line}", f"not valid YAML: {exc}", f"不是有效的 YAML：{exc}"))
        return
    except RecursionError as exc:  # nesting past the stack
        problems.append(Problem(f"{path.name}:1", f"not readable YAML: {type(exc).__name__}",
                                "无法读取的 YAML"))
        return
    if doc is None:
        return
    if not isinstance(doc, dict):
        problems.append(Problem(f"{path.name}:1", f"top level must be a mapping of {', '.join(KINDS)}",
                                f"顶层须为映射，键为 {', '.join(KINDS)}"))
        return
    for kind, rows in doc.items():
        top = Where(path.name, doc.field_lines.get(kind, 1))
        if kind not in KINDS:
            problems.append(Problem(f"{path.name}:{top.line}.{_printable(kind)}",
                                    f"unknown section; expected {', '.join(KINDS)}",
                                    f"未知分节；可用分节：{', '.join(KINDS)}"))
            continue
        if rows is None:
            continue
        if not isinstance(rows, list):
            problems.append(Problem(f"{path.name}:{top.line}.{kind}", "must be a list", "须为列表"))
            continue
        for row in rows:
            if not isinstance(row, _LineDict):
                problems.append(Problem(f"{path.name}:{top.line}.{kind}", "every entry must be a mapping",
                                        "每个条目须为映射"))
                continue
            yield kind, Where(path.name, row.line, row.field_lines), row


def csv_kind(path: Path) -> str | None:
    """The kind a CSV file holds, from its name: regions.csv, people*.csv, …"""
    stem = path.name.lower()
    return next((k for k in KINDS if stem.startswith(k)), None)


def _csv_file(path: Path, kind: str, problems: list[Problem]) -> Iterable[Row]:
    """The rows of one CSV file, read from disk as they are asked for (not the whole file at once)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as lines:
            reader = csv.reader(lines)
            try:
                yield from _csv_cells(path, reader, kind, problems)
            except csv.Error as exc:  # e.g. a field past csv.field_size_limit()
                problems.append(Problem(f"{path.name}:{reader.line_num}", f"not valid CSV: {exc}",
                                        f"不是有效的 CSV：{exc}"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(_unreadable(path, exc))


def _unreadable(path: Path, exc: Exception) -> Problem:
    return Problem(f"{path.name}:1", f"cannot read file (UTF-8 expected): {exc}", f"无法读取文件（须为 UTF-8 编码）：{exc}")


def _csv_cells(path: Path, reader: Any, kind: str, problems: list[Problem]) -> Iterable[Row]:
    header: list[str] | None = None
    end = 0
    for cells in reader:
        line, end = end + 1, reader.line_num
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            dupes = {h for h in header if header.count(h) > 1}
            for h in sorted(dupes):
                problems.append(Problem(f"{path.name}:{line}.{h}", "column appears twice", "列名重复"))
            for h in header:
                if h and h not in SPECS[kind]:
                    columns = ", ".join(SPECS[kind])
                    problems.append(Problem(f"{path.name}:{line}.{h}", f"unknown column; expected {columns}",
                                            f"未知列；可用列：{columns}"))
            missing = [name for name, (_, required) in SPECS[kind].items() if required and name not in header]
            if missing:  # said once for the file, not once for every row
                names = ", ".join(missing)
                problems.append(Problem(f"{path.name}:{line}", f"the header lacks the required column(s) {names}: "
                                        f"add them to the first line ({', '.join(SPECS[kind])})",
                                        f"表头缺少必填列 {names}：请在第一行加上（可用列：{', '.join(SPECS[kind])}）"))
                return
            continue
        if len(cells) > len(header):
            problems.append(Problem(f"{path.name}:{line}", f"{len(cells)} cells but {len(header)} columns",
                                    f"有 {len(cells)} 个单元格，但只有 {len(header)} 列"))
            continue
        yield kind, Where(path.name, line), {h: c for h, c in zip(header, cells) if h in SPECS[kind]}


class DirectoryFiles:
    """Directory files read kind by kind: `entries(kind)` yields the valid entries of that
    kind, in the order of the files, with where each came from. A CSV file is read from disk
    when its kind's turn comes, a row at a time, so a province's million households are never
    all in memory; a YAML file is parsed once, up front. Bad rows, and a key seen before,
    become `problems()`, in the order of the files and lines (the first occurrence of each
    key is kept as an int: its line and file)."""

    def __init__(self, paths: list[Path | tuple[Path, str]], *, kind: str | None = None) -> None:
        self._files: list[tuple[str | None, Path, list[Row], list[Problem]]] = []  # CSV kind or None: YAML rows
        self._problems: list[tuple[str, list[Problem]]] = []  # per file: its name, its problems
        self._first: dict[str, dict[str, int]] = {k: {} for k in KINDS}  # key -> line * files + file index
        for item in paths:
            path, file_kind = item if isinstance(item, tuple) else (item, kind)
            path = Path(path)
            problems: list[Problem] = []
            self._problems.append((path.name, problems))
            if path.suffix.lower() in (".yaml", ".yml"):
                try:
                    text = path.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError) as exc:
                    problems.append(_unreadable(path, exc))
                    continue
                self._files.append((None, path, list(_yaml_rows(path, text, problems)), problems))
                continue
            file_kind = file_kind or csv_kind(path)
            if file_kind not in KINDS:
                problems.append(Problem(f"{path.name}:1", f"cannot tell which kind this file holds; name it "
                                        f"{'/'.join(KINDS)}*.csv", f"无法判断文件内容类型；请命名为 {'/'.join(KINDS)}*.csv"))
                continue
            self._files.append((file_kind, path, [], problems))

    def failed(self) -> bool:
        return any(problems for _, problems in self._problems)

    def problems(self) -> list[Problem]:
        out = []
        for name, problems in self._problems:
            out += sorted(problems, key=lambda p: _line_of(p.field, name))
        return out

    def entries(self, kind: str) -> Iterator[tuple[Where, Entry]]:
        key_name, first, files = KEYS[kind], self._first[kind], len(self._files)
        for index, (file_kind, path, yaml_rows, problems) in enumerate(self._files):
            if file_kind is None:
                rows: Iterable[Row] = (row for row in yaml_rows if row[0] == kind)
            elif file_kind == kind:
                rows = _csv_file(path, kind, problems)
            else:
                continue
            for row_kind, where, raw in rows:
                entry = parse_row(row_kind, raw, where, problems)
                if entry is None:
                    continue
                key = getattr(entry, key_name)
                seen = first.get(key)
                if seen is None:
                    first[key] = where.line * files + index
                    yield where, entry
                    continue
                at = f"{self._files[seen % files][1].name}:{seen // files}"
                problems.append(_problem(where, key_name, f"duplicate {key} (first at {at})",
                                         f"重复的 {key}（首次出现于 {at}）"))


def _line_of(field: str, name: str) -> int:
    """The line a problem's `name:line.field` names (0 if none)."""
    digits = field[len(name) + 1:].partition(".")[0]
    return int(digits) if digits.isdigit() else 0


def load_directory(paths: list[Path | tuple[Path, str]], *, kind: str | None = None,
                   known: KnownIds | None = None) -> DirectoryData:
    """Parse YAML and CSV files into one DirectoryData; raise on any bad row.

    A CSV file's kind is `kind`, the kind paired with it in `paths`, or its
    name. Given `known`, references are checked too (see check_references).
    """
    files = DirectoryFiles(paths, kind=kind)
    found = {k: list(files.entries(k)) for k in KINDS}
    if problems := files.problems():
        raise WarndError("directory.invalid_row", problems)
    sources = {(k, getattr(e, KEYS[k])): where for k, pairs in found.items() for where, e in pairs}
    data = DirectoryData(**{k: tuple(e for _, e in pairs) for k, pairs in found.items()},  # type: ignore[arg-type]
                         sources=sources)
    return check_references(data, known) if known is not None else data


# ---------------------------------------------------------------- references

def wanted_parents(regions: Iterable[Region]) -> set[str]:
    """The codes `regions` name as parents: each one's parent, or else every enclosing code."""
    want: set[str] = set()
    for r in regions:
        if r.parent:
            want.add(r.parent)
        else:
            c = region_parent(r.code)
            while c:
                want.add(c)
                c = region_parent(c)
    return want


def _at(where: Where | None, kind: str, key: str, name: str) -> str:
    return where.at(name) if where is not None else f"{kind}[{key}].{name}"


def with_parents(regions: Iterable[tuple[Where | None, Region]], kinds: Mapping[str, str],
                 problems: list[Problem]) -> list[Region]:
    """The regions, each missing parent filled in with the nearest enclosing region in `kinds`
    (code -> kind: the data's and the database's); a named parent not there is a problem."""
    out = []
    for where, r in regions:
        parent = r.parent
        if parent is None and r.kind == "grid":
            parent = r.code[:12]
        if parent is None:
            c = region_parent(r.code)
            while c and c not in kinds:
                c = region_parent(c)
            parent = c
        elif parent not in kinds:
            what = "village" if r.kind == "grid" else "parent region"
            problems.append(Problem(_at(where, "regions", r.code, "parent"), f"{what} {parent} does not exist",
                                    f"{'所属村' if r.kind == 'grid' else '上级区划'} {parent} 不存在"))
        out.append(r if parent == r.parent else dataclasses.replace(r, parent=parent))
    return out


def missing_region(kind: str, where: Where | None, entry: Person | Household | Speaker,
                   kinds: Mapping[str, str]) -> Problem | None:
    """The problem with a person's region, or a household's or speaker's grid, if `kinds` lacks it."""
    key = getattr(entry, KEYS[kind])
    if isinstance(entry, Person):
        if entry.region in kinds:
            return None
        return Problem(_at(where, kind, key, "region"), f"region {entry.region} does not exist",
                       f"区划 {entry.region} 不存在")
    if kinds.get(entry.grid) == "grid":
        return None
    return Problem(_at(where, kind, key, "grid"), f"grid {entry.grid} does not exist", f"网格 {entry.grid} 不存在")


def missing_backup(where: Where | None, person: Person, people: Collection[str]) -> Problem | None:
    if not person.backup or person.backup in people:
        return None
    return Problem(_at(where, "people", person.id, "backup"), f"backup person {person.backup} does not exist",
                   f"AB 角人员 {person.backup} 不存在")


def check_references(data: DirectoryData, known: KnownIds) -> DirectoryData:
    """Check that every reference resolves in the data or in `known`; fill in
    missing parents with the nearest enclosing region. Raise
    directory.unknown_reference listing every dangling reference."""
    kinds = dict(known.regions) | {r.code: r.kind for r in data.regions}
    people = set(known.people) | {p.id for p in data.people}
    problems: list[Problem] = []
    regions = with_parents(data.pairs("regions"), kinds, problems)
    for where, p in data.pairs("people"):
        problems += filter(None, (missing_region("people", where, p, kinds), missing_backup(where, p, people)))
    for kind in ("households", "speakers"):
        problems += filter(None, (missing_region(kind, where, e, kinds) for where, e in data.pairs(kind)))
    if problems:
        raise WarndError("directory.unknown_reference", problems)
    return DirectoryData(tuple(regions), data.people, data.households, data.speakers, data.subscribers,
                         data.sources)
