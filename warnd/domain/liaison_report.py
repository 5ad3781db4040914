"""A walker's SMS report of a door-to-door list (pure): "已转移12人", "3户不在家", "共转移20人".

Liaisons walking a list often text what they did instead of (or after) tapping the
page. `parse_report` reads the counts people write: people moved (人/名/口/位,
Arabic, full-width or Chinese numerals), households told, not at home, refused or
needing help (户), and whether the number is a running total ("共/累计/合计…": it
replaces what was reported before) or an addition ("已转移12人", "又转移5人": summed).
A negated phrase ("未转移12人", "还没转移") reports nothing. Anything else is not a
report, and goes the ordinary reply path (a confirmation, or how to confirm).

`choose` picks the walker's list a report is about: the one it names (grid code or
name), else their only list; with several and none named it is ambiguous and the
walker is asked to name the grid.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_COUNT = 10_000  # more than any grid holds: a typo or a phone number, not a report

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
             "九": 9}
CN_UNITS = {"十": 10, "百": 100, "千": 1000}
NUM = r"(\d{1,6}|[零〇一二两三四五六七八九十百千]{1,8})"
PEOPLE = r"(?:个人|人|名|口|位)"
WHO = r"(?:群众|人员|村民|居民|老人|住户)?"
MOVE = r"(?:转移|撤离|疏散|安置|撤出|转出|搬离)"
DONE = r"(?:了|出|走|出去)?"
SOME_HOUSEHOLDS = r"(?:(?:\d{1,6}|[零〇一二两三四五六七八九十百千]{1,8})\s*户\s*[,，、]?\s*)?"  # 转移12户36人: the people count
# 共转移20人, 累计已转移20人, 转移共20人, total moved 20: the word just before the phrase (or in it)
TOTAL_BEFORE = re.compile(r"(?:共|累计|合计|总计|total(?: of)?)[^，,。;；!！]{0,3}$")
TOTAL_IN = re.compile(r"共|累计|合计|总计")
TOTAL_AFTER = re.compile(r"\s*[,，]?\s*(?:so far|in total|in all|altogether|total)\b")  # moved 20 so far
NEGATION = re.compile(r"[未没不无别]")  # 未转移, 没(有)转移, 还没, 尚未, 不需要, 无需
NEGATION_EN = re.compile(r"\b(?:not|no|never|nobody|none)\s*(?:yet\s*)?(?:been\s*)?$|n't\s*(?:been\s*)?$")
GRID_CODE = re.compile(r"(?<!\d)\d{13,32}(?!\d)")  # grid codes are longer than a village's 12 digits

MOVED = (
    re.compile(MOVE + DONE + WHO + r"[:：]?\s*(?:共|共计|合计)?\s*" + SOME_HOUSEHOLDS + NUM + r"\s*" + PEOPLE),  # 已转移12人
    re.compile(NUM + r"\s*" + PEOPLE + WHO + r"\s*(?:已经|已|均已|都已|全部|已全部)?" + MOVE),  # 12人已转移
    re.compile(MOVE + r"人数\s*[:：]?\s*(?:为|是)?\s*" + NUM),  # 转移人数：12
    re.compile(r"\b(?:moved|evacuated|relocated)\s*(?:out\s*)?(?:total\s*)?" + r"(\d{1,6})"),  # moved 12
    re.compile(r"(\d{1,6})\s*(?:people|persons|residents|ppl)?\s*(?:were\s*|have\s*been\s*)?"
               r"(?:moved|evacuated|relocated)\b"),  # 12 people moved
)
HOUSEHOLDS = r"\s*户"
OUTCOMES: dict[str, tuple[re.Pattern[str], ...]] = {
    "not_home": (re.compile(NUM + HOUSEHOLDS + r"(?:人家)?\s*(?:不在家|家中无人|无人在家|外出|没人)"),
                 re.compile(r"(?:不在家|家中无人|无人在家|外出)(?:的)?\s*[:：]?\s*" + NUM + HOUSEHOLDS)),
    "refused": (re.compile(NUM + HOUSEHOLDS + r"\s*(?:拒绝|不愿|不肯|不同意)"),
                re.compile(r"(?:拒绝转移|拒绝撤离|拒不转移|不愿转移|不肯转移|拒绝)(?:的)?\s*[:：]?\s*" + NUM + HOUSEHOLDS)),
    "needs_help": (re.compile(NUM + HOUSEHOLDS + r"\s*(?:需要|需|要)(?:帮助|救助|协助|支援|帮忙|救援)"),
                   re.compile(r"(?:需要|需)(?:帮助|救助|协助|支援|帮忙|救援)(?:的)?\s*[:：]?\s*" + NUM + HOUSEHOLDS)),
    "told": (re.compile(r"(?:通知|告知)(?:了|到)?\s*" + NUM + HOUSEHOLDS),
             re.compile(NUM + HOUSEHOLDS + r"\s*(?:已经|已|均已|都已)?(?:通知|告知)")),
}
HELP_WORDS = re.compile(r"(?:需要|需|急需)(?:帮助|救助|协助|支援|帮忙|救援)|求助|求救|\bneeds? help\b")


@dataclass(frozen=True)
class Report:
    moved_people: int | None = None  # None: the report says nothing of people moved
    cumulative: bool = False  # the number is the grid's total so far, not an addition
    told: int = 0  # households
    not_home: int = 0
    refused: int = 0
    needs_help: int = 0
    codes: tuple[str, ...] = ()  # grid codes named in the text


def cn_number(text: str) -> int | None:
    """十二 → 12, 二十 → 20, 一百零五 → 105, 两百 → 200; digits as they are; None if not a number."""
    if text.isdigit():
        return int(text)
    total, digit = 0, None
    for ch in text:
        if ch in CN_DIGITS:
            if digit is not None and digit != 0:  # 一二 is not a number people write
                return None
            digit = CN_DIGITS[ch]
        elif ch in CN_UNITS:
            total += (1 if digit is None else digit) * CN_UNITS[ch]
            digit = None
        else:
            return None
    return total + (digit or 0)


def _fold(text: str) -> str:
    """Full-width to half-width, lower case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _negated(text: str, start: int) -> bool:
    """A negation just before a phrase: 未/没(有)/还没/尚未 转移, 不/无 需要帮助, not moved."""
    return bool(NEGATION.search(text[max(0, start - 2):start]) or NEGATION_EN.search(text[max(0, start - 16):start]))


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> tuple[int, int, int] | None:
    """(value, start, end) of the earliest unnegated match of any pattern, or None."""
    found = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            value = cn_number(m.group(1))
            if value is None or value > MAX_COUNT or _negated(text, m.start()):
                continue
            found.append((m.start(), m.end(), value))
            break
    if not found:
        return None
    start, end, value = min(found)
    return value, start, end


def parse_report(text: str) -> Report | None:
    """What a walker's SMS reports, or None when it reports nothing (see the module doc)."""
    folded = _fold(text)
    codes = tuple(dict.fromkeys(GRID_CODE.findall(folded)))
    rest = GRID_CODE.sub(" ", folded)  # a grid code is not a head count
    moved = _first(MOVED, rest)
    counts = {}
    for name, patterns in OUTCOMES.items():
        hit = _first(patterns, rest)
        counts[name] = hit[0] if hit else 0
    if not counts["needs_help"]:
        help_word = HELP_WORDS.search(rest)
        if help_word and not _negated(rest, help_word.start()):
            counts["needs_help"] = 1  # "张大爷家需要帮助": one household, named in the text
    if moved is None and not any(counts.values()):
        return None
    cumulative = False
    if moved is not None:
        _, start, end = moved
        cumulative = bool(TOTAL_BEFORE.search(rest[:start]) or TOTAL_IN.search(rest, start, end)
                          or TOTAL_AFTER.match(rest, end))
    return Report(moved[0] if moved else None, cumulative, counts["told"], counts["not_home"], counts["refused"],
                  counts["needs_help"], codes)


@dataclass(frozen=True)
class Candidate:
    """One of the walker's lists a report may be about."""

    key: int  # the list id
    grid: str
    names: tuple[str, ...]  # e.g. ("河口村一组", "一组"): the longest one found wins


def choose(text: str, report: Report, candidates: list[Candidate]) -> Candidate | None:
    """The list a report is about: named by code or by name, else the only one; None when ambiguous."""
    by_code = [c for c in candidates if c.grid in report.codes]
    if len(by_code) == 1:
        return by_code[0]
    folded = _fold(text)
    best, best_len, tie = None, 0, False
    for c in candidates:
        length = max((len(n) for n in c.names if n and _fold(n) in folded), default=0)
        if length > best_len:
            best, best_len, tie = c, length, False
        elif length and length == best_len:
            tie = True
    if best is not None and not tie:
        return best
    return candidates[0] if len(candidates) == 1 else None


def reported_total(reports: list[tuple[int | None, bool]]) -> int:
    """People moved per a grid's reports in order, each (moved, cumulative): additions are
    summed, a running total replaces what came before."""
    total = 0
    for moved, cumulative in reports:
        if moved is None:
            continue
        total = moved if cumulative else total + moved
    return total
