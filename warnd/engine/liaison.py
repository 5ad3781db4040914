"""A walker's SMS report of a door-to-door list, on the SMS reply path ("已转移12人").

`liaison_report` is asked first by the inbound SMS path: when the text reports
something (warnd.domain.liaison_report) and its sender walks a door-to-door list,
the report is recorded for that list's grid and answered; otherwise it returns
None and the SMS is an ordinary reply (a confirmation, or how to confirm). An
ordinary reply costs no database read here: the text is parsed first.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from warnd.config import Config
from warnd.domain.confirmation import Kind, ReplyDecision
from warnd.domain.households import Policy
from warnd.domain.liaison_report import Candidate, Report, choose, parse_report
from warnd.store.database import Database
from warnd.store.door_reports import DoorReportStore, Walked


@dataclass(frozen=True)
class LiaisonAnswer:
    answer_zh: str
    answer_en: str
    language: str  # the sender's
    replayed: bool = False  # this MessageSid was applied before: nothing changed, answer nothing
    recorded: bool = False  # False: ambiguous, the walker was asked to name the grid

    @property
    def text(self) -> str:
        return self.answer_en if self.language.startswith("en") else self.answer_zh

    @property
    def decision(self) -> ReplyDecision:
        """As the reply path answers: a report confirms nothing (the inbound row says `reported`)."""
        return ReplyDecision(Kind.NOT_A_CONFIRMATION, (), self.answer_zh, self.answer_en)


def door_policy(config: Config, channels: Collection[str]) -> Policy:
    """What marks and reports set off, with only the channels this node runs."""
    door = config.door
    return Policy(tuple(c for c in door.not_home_channels if c in channels), tuple(door.alarm_to),
                  tuple(c for c in door.alarm_channels if c in channels))


def enabled_channels(config: Config) -> set[str]:
    return set(config.enabled_channels())


async def liaison_report(db: Database, config: Config, from_number: str, body: str, provider_ref: str | None,
                         at: datetime, channel: str) -> LiaisonAnswer | None:
    """Record `body` as a report of the sender's list, and the answer to send; None when it is no report
    or the sender walks no list (then it is an ordinary reply)."""
    report = parse_report(body)
    if report is None:
        return None
    store = DoorReportStore(db, channel)
    people = await store.people_by_phone(from_number)
    ids = [p for p, _ in people]
    walked = await store.walked_by(ids, at - timedelta(days=config.link_days), at)
    if not walked:
        return None
    language = people[0][1]
    person = ids[0]  # a number shared by several people: the first answers, as for confirmations
    chosen = _choose(body, report, walked)
    if chosen is None:
        fresh = await store.record_unmatched(at, from_number, body, person, provider_ref)
        return _ambiguous(walked, language, replayed=not fresh)
    done = await store.record(chosen, report, at, from_number, body, person, provider_ref,
                              door_policy(config, enabled_channels(config)))
    if done.replayed:
        return LiaisonAnswer("", "", language, replayed=True)
    zh, en = _thanks(chosen, report, done.moved_total, done.alarmed)
    return LiaisonAnswer(zh, en, language, recorded=True)


def _choose(body: str, report: Report, walked: list[Walked]) -> Walked | None:
    by_id = {w.list_id: w for w in walked}
    picked = choose(body, report, [Candidate(w.list_id, w.grid, w.names) for w in walked])
    return by_id[picked.key] if picked else None


def _drill(walked: Walked) -> tuple[str, str]:
    return ("【演练】", "[EXERCISE] ") if walked.drill else ("", "")


def _thanks(w: Walked, r: Report, total: int, alarmed: bool) -> tuple[str, str]:
    name = w.names[0] if w.names else w.grid
    zh, en = [], []
    if r.moved_people is not None:
        zh.append(f"{'累计' if r.cumulative else ''}已转移{r.moved_people}人（本网格合计{total}人）")
        en.append(f"{r.moved_people} people moved{' in all' if r.cumulative else ''} ({total} in this grid)")
    for key, label_zh, label_en in (("told", "已通知", "told"), ("not_home", "不在家", "not at home"),
                                    ("refused", "拒绝转移", "refused to leave"), ("needs_help", "需要帮助", "need help")):
        if count := getattr(r, key):
            zh.append(f"{label_zh}{count}户")
            en.append(f"{count} households {label_en}")
    tail_zh = "已报告乡镇值班人员。" if alarmed else ""
    tail_en = " The township duty officer has been told." if alarmed else ""
    d_zh, d_en = _drill(w)
    return (f"{d_zh}已记录{name}入户情况：{'，'.join(zh)}。{tail_zh}谢谢！",
            f"{d_en}Recorded for {name}: {'; '.join(en)}.{tail_en} Thank you.")


def _ambiguous(walked: list[Walked], language: str, replayed: bool) -> LiaisonAnswer:
    names = [w.names[0] if w.names else w.grid for w in walked[:5]]
    d_zh, d_en = _drill(walked[0])
    return LiaisonAnswer(f"{d_zh}您有多个网格的入户清单，请注明网格后重发，例如：{names[0]}已转移12人（{'、'.join(names)}）",
                         f"{d_en}You walk lists of several grids: name the grid and send again, e.g. "
                         f"\"{names[0]} moved 12\" ({', '.join(names)}).", language, replayed=replayed)
