"""Confirmation (叫应) by reply: what a person's answer says, and what it confirms (pure).

Two questions, each answered from tables in this file:

1. **What does the text say?** (`read_reply`) Affirmative, negative, a question, or
   none of these, from the forms people really write: 收到了 / 已收到 / 好的 / 晓得了 /
   ok收到 / 👌 / １ … A negation (不/没/未/别/无/冇/唔 …, "not", "didn't") never
   confirms, nor does a question. When unsure warnd does not confirm: a missed
   confirmation costs one more SMS ("reply 1"), a false one stops the escalation of a
   grid whose responsible person nobody woke.
2. **What does it confirm?** (`interpret_reply`) What its sender was asked: their own
   grid (`Role.RESPONSIBLE`), the grids an escalation rung asked them about
   (`Role.ASKED`). A grid they only back up (`Role.BACKUP`) is confirmed when the reply
   names it (its code or name) — or for every backup when configuration says backups
   confirm from the first wave. A warning's short code picks the warning; another
   warning's code never confirms this one, even if it is the only one open.
"""
from __future__ import annotations

import enum
import re
import string
import unicodedata
from collections.abc import Iterable
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


class Role(str, enum.Enum):
    """Why a person answers for a grid's requirement."""

    RESPONSIBLE = "responsible"  # their own grid (A角)
    ASKED = "asked"  # a rung of the grid's ladder asked them (B角, township duty, walker …)
    BACKUP = "backup"  # they back it up (B角) but were not asked (yet)


@dataclass(frozen=True)
class OpenItem:
    confirmation_id: int
    warning_id: int
    event: str
    level_zh: str
    role: Role = Role.RESPONSIBLE
    grid: str = ""
    grid_name: str = ""  # the grid's own name (一组) …
    parent_name: str = ""  # … and its village's (河口村)
    drill: bool = False  # Exercise / Test: every answer says 演练
    person_id: str = ""  # who of the sender's people answers for it (a shared phone)

    @property
    def place(self) -> str:
        return (self.parent_name + self.grid_name) or self.grid


class Kind(str, enum.Enum):
    """What a reply was; the value is the `inbound.outcome` recorded (operators see it)."""

    CONFIRM = "confirmed"
    AMBIGUOUS = "ambiguous"  # open for several warnings: asked for the code
    NOTHING_OPEN = "unknown"
    NOT_A_CONFIRMATION = "ignored"  # not understood: told how to confirm
    NEGATIVE = "negative"  # 没收到 / 不知道 …
    QUESTION = "question"  # 收到了吗？ 什么预警？
    WRONG_CODE = "wrong_code"  # another warning's (or grid's) code
    NOT_ASKED = "not_asked"  # a backup's reply about grids they were not asked for


class Sense(enum.Enum):
    AFFIRM = "affirm"
    NEGATIVE = "negative"
    QUESTION = "question"
    NONE = "none"


@dataclass(frozen=True)
class ReplyDecision:
    kind: Kind
    confirmation_ids: tuple[int, ...]
    answer_zh: str
    answer_en: str


# --- what the text says: the tables ---------------------------------------------------------

# Anywhere in the text, these say "received": 收到 in 收到了，马上通知 / 已收到 / ok收到.
AFFIRM_ANYWHERE = (
    "收到", "已阅", "已读", "阅悉", "收悉", "知悉", "获悉", "已知", "知道", "知晓", "明白", "晓得", "确认", "了解",
    "好的", "好滴", "好嘞", "好咧", "好哒", "好嘅", "好额", "要得", "得嘞", "妥了", "妥妥", "收讫", "清楚了", "懂了",
    "已接到", "接到了", "接到通知", "接到预警", "看到了", "已看到", "知影", "收晒", "已通知", "已转达", "已落实",
    "落实了", "马上通知", "立即通知", "正在通知", "通知了", "已经通知", "確認", "曉得", "已閱",
    "👌", "👍", "✅", "✔", "☑", "🆗", "🙆",
)
# English (and pinyin) words that say "received", matched as whole words.
AFFIRM_WORDS = frozenset({
    "OK", "OKOK", "OKAY", "OKEY", "OKK", "OKKK", "OKI", "OKIE", "YES", "YEP", "YEAH", "YEA", "YUP", "RECEIVED",
    "RECIEVED", "ROGER", "NOTED", "CONFIRM", "CONFIRMED", "ACK", "ACKNOWLEDGED", "SURE",
    "SHOUDAO", "HAODE", "MINGBAI", "ZHIDAO",
})
AFFIRM_PHRASES = ("GOT IT",)
# Alone (with only fillers around them) these say "received": 1 / 好 / 嗯嗯 / 是的 / 收 / 中 (Henan) …
# but not inside other words: 1 in 我家1楼进水了, 好 in 好大的雨.
AFFIRM_ALONE = re.compile(
    r"(?:1+|好|收|阅|知|行|中|成|嗯|是|对|得|妥|懂|可以|清楚|嗯呐|嗯哪|Y|K|KK|SD|HD)+")
FILLERS = re.compile(
    r"我们|我|俺|本人|已经|已|都|也|马上|立即|立刻|谢谢|感谢|多谢|谢|辛苦了|辛苦|领导|老师|您好|你好|回复|回|"
    r"THANKS|THANK|YOU|THX|TKS|TY|[了啦啊呀哈哦噢喔的滴哒嘞咯哟呐呢嘛吧哇呗嗷噻撒嘿呵~]")
# Phrases with a negation character that negate nothing the reply is about, and what they
# stand for: 没问题 is "OK", 级别 is no "别".
NOT_NEGATIONS = (
    ("没有问题", "好"), ("没问题", "好"), ("冇问题", "好"), ("没得问题", "好"), ("没毛病", "好"), ("没错", "对"),
    ("NO PROBLEM", "OK"), ("NO WORRIES", "OK"),
    ("不客气", ""), ("不用谢", ""), ("不谢", ""), ("没关系", ""), ("没事", ""), ("无误", ""), ("无异议", ""),
    ("级别", ""), ("特别", ""), ("分别", ""), ("区别", ""), ("个别", ""), ("类别", ""), ("别人", ""),
    ("未来", ""), ("无论", ""), ("不停", ""), ("不断", ""), ("不少", ""), ("不久", ""), ("不过", ""), ("不管", ""),
    ("不要紧", ""), ("无人员伤亡", ""), ("无伤亡", ""), ("无险情", ""), ("无异常", ""), ("未发现险情", ""),
    ("没发现险情", ""),
)
NEGATION = re.compile(r"[不没沒未别別无無冇唔莫否勿甭]|木有")
NEGATION_WORDS = frozenset({"NO", "NOT", "NOPE", "NEVER", "NONE", "NAH", "NOTHING", "CANNOT", "DIDNT", "DONT",
                            "DOESNT", "HAVENT", "HASNT", "CANT", "WONT", "ISNT", "ARENT", "WASNT", "COULDNT"})
QUESTION = re.compile(
    r"\?|什么|什麼|甚麼|啥|怎么|怎麼|怎样|咋|哪|谁|誰|为何|为什么|為什麼|是否|能否|可否|请问|想问|想知道|几点|几时|"
    r"多少|多久|咩|乜|点解|吗|嗎|[么麼]$|([^不没])[不没]\1|(?:收到|看到|接到|知道|明白|听到|清楚)了?(?:没有|没|不|否)$")
QUESTION_WORDS = frozenset({"WHAT", "WHY", "HOW", "WHEN", "WHERE", "WHO", "WHICH"})
CLAUSE = re.compile(r"[\s,.;:!~。、…·\-—_()\[\]{}【】「」《》<>\"'/\\|*#&+=^`@$%]+")
LATIN = re.compile(r"[A-Z]+(?:'[A-Z]+)?")
# Words that look like a short code (W + base 36) but are English: "we will go", "what?"
W_WORDS = frozenset({"WE", "WHAT", "WHY", "WHO", "WHEN", "WHERE", "WHICH", "WAIT", "WOW", "WELL", "WILL", "WITH",
                     "WAY", "WAS", "WERE", "WANT", "WENT", "WORK", "WARNING", "WEATHER", "WATER", "WIND", "WX",
                     "WECHAT", "WEIXIN", "WIFI", "WHILE", "WO", "WOMEN", "WAN", "WEN", "WU", "WEI"})
CODE_LETTERS_MAX = 5  # W + 4 base-36 digits reaches 1.6 million ids: a longer word of letters is English
CODE = re.compile(r"(?<![A-Z0-9])W[0-9A-Z]{1,7}(?![A-Z0-9])")
DIGITS = re.compile(r"\d+")
GRID_CODE_DIGITS = 13  # grid codes are longer than a village's 12 digits: a longer number names a grid
# Marks that decorate a word: emoji variation selectors, skin tones, joiners.
DECORATION = re.compile("[\ufe0e\ufe0f\u200b\u200d\U0001f3fb-\U0001f3ff]")


def normalize(text: str) -> str:
    """Full-width to half-width (１→1, ！→!, ＯＫ→OK), upper case, one space between words."""
    folded = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    return " ".join(DECORATION.sub("", folded).upper().split())


def _words(text: str) -> list[str]:
    return [w.replace("'", "") for w in LATIN.findall(text)]


def _is_code(token: str) -> bool:
    return token not in W_WORDS and (len(token) <= CODE_LETTERS_MAX or any(ch.isdigit() for ch in token))


def _vocabulary(confirm_words: Iterable[str]) -> tuple[tuple[str, ...], frozenset[str], frozenset[str]]:
    """Configured confirm words on top of the tables: (anywhere, English words, alone)."""
    anywhere, words, alone = [], set(), set()
    for word in (normalize(w) for w in confirm_words):
        if not word:
            continue
        if word.isascii() and word.isalpha():
            (words if len(word) > 1 else alone).add(word)
        elif len(word) > 1 and not word.isdigit():
            anywhere.append(word)
        else:
            alone.add(word)
    return tuple(anywhere), frozenset(words), frozenset(alone)


def _affirm_alone(clause: str, alone: frozenset[str]) -> bool:
    rest = FILLERS.sub("", clause)
    rest = "".join(ch for ch in rest if unicodedata.category(ch)[0] not in "SP")  # other emoji: fillers
    for word in sorted(alone, key=len, reverse=True):
        rest = rest.replace(word, "1")
    return bool(rest) and AFFIRM_ALONE.fullmatch(rest) is not None


def read_reply(text: str, confirm_words: Iterable[str] = ()) -> Sense:
    """What a (normalized) reply says, codes already taken out. A question or a negation
    anywhere wins over an affirmative: 收到了吗, 没收到，1 and 收到，是不是要转移 confirm nothing."""
    anywhere, words, alone = _vocabulary(confirm_words)
    for phrase, meaning in NOT_NEGATIONS:
        text = text.replace(phrase, f" {meaning} " if meaning else " ")
    latin = _words(text)
    clauses = [c for c in CLAUSE.split(text) if c]
    if "?" in text or any(QUESTION.search(c) for c in clauses) or QUESTION_WORDS.intersection(latin):
        return Sense.QUESTION
    if (NEGATION.search(text) or NEGATION_WORDS.intersection(latin)
            or any(w.endswith("N'T") for w in LATIN.findall(text))):
        return Sense.NEGATIVE
    joined = " ".join(latin)
    if (any(w in text for w in AFFIRM_ANYWHERE + anywhere) or (AFFIRM_WORDS | words).intersection(latin)
            or any(f" {p} " in f" {joined} " for p in AFFIRM_PHRASES)
            or any(_affirm_alone(c, alone) for c in clauses)):
        return Sense.AFFIRM
    return Sense.NONE


# --- what it confirms ----------------------------------------------------------------------

@dataclass(frozen=True)
class Named:
    """What a reply names, and the text without it."""

    warnings: frozenset[int]
    grids: frozenset[str]
    foreign: tuple[str, ...]  # codes of warnings (or grids) not open for the sender
    rest: str


def named_in(reply: str, items: list[OpenItem]) -> Named:
    """Short codes, grid codes and grid names in a normalized reply, among the sender's items."""
    by_code = {short_code(i.warning_id): i.warning_id for i in items}
    warnings, foreign = set(), []
    for code in CODE.findall(reply):
        if code in by_code:
            warnings.add(by_code[code])
        elif _is_code(code):
            foreign.append(code)
    rest = CODE.sub(lambda m: " " if m.group() in by_code or _is_code(m.group()) else m.group(), reply)
    grids: set[str] = set()
    codes = {i.grid for i in items if i.grid}
    for run in DIGITS.findall(rest):
        if run in codes:
            grids.add(run)
        elif len(run) >= GRID_CODE_DIGITS:
            foreign.append(run)
    rest = DIGITS.sub(lambda m: " " if m.group() in codes or len(m.group()) >= GRID_CODE_DIGITS else m.group(), rest)
    for item in sorted(items, key=lambda i: -len(i.place)):  # the longest name first: 河口村一组 before 一组
        for name in {normalize(item.place), normalize(item.grid_name)}:
            if len(name) >= 2 and not name.isdigit() and name in rest:
                grids.add(item.grid)
                rest = rest.replace(name, " ")
    return Named(frozenset(warnings), frozenset(grids), tuple(foreign), rest)


def confirmable(items: list[OpenItem], *, backups_confirm: bool = False,
                named_grids: frozenset[str] = frozenset()) -> list[OpenItem]:
    """What an affirmative from this sender confirms. Naming grids narrows what they were asked
    to those named (一组收到: not yet 二组), but the sender's own grid is always theirs."""
    def counts(i: OpenItem) -> bool:
        if named_grids and i.grid in named_grids:
            return True
        if i.role is Role.RESPONSIBLE:
            return True
        if named_grids:
            return False
        return i.role is Role.ASKED or backups_confirm
    return [i for i in items if counts(i)]


HOW_TO = ("如已收到预警，请回复1确认。", "If you received the warning, reply 1 to confirm.")


def interpret_reply(text: str, confirm_words: Iterable[str], items: list[OpenItem], *,
                    backups_confirm: bool = False) -> ReplyDecision:
    """A reply's meaning for its sender's open `items`, and the answer to send back."""
    reply = normalize(text)
    named = named_in(reply, items)
    sense = read_reply(named.rest, confirm_words)
    drill = bool(items) and all(i.drill for i in items)
    if sense is Sense.NEGATIVE:
        return _answer(Kind.NEGATIVE, drill, "您的回复未确认收到预警，已记录。如已收到，请回复1确认。",
                       "Your reply does not confirm the warning; it is recorded. If you received it, reply 1.")
    if sense is Sense.QUESTION:
        return _answer(Kind.QUESTION, drill, "您的问题已记录。如已收到预警，请回复1确认。",
                       "Your question is recorded. If you received the warning, reply 1 to confirm.")
    if sense is not Sense.AFFIRM and not named.warnings and not named.foreign:
        return _answer(Kind.NOT_A_CONFIRMATION, drill, *HOW_TO)
    if not items:
        return ReplyDecision(Kind.NOTHING_OPEN, (), "您目前没有待确认的预警，谢谢。",
                             "You have no warning waiting for confirmation. Thank you.")
    if named.foreign and not named.warnings and not (named.grids and sense is Sense.AFFIRM):
        return _wrong_code(named.foreign[0], confirmable(items, backups_confirm=backups_confirm), drill)
    if not named.warnings and sense is not Sense.AFFIRM:  # a grid's name alone says nothing
        return _answer(Kind.NOT_A_CONFIRMATION, drill, *HOW_TO)
    pool = [i for i in items if i.warning_id in named.warnings] if named.warnings else items
    chosen = confirmable(pool, backups_confirm=backups_confirm, named_grids=named.grids)
    if not chosen:
        return _not_asked(pool, drill)
    warnings = sorted({i.warning_id for i in chosen})
    if len(warnings) > 1:
        listing_zh = "；".join(f"{short_code(w)} {_label(items, w, zh=True)}" for w in warnings)
        listing_en = "; ".join(f"{short_code(w)} {_label(items, w, zh=False)}" for w in warnings)
        return _answer(Kind.AMBIGUOUS, drill, f"您有{len(warnings)}条预警待确认，请回复预警编号确认：{listing_zh}",
                       f"{len(warnings)} warnings await your confirmation; reply with a code: {listing_en}")
    return _confirmed(chosen)


def _confirmed(chosen: list[OpenItem]) -> ReplyDecision:
    first = chosen[0]
    label_zh, label_en = _label(chosen, first.warning_id, zh=True), _label(chosen, first.warning_id, zh=False)
    others = [i.place for i in chosen if i.role is not Role.RESPONSIBLE]
    for_zh = f"（代{_places(others, zh=True)}确认）" if others else ""
    for_en = f" for {_places(others, zh=False)}" if others else ""
    if first.drill:
        return ReplyDecision(Kind.CONFIRM, tuple(i.confirmation_id for i in chosen),
                             f"【演练】已确认收到{label_zh}{for_zh}，谢谢！",
                             f"[EXERCISE] Confirmed{for_en}: {label_en}. Thank you!")
    return ReplyDecision(Kind.CONFIRM, tuple(i.confirmation_id for i in chosen),
                         f"已确认收到{label_zh}{for_zh}，请立即组织防范。谢谢！",
                         f"Confirmed{for_en}. Please act on the warning now. Thank you!")


def _wrong_code(code: str, open_: list[OpenItem], drill: bool) -> ReplyDecision:
    warnings = sorted({i.warning_id for i in open_})
    if len(warnings) == 1:
        w = warnings[0]
        return _answer(Kind.WRONG_CODE, drill,
                       f"编号{code}不是您待确认的预警。您待确认的是{short_code(w)} {_label(open_, w, zh=True)}，"
                       f"请回复{short_code(w)}确认。",
                       f"{code} is not a warning awaiting your confirmation. Yours is {short_code(w)} "
                       f"{_label(open_, w, zh=False)}: reply {short_code(w)} to confirm.")
    if warnings:
        listing_zh = "；".join(f"{short_code(w)} {_label(open_, w, zh=True)}" for w in warnings)
        listing_en = "; ".join(f"{short_code(w)} {_label(open_, w, zh=False)}" for w in warnings)
        return _answer(Kind.WRONG_CODE, drill, f"编号{code}不是您待确认的预警。请回复预警编号确认：{listing_zh}",
                       f"{code} is not a warning awaiting your confirmation. Reply with a code: {listing_en}")
    return _answer(Kind.WRONG_CODE, drill, f"编号{code}不是您待确认的预警。如已收到预警，请回复1确认。",
                   f"{code} is not a warning awaiting your confirmation. If you received one, reply 1.")


def _not_asked(pool: list[OpenItem], drill: bool) -> ReplyDecision:
    places = [i.place for i in pool if i.role is Role.BACKUP]
    if not places:  # named a grid of another warning than the code it names
        return _answer(Kind.NOT_A_CONFIRMATION, drill, *HOW_TO)
    return _answer(Kind.NOT_ASKED, drill,
                   f"谢谢，已记录您收到预警。{_places(places, zh=True)}由网格责任人确认；"
                   f"如您代为确认，请回复“收到 {places[0]}”。",
                   f"Thank you, your reply is recorded. {_places(places, zh=False)}: confirmed by the grid's "
                   f"responsible person; to confirm on their behalf reply \"OK {places[0]}\".")


def _answer(kind: Kind, drill: bool, zh: str, en: str) -> ReplyDecision:
    return ReplyDecision(kind, (), f"【演练】{zh}" if drill else zh, f"[EXERCISE] {en}" if drill else en)


def _places(places: list[str], *, zh: bool) -> str:
    unique = list(dict.fromkeys(places))
    shown = "、".join(unique[:3]) if zh else ", ".join(unique[:3])
    if len(unique) > 3:
        return f"{shown}等{len(unique)}个网格" if zh else f"{shown} and {len(unique) - 3} more grids"
    return shown


def _label(items: list[OpenItem], warning_id: int, *, zh: bool) -> str:
    item = next(i for i in items if i.warning_id == warning_id)
    mark = ("（演练）" if zh else " (exercise)") if item.drill else ""
    return (f"{item.event}{item.level_zh}预警" if zh else item.event) + mark


# --- a key press on a call -----------------------------------------------------------------

def key_press_answer(kind: Kind, drill: bool) -> tuple[str, str]:
    """What a call says after a key press: (zh, en)."""
    if kind is Kind.CONFIRM:
        zh, en = "已确认收到预警，谢谢。", "Your confirmation is recorded. Thank you."
    elif kind is Kind.NOT_ASKED:
        zh, en = ("谢谢，已记录您收到预警。网格仍由网格责任人确认。",
                  "Thank you, this is recorded. The grid is confirmed by its responsible person.")
    else:
        zh, en = ("未确认。如已收到预警，请回复短信1确认。",
                  "Not confirmed. If you received the warning, reply 1 by text message to confirm.")
    if drill:
        return f"演练。{zh}本次为演练。", f"Exercise. {en} This is an exercise."
    return zh, en
