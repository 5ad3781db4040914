"""Ingestion against the real CAP corpus: accept every valid, signed and edge
message, refuse every invalid one with the expected code naming a field."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.ingest import capjson, capxml, xmlsafe
from warnd.ingest.validate import cap_schema, cap_version, parse_warning, validate_file, validate_schema

CORPUS = Path(__file__).parents[1].parent / "shared" / "corpus" / "cap"
CONFIG = Config()


def _files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs if (CORPUS / d).is_dir() for p in (CORPUS / d).iterdir())


ACCEPTED = _files("valid", "signed", "edge")
INVALID = _files("invalid")

# Notes each edge file must yield (beyond cap.signature_ignored for signed ones).
EDGE_NOTES = {
    "meteofrance-meteoalarm-allclear-update-expires-before-sent.xml": {"cap.already_expired"},
    "ntwc-tsunami-cancellation-update-expires-equals-sent.xml": {"cap.already_expired"},
    "nws-blizzard-warning-cap11-empty-polygon.xml": {"cap.empty_polygon"},
    "nws-wind-advisory-cap11-empty-polygon.xml": {"cap.empty_polygon"},
}

# file -> (error code, fields that must be named)
INVALID_EXPECTED = {
    "alerthub-loadtest-sent-without-timezone-cap11.xml": ("cap.rule", {"/alert/sent", "/alert/references"}),
    "cwa-taiwan-http-404-page-saved-as-cap.xml": ("cap.unsupported_version", {"/html"}),
    "cwb-taiwan-typhoon-warning-structured-description.xml": ("cap.schema", {"/alert/info/description"}),
    "google-canada-update-empty-references.xml": ("cap.rule", {"/alert/references"}),
    "google-invalid-element-order.xml": ("cap.schema", {"/alert/info"}),
    "google-noaa-bad-enumerations-cap11.xml": ("cap.schema", {"/alert/info/urgency", "/alert/info/severity"}),
    "google-xxe.xml": ("cap.forbidden_construct", {"<!DOCTYPE>"}),
    "krisinformation-se-nonstandard-area-elements.xml": ("cap.schema", {"/alert/info/senderName"}),
    "nws-empty-alert-cap11.xml": ("cap.schema", {"/alert"}),
    "oasis-cap10-thunderstorm-unsupported-version.xml": ("cap.unsupported_version", {"/alert"}),
    "wra-taiwan-wrong-namespace.xml": ("cap.unsupported_version", {"/alert"}),
}


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


def test_corpus_is_present() -> None:
    if not CORPUS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CAP corpus missing at {CORPUS}")
        pytest.skip(f"CAP corpus missing at {CORPUS} (it lives in the shared workspace)")
    assert len(ACCEPTED) >= 50 and len(INVALID) >= 10
    assert {p.name for p in INVALID} == set(INVALID_EXPECTED), "give every invalid file an expectation"


@pytest.mark.parametrize("path", ACCEPTED, ids=_ids(ACCEPTED))
def test_accepts(path: Path) -> None:
    body = path.read_bytes()
    parsed = parse_warning(body, "application/cap+xml", CONFIG)
    codes = {n.code for n in parsed.notes}
    signed = b"2000/09/xmldsig#" in body
    assert ("cap.signature_ignored" in codes) == signed
    assert codes - {"cap.signature_ignored"} == EDGE_NOTES.get(path.name, set())
    assert all(n.field and n.message_en and n.message_zh for n in parsed.notes)
    alert = parsed.alert
    assert alert.identifier and alert.sender and alert.sent.tzinfo is not None
    assert all(i.expires is None or i.expires.tzinfo is not None for i in alert.infos)
    assert all(ring for area in alert.areas for ring in area.polygons), "empty polygons are dropped"
    # The original document is kept, signature and all, and re-parses as UTF-8.
    assert not parsed.cap_xml.startswith("\ufeff")
    reparsed = etree.fromstring(parsed.cap_xml.encode("utf-8"), xmlsafe.safe_parser())
    assert capxml.alert_from_element(reparsed)[0] == capxml.alert_from_element(
        etree.fromstring(body, xmlsafe.safe_parser()))[0]
    assert ("Signature" in parsed.cap_xml) == signed


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_rejects(path: Path) -> None:
    with pytest.raises(WarndError) as caught:
        parse_warning(path.read_bytes(), "application/cap+xml", CONFIG)
    err = caught.value
    assert err.code.startswith("cap.") and err.problems
    assert all(p.field and p.detail_en and p.detail_zh for p in err.problems)
    code, fields = INVALID_EXPECTED[path.name]
    assert err.code == code, str(err)
    assert fields <= {p.field for p in err.problems}, str(err)


@pytest.mark.parametrize("path", ACCEPTED, ids=_ids(ACCEPTED))
def test_round_trip_through_json(path: Path) -> None:
    """XML -> Alert -> JSON -> Alert -> XML: the XML validates and the alerts are equal."""
    alert = parse_warning(path.read_bytes(), "application/xml", CONFIG).alert
    data = json.loads(json.dumps(capjson.alert_to_dict(alert), ensure_ascii=False))
    again = capjson.alert_from_dict(data)
    assert again == _as_written(alert)
    xml = capxml.alert_to_xml(again)
    assert validate_schema(etree.fromstring(xml.encode("utf-8"), xmlsafe.safe_parser())) == "1.2"
    assert xml == capxml.alert_to_xml(alert)
    assert parse_warning(xml.encode("utf-8"), "application/cap+xml", CONFIG).alert == again


def _as_written(alert):
    """What survives writing: CAP 1.2, and no embedded <derefUri> (the model keeps only a flag)."""
    infos = tuple(dataclasses.replace(i, resources=tuple(dataclasses.replace(r, has_deref_uri=False)
                                                         for r in i.resources)) for i in alert.infos)
    return dataclasses.replace(alert, cap_version="1.2", infos=infos)


@pytest.fixture(scope="module")
def xmlschemas() -> dict[str, xmlschema.XMLSchema]:
    base = Path(capxml.__file__).parent / "schema"
    return {v: xmlschema.XMLSchema(str(base / f"CAP-v{v}.xsd")) for v in ("1.1", "1.2")}


def test_lxml_schema_agrees_with_xmlschema(xmlschemas) -> None:
    """We validate with lxml for speed; xmlschema must reach the same verdict on every CAP file."""
    checked, disagree = 0, []
    for path in ACCEPTED + INVALID:
        try:
            root = xmlsafe.parse_xml(path.read_bytes(), CONFIG.max_body_bytes)
            xmlsafe.strip_signatures(root)
            version = cap_version(root)
        except WarndError:
            continue  # not a CAP 1.1/1.2 document: nothing to compare
        checked += 1
        if cap_schema(version).validate(root) != xmlschemas[version].is_valid(root):
            disagree.append(path.name)
    assert checked >= len(ACCEPTED) and not disagree


def test_xxe_never_reads_the_entity(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    body = (f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>')
    with pytest.raises(WarndError) as caught:
        parse_warning(body.encode(), "application/xml", CONFIG)
    assert caught.value.code == "cap.forbidden_construct"
    assert "TOP-SECRET" not in str(caught.value)
    # Even the parser alone (behind the DOCTYPE refusal) leaves the entity unexpanded.
    tree = etree.fromstring(body.encode(), xmlsafe.safe_parser())
    assert b"TOP-SECRET" not in etree.tostring(tree)


def test_doctype_in_utf16_is_refused_after_parsing() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    with pytest.raises(WarndError) as caught:
        parse_warning(body.encode("utf-16"), "application/xml", CONFIG)
    assert caught.value.code == "cap.forbidden_construct"


def test_billion_laughs_is_refused_quickly() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 or "")) * 10}">' for i in range(1, 10))
    body = f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]><lolz>&lol9;</lolz>'.encode()
    started = time.perf_counter()
    with pytest.raises(WarndError) as caught:
        parse_warning(body, "application/cap+xml", CONFIG)
    assert caught.value.code == "cap.forbidden_construct"
    assert time.perf_counter() - started < 0.5


def test_too_large_body() -> None:
    config = Config(max_body_bytes=2048)
    body = b"<alert>" + b" " * 2048 + b"</alert>"
    for content_type in ("application/cap+xml", "application/json"):
        with pytest.raises(WarndError) as caught:
            parse_warning(body, content_type, config)
        assert caught.value.code == "cap.too_large" and caught.value.status == 413


def test_largest_corpus_file_fits_the_default_limit() -> None:
    largest = max(ACCEPTED, key=lambda p: p.stat().st_size)
    assert largest.stat().st_size > 100_000
    parse_warning(largest.read_bytes(), "application/cap+xml", Config())


def test_not_well_formed_names_line_and_column() -> None:
    with pytest.raises(WarndError) as caught:
        parse_warning(b"<alert>\n<sent>oops</alert>", "text/xml", CONFIG)
    err = caught.value
    assert err.code == "cap.not_xml" and err.problems[0].field == "body"
    assert "line 2" in err.problems[0].detail_en


def test_media_types() -> None:
    body = (CORPUS / "valid" / "google-thunderstorm.xml").read_bytes()
    parse_warning(body, "application/cap+xml; charset=utf-8", CONFIG)
    parse_warning(body, "Text/XML", CONFIG)
    with pytest.raises(WarndError) as caught:
        parse_warning(body, "text/plain", CONFIG)
    assert caught.value.code == "cap.unsupported_media_type" and caught.value.status == 415
    assert caught.value.problems[0].field == "Content-Type"


def test_latin1_document_is_kept_as_utf8_text() -> None:
    body = (CORPUS / "valid" / "google-thunderstorm.xml").read_text(encoding="utf-8")
    body = body.replace("<headline>", "<headline>Météo ", 1)
    body = "<?xml version='1.0' encoding='ISO-8859-1'?>\n" + body.split("?>", 1)[1]
    parsed = parse_warning(body.encode("iso-8859-1"), "application/xml", CONFIG)
    assert parsed.alert.infos[0].headline.startswith("Météo ")
    assert 'encoding="UTF-8"' in parsed.cap_xml.splitlines()[0]
    again = parse_warning(parsed.cap_xml.encode("utf-8"), "application/xml", CONFIG)
    assert again.alert == parsed.alert


def test_validate_file_lines(tmp_path: Path) -> None:
    ok, lines = validate_file(CORPUS / "edge" / "nws-blizzard-warning-cap11-empty-polygon.xml", CONFIG)
    assert ok and lines[0].startswith("ok: ")
    assert any(line.startswith("warning: cap.empty_polygon /alert/info/area/polygon") for line in lines)
    ok, lines = validate_file(CORPUS / "invalid" / "google-noaa-bad-enumerations-cap11.xml", CONFIG)
    assert not ok and lines[0].startswith("error: cap.schema")
    assert any("cap.schema /alert/info/urgency: " in line and " / 不符合 CAP 模式" in line for line in lines)
    ok, lines = validate_file(tmp_path / "missing.xml", CONFIG)
    assert not ok and "cannot read" in lines[0]


def test_parse_time_of_a_5kb_alert() -> None:
    body = (CORPUS / "valid" / "smn-mexico-tropical-storm-update-es.xml").read_bytes()
    assert 4000 < len(body) < 6000
    parse_warning(body, "application/cap+xml", CONFIG)  # builds the cached schema
    times = []
    for _ in range(50):
        started = time.perf_counter()
        parse_warning(body, "application/cap+xml", CONFIG)
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.005  # ~0.3 ms measured; generous for slow CI machines
