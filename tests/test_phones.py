"""Phone numbers: how people write them in, E.164 out, the rest refused with a reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from warnd.domain.errors import WarndError
from warnd.domain.phones import InvalidPhone, national_mobile, normalise
from warnd.ingest.directory import load_directory, parse_entry

GOOD = [
    # mobiles
    ("13800138000", "+8613800138000"),
    ("+8613800138000", "+8613800138000"),
    ("008613800138000", "+8613800138000"),
    ("8613800138000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("138-0013-8000", "+8613800138000"),
    ("１３８００１３８０００", "+8613800138000"),  # full-width digits from a spreadsheet
    ("19912345678", "+8619912345678"),
    # landlines: with the 0 trunk prefix, without it, with the country code
    ("0713-1234567", "+867131234567"),
    ("(0713) 123 4567", "+867131234567"),
    ("07131234567", "+867131234567"),
    ("+867131234567", "+867131234567"),
    ("010-12345678", "+861012345678"),
    ("+861012345678", "+861012345678"),  # Beijing, refused by the old regex
    ("0086 10 1234 5678", "+861012345678"),
    ("1012345678", "+861012345678"),  # Beijing without its 0
    ("0755-12345678", "+8675512345678"),
    # other countries, written with their code
    ("+14155552671", "+14155552671"),
    ("+44 7911 123456", "+447911123456"),
    ("+81 3-1234-5678", "+81312345678"),
]

BAD = [
    ("12345", "area code"),
    ("138001380", "a mobile number has 11"),
    ("1380013800", "a mobile number has 11"),
    ("+86123", "too short"),
    ("+1234567", ""),  # accepted by the old regex
    ("+86138001380001234", "mobile number has 11"),
    ("+8607131234567890", "too long"),
    ("+15555550100", "not a valid"),  # North America's fictional 555 numbers
    ("+8601234567", ""),
    ("abc", "not a phone number"),
    ("+", "not a phone number"),
    ("", "empty"),
    ("   ", "empty"),
    ("0713-1234567 ext. 12", "extension"),
    ("1" * 80, "longer than"),
]


@pytest.mark.parametrize(("raw", "e164"), GOOD)
def test_normalise_gives_e164(raw, e164):
    assert normalise(raw) == e164


@pytest.mark.parametrize(("raw", "why"), BAD)
def test_normalise_refuses_with_a_reason_in_both_languages(raw, why):
    with pytest.raises(ValueError) as caught:
        normalise(raw)
    exc = caught.value
    assert isinstance(exc, InvalidPhone)
    assert why in exc.en
    assert exc.zh.startswith("电话") and exc.en.startswith("phone")


def test_another_default_region():
    assert normalise("(415) 555-2671", region="US") == "+14155552671"
    assert normalise("+8613800138000", region="US") == "+8613800138000"


@pytest.mark.parametrize(("e164", "mention"), [
    ("+8613800138000", "13800138000"), ("+867131234567", None), ("+447911123456", "+447911123456")])
def test_national_mobile_for_mentions(e164, mention):
    assert national_mobile(e164) == mention


def test_the_api_entry_is_normalised_and_a_bad_one_named():
    person = parse_entry("people", {"id": "p1", "name": "甲", "region": "421126", "roles": ["county_duty"],
                                    "phone": "010 1234 5678"})
    assert person.phone == "+861012345678"
    with pytest.raises(WarndError) as caught:
        parse_entry("people", {"id": "p1", "name": "甲", "region": "421126", "roles": ["county_duty"],
                               "phone": "+1234567"})
    assert [p.field for p in caught.value.problems] == ["phone"]


def test_import_reports_bad_numbers_with_their_row(tmp_path: Path):
    (tmp_path / "d.yaml").write_text(
        'regions:\n'
        '  - {code: "421126", name: 县}\n'
        'people:\n'
        '  - {id: a, name: 甲, region: "421126", roles: [county_duty], phone: 07131234567}\n'  # unquoted: not octal
        '  - {id: b, name: 乙, region: "421126", roles: [county_duty], phone: "+861012345678"}\n'
        '  - {id: c, name: 丙, region: "421126", roles: [county_duty], phone: "+1234567"}\n'
        'households:\n'
        '  - {id: h, grid: "421126100201001", address: 一号, phone: "138"}\n', encoding="utf-8")
    (tmp_path / "people.csv").write_text("id,name,region,roles,phone\nd,丁,421126,county_duty,0713-1234567\n"
                                         "e,戊,421126,county_duty,12345\n", encoding="utf-8")
    with pytest.raises(WarndError) as caught:
        load_directory([tmp_path / "d.yaml", tmp_path / "people.csv"])
    fields = [p.field for p in caught.value.problems]
    assert fields == ["d.yaml:6.phone", "d.yaml:8.phone", "people.csv:3.phone"]
    assert "'+1234567'" in caught.value.problems[0].detail_en and "电话" in caught.value.problems[0].detail_zh

    (tmp_path / "d.yaml").write_text(
        'regions:\n  - {code: "421126", name: 县}\n'
        'people:\n  - {id: a, name: 甲, region: "421126", roles: [county_duty], phone: 07131234567}\n'
        '  - {id: b, name: 乙, region: "421126", roles: [county_duty], phone: +8613800138000}\n', encoding="utf-8")
    data = load_directory([tmp_path / "d.yaml"])
    assert [p.phone for p in data.people] == ["+867131234567", "+8613800138000"]


def test_the_bundled_example_imports():
    config = Path(__file__).parent.parent / "config"
    data = load_directory([config / "directory.example.yaml", (config / "people.example.csv", "people")])
    assert data.people and all(p.phone is None or p.phone.startswith("+") for p in data.people)
