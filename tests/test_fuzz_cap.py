"""Adversarial suite (issue 10): property-based fuzzing of CAP ingestion.

Whatever bytes arrive, `parse_warning` either returns a ParsedAlert or raises a
WarndError with a `cap.*` code from the catalogue and a status below 500; no
other exception ever escapes. An accepted message round-trips: its canonical
`cap_xml` parses again to an equal alert.

Inputs: arbitrary bytes, XML-ish text, real corpus documents mutated (text
nodes, attributes, dropped / duplicated / moved / renamed elements, comments,
namespaces, encodings, byte splices), and JSON shaped like CAP JSON with
wrong types and hostile strings mixed in.

Runs are reproducible: the "warnd-ci" profile derandomizes and keeps no
example database. WARND_FUZZ_PROFILE=warnd-deep explores randomly with ten
times the examples, for a local hunt.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import CORPUS
from factories import alert as factory_alert
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from warnd.config import Config
from warnd.domain.errors import CATALOGUE, WarndError
from warnd.domain.levels import LEVEL_PARAMETERS
from warnd.domain.model import Alert, Info, MsgType, ParsedAlert, Resource, Status
from warnd.ingest import capjson, capxml, xmlsafe
from warnd.ingest.validate import JSON_TYPES, XML_TYPES, parse_warning

# ---------------------------------------------------------------- profile

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


CONFIG = Config()
CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP11 = "urn:oasis:names:tc:emergency:cap:1.1"
DSIG = "http://www.w3.org/2000/09/xmldsig#"

# A few real documents of different shapes: CAP 1.1 and 1.2, circles, polygons,
# many infos, altitude, ISO-8859-1, a BOM. Plus one warnd writes itself.
SEED_NAMES = (
    "oasis-cap12-amber-alert-en-es.xml",
    "oasis-cap11-earthquake-circle.xml",
    "cwa-taiwan-thunderstorm-polygon.xml",
    "google-earthquake-iso8859-1.xml",
    "hex-save-taiwan-fire-alarm-test-altitude.xml",
    "wra-taiwan-reservoir-release-zh-tw-bom.xml",
    "eccc-weather-update-polygons-en-fr.xml",
    "bom-australia-severe-thunderstorm-capau-prefixed.xml",
)
_VALID = CORPUS / "valid"
SEEDS: list[bytes] = [(_VALID / n).read_bytes() for n in SEED_NAMES if (_VALID / n).is_file()]
SEEDS.append(capxml.alert_to_xml(factory_alert("FUZZ-1")).encode("utf-8"))


def test_the_seed_documents_are_there_and_accepted(corpus):
    """The corpus fixture fails under CI when the corpus is missing; every seed parses."""
    assert len(SEEDS) == len(SEED_NAMES) + 1
    for body in SEEDS:
        assert isinstance(parse_warning(body, "application/cap+xml", CONFIG), ParsedAlert)


# ---------------------------------------------------------------- the property

def accepted_or_refused(body: bytes, content_type: str) -> ParsedAlert | None:
    """The contract of parse_warning; return the ParsedAlert when accepted."""
    try:
        parsed = parse_warning(body, content_type, CONFIG)
    except WarndError as exc:
        assert exc.code in CATALOGUE, exc.code
        assert exc.code.startswith("cap."), exc.code
        assert exc.status < 500, exc
        for p in exc.problems:  # every problem is renderable text (problem+json is UTF-8)
            for text in (p.field, p.detail_en, p.detail_zh):
                assert isinstance(text, str)
                text.encode("utf-8")
        str(exc)
        return None
    assert isinstance(parsed, ParsedAlert)
    assert isinstance(parsed.alert, Alert) and isinstance(parsed.cap_xml, str)
    again = parse_warning(parsed.cap_xml.encode("utf-8"), "application/cap+xml", CONFIG)
    if content_type.split(";")[0].strip().lower() in JSON_TYPES:
        assert again.alert == as_xml_reads(parsed.alert)
    else:
        assert again.alert == parsed.alert
    return parsed


def as_xml_reads(value: Any, optional: bool = False) -> Any:
    """A JSON-built alert as its canonical XML reads back (known, reported differences): XML
    text is stripped, an empty optional element is absent, times are written in whole seconds
    and <derefUri> is not written."""
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    if type(value) is str:
        text = value.strip()
        return None if optional and not text else text
    if isinstance(value, tuple):
        return tuple(as_xml_reads(v) for v in value)
    if dataclasses.is_dataclass(value):
        changes = {f.name: as_xml_reads(getattr(value, f.name), f.default is None) for f in dataclasses.fields(value)}
        if isinstance(value, Resource):
            changes["has_deref_uri"] = False
        if isinstance(value, Info):
            changes["language"] = changes["language"] or "en-US"
        return replace(value, **changes)
    return value


# ---------------------------------------------------------------- value pools

# Text lxml can put in a tree (XML 1.0 characters).
_C0 = "".join(chr(c) for c in range(32) if c not in (9, 10, 13))
XML_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\ufffe\uffff" + _C0)
xml_text = st.text(XML_CHARS, max_size=40)

offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
aware_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
cap_times = st.one_of(aware_times.map(capxml.format_datetime), aware_times.map(datetime.isoformat),
                      st.datetimes().map(datetime.isoformat),  # naive: no offset
                      st.sampled_from(["2026-07-01T00:00:00-00:00", "2026-02-30T00:00:00+08:00", "0000-01-01T00:00:00Z",
                                       "2026-07-01T24:00:00+08:00", "2026-07-01T00:00:00+24:00",
                                       "-2026-07-01T00:00:00Z",
                                       "12026-07-01T00:00:00+08:00", "2026-07-01", "now", ""]))
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(capxml.format_number),
                    st.floats(-180, 180).map(capxml.format_number), st.integers(-10**6, 10**6).map(str),
                    st.sampled_from(["nan", "inf", "-inf", "1e999", "1e-999", "0x10", "+.5", "1.", "١٢", "9" * 400,
                                     "9" * 5000, "-0", " 1 ", "1_000"]))
points = st.tuples(st.floats(-90, 90), st.floats(-180, 180))
rings = st.lists(points, min_size=3, max_size=8).map(lambda ps: ps + [ps[0]])
polygon_texts = st.one_of(
    rings.map(lambda r: " ".join(f"{capxml.format_number(a)},{capxml.format_number(b)}" for a, b in r)),
    st.lists(st.tuples(numbers, numbers), max_size=6).map(lambda ps: " ".join(f"{a},{b}" for a, b in ps)),
    st.sampled_from(["", "1,2", "1,2,3 4,5", "91,0 0,0 0,1 91,0", "0,0 0,0 0,0 0,0", "a,b c,d e,f a,b"]))
circle_texts = st.one_of(st.tuples(points, st.floats(-10, 10**4)).map(
    lambda t: f"{capxml.format_number(t[0][0])},{capxml.format_number(t[0][1])} {capxml.format_number(t[1])}"),
    st.tuples(numbers, numbers, numbers).map(lambda t: f"{t[0]},{t[1]} {t[2]}"),
    st.sampled_from(["", "1,2", "1,2 3 4", "0,0 -1", "x"]))
ids = st.one_of(st.from_regex(r"[A-Za-z0-9@._:-]{1,20}", fullmatch=True),
                st.sampled_from(["", " ", "a b", "a,b", "a<b", "a&b", "dept@example.cn"]), xml_text)
references = st.one_of(st.lists(st.tuples(ids, ids, cap_times), max_size=3).map(
    lambda rs: " ".join(",".join(r) for r in rs)), xml_text)
STATUSES = [s.value for s in Status]
MSG_TYPES = [m.value for m in MsgType]
ENUM_WORDS = {
    "status": STATUSES, "msgType": MSG_TYPES, "scope": ["Public", "Restricted", "Private"],
    "category": ["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                 "CBRNE", "Other"],
    "responseType": ["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"],
    "urgency": ["Immediate", "Expected", "Future", "Past", "Unknown"],
    "severity": ["Extreme", "Severe", "Moderate", "Minor", "Unknown"],
    "certainty": ["Observed", "Likely", "Possible", "Unlikely", "Unknown", "Very Likely"],
}
LEVEL_WORDS = ["red", "orange", "yellow", "blue", "红", "红色", "I", "IV", "1", "purple", ""]


def enum(name: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ENUM_WORDS[name]), st.sampled_from(ENUM_WORDS[name]).map(str.lower), xml_text)


# What an element's text may become in a mutation, by CAP element name.
TEXT_FOR: dict[str, st.SearchStrategy[str]] = {
    "sent": cap_times, "effective": cap_times, "onset": cap_times, "expires": cap_times,
    "identifier": ids, "sender": ids, "references": references, "polygon": polygon_texts, "circle": circle_texts,
    "altitude": numbers, "ceiling": numbers, "size": numbers,
    "value": st.one_of(st.sampled_from(LEVEL_WORDS), xml_text),
    "valueName": st.one_of(st.sampled_from(LEVEL_PARAMETERS + ("SAME", "GB2260")), xml_text),
    **{name: enum(name) for name in ENUM_WORDS},
}
CAP_NAMES = sorted({"alert", "info", "area", "resource", "eventCode", "parameter", "geocode", "language",
                    "event", "headline", "description", "instruction", "web", "contact", "areaDesc", "derefUri",
                    "digest", "uri", "mimeType", "resourceDesc", "note", "code", "incidents", "addresses",
                    "restriction", "source", "audience", "senderName", *TEXT_FOR})

# ---------------------------------------------------------------- 1. arbitrary bytes

CONTENT_TYPES = st.sampled_from([*XML_TYPES, *JSON_TYPES, "application/cap+xml; charset=utf-8",
                                 "APPLICATION/JSON", "text/plain", "", ";", "application/xml;;;"])


@fuzz(300)
@given(body=st.binary(max_size=2000), content_type=CONTENT_TYPES)
@example(body=b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/>', content_type="application/xml")
@example(body=b"\xef\xbb\xbf", content_type="application/xml")
@example(body=b"\xff\xfe", content_type="application/json")
def test_arbitrary_bytes(body, content_type):
    accepted_or_refused(body, content_type)


# ---------------------------------------------------------------- 2. XML-ish text

XML_FRAGMENTS = st.sampled_from([
    "<", ">", "</", "/>", "<alert>", "</alert>", f'<alert xmlns="{CAP12}">', f'<alert xmlns="{CAP11}">',
    f'<c:alert xmlns:c="{CAP12}">', "</c:alert>", f'<Signature xmlns="{DSIG}">', "</Signature>",
    '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>', '<?xml version="1.1"?>',
    '<?xml version="1.0" encoding="ISO-8859-1"?>', '<?xml version="1.0" encoding="nope"?>',
    "<!DOCTYPE alert>", "<!doctype html>", '<!DOCTYPE a [<!ENTITY e "x">]>', '<!ENTITY x SYSTEM "file:///etc/passwd">',
    "&e;", "&amp;", "&lt;", "&#0;", "&#x10FFFF;", "&#xD800;", "&#65;", "<![CDATA[", "]]>", "<!--", "-->",
    "<?pi data?>", "<info>", "</info>", "<area>", "</area>", "<polygon>", "</polygon>", "<identifier>",
    "</identifier>", "<sent>", "</sent>", "<status>Actual</status>", "<msgType>Alert</msgType>",
    "<scope>Public</scope>", "<sender>s@x</sender>", "<sent>2026-07-01T00:00:00+08:00</sent>",
    ' a="1"', ' xmlns=""', ' xml:lang="zh"', "\ufeff", "\x00", "\u2028", "𝔸", "中文", " ", "\n", "\t",
])
xmlish = st.lists(st.one_of(XML_FRAGMENTS, st.text(max_size=6)), max_size=40).map("".join)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "gb18030"])


@fuzz(300)
@given(text=xmlish, encoding=ENCODINGS, content_type=st.sampled_from(XML_TYPES))
def test_xmlish_text(text, encoding, content_type):
    accepted_or_refused(text.encode(encoding, "replace"), content_type)


@fuzz(150)
@given(inner=xmlish, ns=st.sampled_from([CAP12, CAP11, "", DSIG, "urn:other"]))
def test_xmlish_inside_a_cap_root(inner, ns):
    body = f'<?xml version="1.0" encoding="UTF-8"?><alert xmlns="{ns}">{inner}</alert>'
    accepted_or_refused(body.encode("utf-8", "surrogatepass"), "application/cap+xml")


# ---------------------------------------------------------------- 3. mutated corpus documents

def _tree(seed: bytes) -> etree._Element:
    return etree.fromstring(seed, xmlsafe.safe_parser())


SEED_TREES = [_tree(s) for s in SEEDS]


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    root = copy.deepcopy(draw(st.sampled_from(SEED_TREES)))
    for _ in range(draw(st.integers(1, 4))):
        elements = list(root.iter(tag=etree.Element))
        el = draw(st.sampled_from(elements))
        local = etree.QName(el).localname
        ns = etree.QName(el).namespace
        op = draw(st.sampled_from(["text", "text", "text", "attr", "drop", "dup", "move", "rename", "comment",
                                   "empty", "namespace", "add"]))
        parent = el.getparent()
        if op == "text":
            el.text = draw(st.one_of(TEXT_FOR.get(local, xml_text), xml_text))
        elif op == "attr":
            name = draw(st.one_of(st.from_regex(r"[a-z][a-zA-Z]{0,8}", fullmatch=True),
                                  st.sampled_from(["{http://www.w3.org/XML/1998/namespace}lang", f"{{{CAP12}}}x"])))
            el.set(name, draw(xml_text))
        elif op == "drop" and parent is not None:
            parent.remove(el)
        elif op == "dup" and parent is not None:
            el.addnext(copy.deepcopy(el))
        elif op == "move" and parent is not None:
            target = draw(st.sampled_from(elements))
            if el not in list(target.iterancestors()) and target is not el:
                target.insert(draw(st.integers(0, len(target))), el)
        elif op == "rename":
            el.tag = f"{{{ns}}}{draw(st.sampled_from(CAP_NAMES))}" if ns else draw(st.sampled_from(CAP_NAMES))
        elif op == "comment":
            el.insert(draw(st.integers(0, len(el))), draw(st.sampled_from(
                [etree.Comment("c"), etree.ProcessingInstruction("pi", "x"), etree.Comment("")])))
        elif op == "empty":
            el.text = None
            for child in list(el):
                el.remove(child)
        elif op == "namespace":
            new = draw(st.sampled_from([CAP12, CAP11, DSIG, "urn:oasis:names:tc:emergency:cap:1.0", ""]))
            for node in root.iter(tag=etree.Element):
                if etree.QName(node).namespace == ns:
                    node.tag = f"{{{new}}}{etree.QName(node).localname}" if new else etree.QName(node).localname
        elif op == "add":
            name = draw(st.sampled_from(CAP_NAMES))
            child = etree.Element(f"{{{ns}}}{name}" if ns else name)
            child.text = draw(TEXT_FOR.get(name, xml_text))
            el.insert(draw(st.integers(0, len(el))), child)
    encoding = draw(st.sampled_from(["UTF-8", "UTF-8", "UTF-16", "ISO-8859-1", "GB18030", "ASCII"]))
    body = etree.tostring(root, xml_declaration=True, encoding=encoding)
    if draw(st.integers(0, 4)) == 0:  # and now and then, a splice of raw bytes
        at = draw(st.integers(0, len(body)))
        cut = draw(st.integers(0, 8))
        body = body[:at] + draw(st.binary(max_size=8)) + body[at + cut:]
    return body


@fuzz(400)
@given(body=mutated_documents(), content_type=st.sampled_from(XML_TYPES))
def test_mutated_corpus_documents(body, content_type):
    accepted_or_refused(body, content_type)


@fuzz(60)
@given(seed=st.sampled_from(SEEDS), encoding=st.sampled_from(
    ["UTF-16", "UTF-16LE", "UTF-16BE", "UTF-32", "ISO-8859-1", "GB18030", "Big5", "EUC-JP", "Shift_JIS",
     "KOI8-R", "windows-1252", "ISO-8859-16", "UTF-7", "HZ-GB-2312", "EUC-TW", "ARMSCII-8", "VISCII", "TCVN",
     "MacRoman", "GEORGIAN-PS", "KOI8-T", "MULELAO-1", "CP1133", "TIS-620", "ASCII"]))
def test_corpus_documents_in_other_encodings(seed, encoding):
    """Re-declared in an encoding libxml2 reads; Python's codecs may not know it or read it alike."""
    text = seed.decode(_tree(seed).getroottree().docinfo.encoding or "utf-8").lstrip("\ufeff")
    decl = f'<?xml version="1.0" encoding="{encoding}"?>'
    text = text.split("?>", 1)[1] if text.startswith("<?xml") else text
    try:
        body = (decl + text).encode(encoding)
    except (LookupError, UnicodeEncodeError):
        body = (decl + text.encode("ascii", "xmlcharrefreplace").decode("ascii")).encode("ascii")
    accepted_or_refused(body, "application/cap+xml")


# ---------------------------------------------------------------- 4. CAP-shaped JSON

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_any = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=12)
any_text = st.text(max_size=30)  # surrogates and control characters included


def sometimes_wrong(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right shape; one time in ten any JSON value or any text."""
    return st.integers(0, 9).flatmap(lambda i: good if i else st.one_of(json_any, any_text))


def text_of(good: st.SearchStrategy[str]) -> st.SearchStrategy:
    return sometimes_wrong(st.one_of(good, good, any_text))


def listed(item: st.SearchStrategy, max_size: int = 3) -> st.SearchStrategy:
    return sometimes_wrong(st.lists(item, max_size=max_size))


def obj(required: dict, optional: dict) -> st.SearchStrategy:
    base = st.fixed_dictionaries({k: sometimes_wrong(v) for k, v in required.items()},
                                 optional={k: sometimes_wrong(v) for k, v in optional.items()})
    extra = st.dictionaries(st.text(max_size=8), json_any, max_size=1)
    return st.tuples(base, st.integers(0, 14), extra).map(lambda t: {**t[0], **t[2]} if t[1] == 0 else t[0])


pairs = st.lists(obj({"valueName": text_of(TEXT_FOR["valueName"]), "value": text_of(TEXT_FOR["value"])}, {}),
                 max_size=3)
area_json = obj({"areaDesc": text_of(xml_text)}, {
    "polygon": listed(text_of(polygon_texts)), "circle": listed(text_of(circle_texts)), "geocode": pairs,
    "altitude": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**400, 10**400)),
    "ceiling": st.one_of(st.floats(-1e6, 1e6), st.integers(-10**6, 10**6))})
resource_json = obj({"resourceDesc": text_of(xml_text), "mimeType": text_of(st.just("image/png"))}, {
    "size": st.one_of(st.integers(-10, 10**30), st.floats(0, 10)), "uri": text_of(st.just("https://example.org/a")),
    "derefUri": text_of(st.just("aGVsbG8=")), "digest": text_of(xml_text)})
info_json = obj({
    "category": listed(enum("category")), "event": text_of(xml_text), "urgency": enum("urgency"),
    "severity": enum("severity"), "certainty": enum("certainty")}, {
    "language": text_of(st.sampled_from(["zh-CN", "en-US", "es"])), "responseType": listed(enum("responseType")),
    "audience": text_of(xml_text), "eventCode": pairs, "effective": text_of(cap_times), "onset": text_of(cap_times),
    "expires": text_of(cap_times), "senderName": text_of(xml_text), "headline": text_of(xml_text),
    "description": text_of(xml_text), "instruction": text_of(xml_text), "web": text_of(xml_text),
    "contact": text_of(xml_text), "parameter": pairs, "resource": st.lists(resource_json, max_size=2),
    "area": st.lists(area_json, max_size=3)})
alert_json = obj({
    "identifier": text_of(ids), "sender": text_of(ids), "sent": text_of(cap_times), "status": enum("status"),
    "msgType": enum("msgType"), "scope": enum("scope")}, {
    "source": text_of(xml_text), "restriction": text_of(xml_text), "addresses": text_of(xml_text),
    "code": listed(text_of(xml_text)), "note": text_of(xml_text), "references": text_of(references),
    "incidents": text_of(xml_text), "info": st.lists(info_json, max_size=3)})


def _dump(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")  # ASCII: lone surrogates travel as \ud800 escapes


@fuzz(500)
@given(data=alert_json)
def test_cap_shaped_json(data):
    accepted_or_refused(_dump(data), "application/json")


@fuzz(150)
@given(data=json_any)
def test_any_json_value(data):
    accepted_or_refused(_dump(data), "application/json")


@fuzz(100)
@given(data=st.recursive(st.just(1), lambda k: st.lists(k, max_size=2) | st.dictionaries(
    st.sampled_from(["info", "area", "polygon", "x"]), k, max_size=2), max_leaves=40))
def test_nested_json(data):
    accepted_or_refused(_dump(data), "application/json")


# ---------------------------------------------------------------- 5. accepted JSON in quantity

@st.composite
def mostly_valid_json(draw: st.DrawFn) -> dict:
    """A warnd-written alert, one or two fields replaced by hostile values: most are accepted."""
    base = capjson.alert_to_dict(factory_alert(draw(st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True))))
    info, area = base["info"][0], base["info"][0]["area"][0]
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["alert", "info", "area"]))
        target = {"alert": base, "info": info, "area": area}[where]
        keys = {"alert": capjson._ALERT_KEYS - {"info"}, "info": capjson._INFO_KEYS - {"area"},
                "area": capjson._AREA_KEYS}[where]
        key = draw(st.sampled_from(sorted(keys)))
        target[key] = draw({"polygon": listed(polygon_texts), "circle": listed(circle_texts), "geocode": pairs,
                            "eventCode": pairs, "parameter": pairs, "altitude": st.floats(-1e4, 1e4),
                            "ceiling": st.integers(0, 10**4), "code": listed(any_text),
                            "category": listed(enum("category")), "responseType": listed(enum("responseType")),
                            "resource": st.lists(resource_json, max_size=2)}.get(key, any_text))
    return base


@fuzz(300)
@given(data=mostly_valid_json())
@example(data={**capjson.alert_to_dict(factory_alert("N1")), "note": "a\x01b"})
@example(data={**capjson.alert_to_dict(factory_alert("N2")), "note": "\ud800"})
@example(data={**capjson.alert_to_dict(factory_alert("N3")), "\ud800": 1})
def test_mostly_valid_json(data):
    accepted_or_refused(_dump(data), "application/json")


def test_mostly_valid_json_is_mostly_accepted():
    """The generator is worth its time only if it reaches the round-trip often."""
    seen = []

    @fuzz(60)
    @given(data=mostly_valid_json())
    def run(data):
        seen.append(accepted_or_refused(_dump(data), "application/json") is not None)

    run()
    assert sum(seen) >= len(seen) // 4, (sum(seen), len(seen))


def test_the_empty_polygon_a_json_alert_drops_is_dropped_from_its_xml_too():
    base = factory_alert("EP1")
    area = replace(base.infos[0].areas[0], polygons=((),))
    data = capjson.alert_to_dict(replace(base, infos=(replace(base.infos[0], areas=(area,)),)))
    data["info"][0]["area"][0]["polygon"] = [""]
    parsed = accepted_or_refused(_dump(data), "application/json")
    assert parsed is not None and {n.code for n in parsed.notes} == {"cap.empty_polygon"}


# ---------------------------------------------------------------- found by fuzzing, mended, pinned

def test_a_prefixed_document_with_a_schema_error_is_refused():
    body = f'<cap:alert xmlns:cap="{CAP12}"><cap:identifier>x</cap:identifier></cap:alert>'.encode()
    with pytest.raises(WarndError) as caught:
        parse_warning(body, "application/cap+xml", CONFIG)
    assert caught.value.code == "cap.schema"


def test_a_json_integer_of_5000_digits_is_refused():
    with pytest.raises(WarndError) as caught:
        parse_warning(b'{"identifier": ' + b"1" * 5000 + b"}", "application/json", CONFIG)
    assert caught.value.code == "cap.json"


def test_a_json_alert_with_padded_or_empty_text_equals_its_canonical_xml_read_back():
    data = {**capjson.alert_to_dict(factory_alert("WS1")), "addresses": ""}
    data["info"][0]["event"] = " 暴雨 "
    parsed = parse_warning(_dump(data), "application/json", CONFIG)
    again = parse_warning(parsed.cap_xml.encode("utf-8"), "application/cap+xml", CONFIG)
    assert again.alert == parsed.alert


def test_a_json_alert_with_fractional_seconds_is_refused_as_its_xml_would_be():
    data = {**capjson.alert_to_dict(factory_alert("FS1")), "sent": "2026-07-01T00:00:00.5+00:00"}
    with pytest.raises(WarndError) as caught:
        parse_warning(_dump(data), "application/json", CONFIG)
    assert caught.value.status == 400 and [p.field for p in caught.value.problems] == ["sent"]
