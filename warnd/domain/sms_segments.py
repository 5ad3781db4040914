"""How many SMS segments a text costs (pure).

A text that fits the GSM-7 alphabet is sent in 7-bit septets: 160 in a single
message, 153 per part of a concatenated one (the user data header takes the
rest). Characters of the GSM extension table (€ [ ] { } ~ ^ \\ | and form feed)
take two septets, an escape and the character, and are never split across
parts. Anything else forces UCS-2 for the whole message: 70 UTF-16 code units
single, 67 per part; a character outside the BMP (most emoji) takes two units,
a surrogate pair that is likewise never split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}  # (single message, per part)

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    chars: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # 0 for an empty text


GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION


def segment_info(text: str) -> SegmentInfo:
    """Counted per character only where sizes differ (extension characters, surrogate pairs):
    the sender renders one text per recipient, and a per-character walk of every one cost
    a sixth of an SMS send's CPU."""
    if not text:
        return SegmentInfo("GSM-7", 0, 0)
    used = set(text)
    if used <= GSM7_BASIC:
        return _uniform("GSM-7", len(text))
    if used <= GSM7_ALL:
        return _parts("GSM-7", [2 if ch in GSM7_EXTENSION else 1 for ch in text])
    if max(used) <= "\uffff":
        return _uniform("UCS-2", len(text))
    return _parts("UCS-2", [2 if ord(ch) > 0xFFFF else 1 for ch in text])


def _uniform(encoding: Encoding, units: int) -> SegmentInfo:
    """Every character one unit: parts of `per_part` units each."""
    single, per_part = LIMITS[encoding]
    return SegmentInfo(encoding, units, 1 if units <= single else -(-units // per_part))


def _parts(encoding: Encoding, costs: list[int]) -> SegmentInfo:
    total = sum(costs)
    single, per_part = LIMITS[encoding]
    if total <= single:
        return SegmentInfo(encoding, total, 1)
    parts, room = 1, per_part
    for cost in costs:  # an escape pair or surrogate pair that does not fit opens a new part
        if cost > room:
            parts, room = parts + 1, per_part
        room -= cost
    return SegmentInfo(encoding, total, parts)
