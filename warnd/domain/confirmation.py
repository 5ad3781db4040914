"""Confirmation (叫应) by reply: what a person's answer means (pure).

A reply confirms when it is a confirm word ("1", "收到", "确认", "OK"…) or a
warning's short code. With open requirements for several warnings, a bare "1"
is ambiguous: the answer asks for the short code instead of guessing.
"""
from __future__ import annotations

import enum
import string
import unicodedata
from dataclasses import dataclass

ALPHABET = string.digits + string.ascii_uppercase


def short_code(warning_id: int) -> str:
    """A warning's reply code: "W" + base 36 of its id (W1, WZ, W10 …)."""
    n, digits = warning_id, ""
    while True:
        n, r = divmod(n, 36)
        digits = ALPHABET[r] + digits
        if n == 0:
            return "W" + digits


@dataclass(frozen=True)
class OpenItem:
    confirmation_id: int
    warning_id: int
    event: str
    level_zh: str


class Kind(str, enum.Enum):
    CONFIRM = "confirmed"
    AMBIGUOUS = "ambiguous"
    NOTHING_OPEN = "unknown"
    NOT_A_CONFIRMATION = "ignored"


@dataclass(frozen=True)
class ReplyDecision:
    kind: Kind
    confirmation_ids: tuple[int, ...]
    answer_zh: str
    answer_en: str


def normalize(text: str) -> str:
    """Full-width to half-width, trimmed, upper case, without trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).strip().upper()
    return folded.strip("。.!！ ，,")


def interpret_reply(text: str, confirm_words: list[str], items: list[OpenItem]) -> ReplyDecision:
    reply = normalize(text)
    words = {normalize(w) for w in confirm_words}
    by_code = {short_code(i.warning_id): i.warning_id for i in items}
    tokens = reply.replace("，", " ").replace(",", " ").split()
    named = [by_code[t] for t in tokens if t in by_code]
    is_word = reply in words or any(t in words for t in tokens)
    if not named and not is_word:
        return ReplyDecision(Kind.NOT_A_CONFIRMATION, (), "如已收到预警，请回复1确认。",
                             "If you received the warning, reply 1 to confirm.")
    if not items:
        return ReplyDecision(Kind.NOTHING_OPEN, (), "您目前没有待确认的预警，谢谢。",
                             "You have no warning waiting for confirmation. Thank you.")
    warnings = set(named) if named else {i.warning_id for i in items}
    if len(warnings) > 1:
        listing_zh = "；".join(f"{short_code(w)} {_label(items, w, zh=True)}" for w in sorted(warnings))
        listing_en = "; ".join(f"{short_code(w)} {_label(items, w, zh=False)}" for w in sorted(warnings))
        return ReplyDecision(Kind.AMBIGUOUS, (), f"您有{len(warnings)}条预警待确认，请回复预警编号确认：{listing_zh}",
                             f"{len(warnings)} warnings await your confirmation; reply with a code: {listing_en}")
    ids = tuple(i.confirmation_id for i in items if i.warning_id in warnings)
    label = _label(items, next(iter(warnings)), zh=True)
    return ReplyDecision(Kind.CONFIRM, ids, f"已确认收到{label}，请立即组织防范。谢谢！",
                         "Confirmed. Please act on the warning now. Thank you!")


def _label(items: list[OpenItem], warning_id: int, *, zh: bool) -> str:
    item = next(i for i in items if i.warning_id == warning_id)
    return f"{item.event}{item.level_zh}预警" if zh else item.event
