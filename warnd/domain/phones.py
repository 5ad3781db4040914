"""Phone numbers, parsed and checked with `phonenumbers` (Google's libphonenumber data).

Every number that enters the directory goes through `normalise`: written the way
people write them in China (13800138000, 0713-1234567, 010 1234 5678, +86…, 0086…,
86…) it becomes E.164 (+8613800138000, +867131234567), the form replies are matched
by. Only numbers the numbering plan says exist are kept: mobiles and landlines of
China by default, valid numbers of other countries written with their code.
(电话号码统一按 E.164 保存；默认地区为中国，手机与座机均可。)
"""
from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, ValidationResult

DEFAULT_REGION = "CN"
MAX_INPUT = 64  # characters; longer text is no phone number
MOBILE_PREFIXES = frozenset(f"1{d}" for d in range(3, 10))  # China's mobiles: 13…–19…, 11 digits


class InvalidPhone(ValueError):
    """A number that is not one: `en` and `zh` say why, for the row that holds it."""

    def __init__(self, raw: str, en: str, zh: str) -> None:
        super().__init__(f"{en} / {zh}")
        self.raw, self.en, self.zh = raw, en, zh


def _invalid(raw: str, en: str, zh: str) -> InvalidPhone:
    return InvalidPhone(raw, f"phone {raw!r} {en}", f"电话 {raw!r} {zh}")


def normalise(raw: str, region: str = DEFAULT_REGION) -> str:
    """`raw` as E.164; raise InvalidPhone (a ValueError) saying why it is not a number.

    A number without a country code is read as one of `region`; "86…" without "+"
    is also read as China's code when the rest is a valid Chinese number.
    """
    text = raw.strip()
    if not text:
        raise _invalid(raw, "is empty", "为空")
    if len(text) > MAX_INPUT:
        raise _invalid(text[:MAX_INPUT] + "…", f"is longer than {MAX_INPUT} characters",
                       f"超过 {MAX_INPUT} 个字符")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise _invalid(text, "is not a phone number", "不是电话号码") from None
    if number.extension:
        raise _invalid(text, "has an extension; write the number that reaches the person directly",
                       "带有分机号；请填写能直接联系到本人的号码")
    if not phonenumbers.is_valid_number(number):
        raise _invalid(text, *_why_invalid(number))
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


EXAMPLES_EN = "(e.g. 13800138000, 0713-1234567, +8613800138000)"
EXAMPLES_ZH = "（如 13800138000、0713-1234567、+8613800138000）"


def _why_invalid(number: phonenumbers.PhoneNumber) -> tuple[str, str]:
    """Why a parsed number is not valid, in English and Chinese, as near as the data can say."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    national = phonenumbers.national_significant_number(number)
    if number.country_code == 86 and national[:2] in MOBILE_PREFIXES and len(national) != 11:
        return (f"has {len(national)} digits: a mobile number has 11 {EXAMPLES_EN}",
                f"为 {len(national)} 位：手机号码应为 11 位{EXAMPLES_ZH}")
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return (f"is too short: a landline needs its area code {EXAMPLES_EN}",
                f"位数太少：座机号码须带区号{EXAMPLES_ZH}")
    if reason == ValidationResult.TOO_SHORT:
        return f"is too short {EXAMPLES_EN}", f"位数太少{EXAMPLES_ZH}"
    if reason == ValidationResult.TOO_LONG:
        return f"is too long {EXAMPLES_EN}", f"位数太多{EXAMPLES_ZH}"
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        return "has no known country code", "国家代码无效"
    return (f"is not a valid mobile or landline number {EXAMPLES_EN}",
            f"不是有效的手机或座机号码{EXAMPLES_ZH}")


def is_mobile(e164: str) -> bool:
    """Whether a normalised number is a mobile (one that can be @-mentioned in a chat group)."""
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except NumberParseException:
        return False
    return kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


def national_mobile(e164: str) -> str | None:
    """A Chinese mobile as the 11 digits people and chat apps know it by (+8613800138000 →
    13800138000); another country's mobile as it is (E.164); None for a landline."""
    if not is_mobile(e164):
        return None
    number = phonenumbers.parse(e164, None)
    if number.country_code == 86:
        return phonenumbers.national_significant_number(number)
    return e164
