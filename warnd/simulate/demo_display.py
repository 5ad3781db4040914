"""`warnd demo`'s terminal output: Chinese first (or English), a legend first, plain words throughout.

`DemoDisplay` is a `progress.Display` (the runner calls the same methods) that
prints what is issued as it happens ("15:04:48 升级为红色预警：暴雨红色预警 → 蕲阳县全县 …"),
progress in words instead of symbols, and a closing summary from `demo_view.View`.
`say_event` turns the runner's event lines into the chosen language; a line it
does not recognise is printed as the runner wrote it.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from warnd.simulate.demo_text import CHANNEL, LEVEL, T, duration, legend_lines, reasons, word
from warnd.simulate.demo_view import Places, View, steps_of, warning_name
from warnd.simulate.progress import LEVEL_STYLE, PLAIN_EVERY, Display, Snapshot, sent_count
from warnd.simulate.report import clock
from warnd.simulate.scenario import Scenario

RANK = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}
SUBMITTED = re.compile(r"^(issue|update|cancel) (\S+): warning (\d+) \((\w*)\) submitted, awaiting (\d+) approval")
AT_ONCE = re.compile(r"^(issue|update|cancel) (\S+): warning (\d+) \((\w*), (\d+) deliveries planned\)")
APPROVED = re.compile(r"^approve (\S+): (.+?) \((\S+)\) (\d+)/(\d+); warning (\d+) published (\S+) after "
                      r"submission, (\d+) deliveries planned")
APPROVE = re.compile(r"^approve (\S+): (.+?) \((\S+)\) (\d+)/(\d+) /")
REJECT = re.compile(r"^reject (\S+): (.+?) \((\S+)\) rejected warning (\d+): (.*) / 驳回$")
STARTUP_SECONDS = 3.0  # the runner's: T+0 is this long after warnd is started (its clock starts there)


class Words:
    """The runner's event lines and snapshots, said in one language."""

    def __init__(self, scenario: Scenario, lang: str) -> None:
        self.lang, self.t = lang, T(lang)
        self.places, self.steps = Places(scenario), steps_of(scenario)

    def _what(self, name: str) -> tuple[str, str]:
        s = self.steps.get(name)
        if s is None:
            return name, "—"
        return warning_name(s.event, s.level, self.lang), self.places.describe(s.areas, self.lang)

    def published(self, name: str, planned: str) -> str:
        s = self.steps.get(name)
        what, where = self._what(name)
        if s is not None and s.action == "cancel":
            return self.t("lifted", what=what, planned=planned)
        if s is not None and s.action == "update":
            higher = RANK.get(s.level, 0) > RANK.get(s.previous_level or "", 0)
            return self.t("raised" if higher else "changed", what=what, where=where, planned=planned,
                          level=word(LEVEL, s.level, self.lang))
        return self.t("published", what=what, where=where, planned=planned)

    def event(self, text: str) -> str:
        t = self.t
        if m := SUBMITTED.match(text):
            what, where = self._what(m[2])
            return t("submitted", what=what, where=where, n=m[5])
        if m := AT_ONCE.match(text):
            return self.published(m[2], m[5])
        if m := APPROVED.match(text):
            return t("signed_last", by=m[2], a=m[4], n=m[5], took=m[7]) + ("；" if self.lang == "zh" else "; ") \
                + self.published(m[1], m[8])
        if m := APPROVE.match(text):
            return t("signed", by=m[2], a=m[4], n=m[5])
        if m := REJECT.match(text):
            return t("rejected", by=m[2], reason=m[5])
        if text.startswith("crash:"):
            return t("crash")
        if text.startswith("restart:"):
            return t("restart")
        return text

    def channels(self, channels: dict[str, dict[str, int]]) -> list[str]:
        return [f"{word(CHANNEL, c, self.lang)} {states.get('delivered', 0)}/{sent_count(states)}/"
                f"{sum(states.values())}" for c, states in sorted(channels.items())]

    def grids(self, summary: dict) -> str:
        if not summary or not summary.get("grids"):
            return "—"
        closed = self.t("closed_part", n=summary["closed"]) if summary.get("closed") else ""
        return self.t("grid_text", confirmed=summary["confirmed"], covered=summary["covered"], open=summary["open"],
                      closed=closed, grids=summary["grids"])

    def state(self, w: dict) -> str:
        key = f"state_{w.get('state')}"
        if key not in ("state_awaiting", "state_active", "state_superseded", "state_cancelled", "state_expired",
                       "state_rejected"):
            return str(w.get("state"))
        return self.t(key, a=w.get("approvals", 0), n=w.get("needed", 0))

    def name(self, w: dict) -> str:
        s = self.steps.get(w["name"])
        return f"{warning_name(s.event, w.get('level') or s.level, self.lang) if s else w['name']} #{w['id']}"


class DemoDisplay(Display):
    def __init__(self, scenario: Scenario, lang: str, out_dir: Path, out: IO[str] | None = None,
                 interactive: bool | None = None) -> None:
        super().__init__(out, interactive)
        self.scenario, self.lang, self.out_dir = scenario, lang, out_dir
        self.words, self.t = Words(scenario, lang), T(lang)
        self.sim_start = datetime.now(timezone.utc)
        self.api = self.token = ""

    def intro(self) -> None:
        self.say(self.t("title"))
        self.say(self.t("story"))
        for line in legend_lines(self.lang):
            self.say(line)
        self.say("")

    def begin(self, *, api: str, token: str, speed: float, workdir: Path, keep: bool) -> None:
        # the runner sets T+0 just before calling this (the start-up margin ahead, whole seconds)
        self.sim_start = (datetime.now(timezone.utc) + timedelta(seconds=STARTUP_SECONDS)).replace(microsecond=0)
        self.api, self.token = api, token
        self.say(self.t("api", api=api, token=token))
        self.say(self.t("speed", speed=speed, out=self.out_dir))
        if self.interactive:
            self.live = Live(Text(self.t("starting")), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def event(self, sim_seconds: float, text: str) -> None:
        at = (self.sim_start + timedelta(seconds=sim_seconds)).astimezone().strftime("%H:%M:%S")
        self.say(f"{at}（{clock(sim_seconds)}）{self.words.event(text)}" if self.lang == "zh"
                 else f"{at} ({clock(sim_seconds)})  {self.words.event(text)}")

    def update(self, snap: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self._table(snap))
            return
        now = time.monotonic()
        if now - self._last_plain < PLAIN_EVERY or (not snap.warnings and not snap.down):
            return
        self._last_plain = now
        w_, colon = self.words, "：" if self.lang == "zh" else ": "
        parts = [clock(snap.sim_seconds) + (f"  {self.t('down')}" if snap.down else "")]
        for w in snap.warnings:
            if w.get("state") in ("awaiting", "rejected"):
                parts.append(f"{w_.name(w)} {w_.state(w)}{colon}{self.t('nothing_sent')}")
                continue
            parts.append(f"{w_.name(w)} {w_.state(w)}{colon}{' '.join(w_.channels(w['channels']))} | "
                         f"{self.t('grids_col')} {w_.grids(w['summary'])} | {self.t('rungs_col')} {w['rungs']}")
        if snap.walking or snap.marked:
            parts.append(self.t("door", walking=snap.walking, marked=snap.marked))
        self.say("  ·  ".join(parts))

    def _table(self, snap: Snapshot) -> Group:
        w_ = self.words
        head = Text(f"{clock(snap.sim_seconds)}  ×{snap.speed:g}  {snap.api}")
        if snap.down:
            head.append(f"  {self.t('down')}", style="bold red")
        table = Table(expand=False, show_edge=False, pad_edge=False)
        for key in ("warning_col", "state_col", "sent_col", "grids_col", "rungs_col", "lists_col"):
            table.add_column(self.t(key), overflow="fold")
        for w in snap.warnings:
            table.add_row(Text(w_.name(w), style=LEVEL_STYLE.get(w["level"], "")), w_.state(w),
                          "\n".join(w_.channels(w["channels"])), w_.grids(w["summary"]), str(w["rungs"]),
                          str(w["lists"]))
        o = snap.outside
        foot = Text(self.t("outside", sms=o.get("sms", 0), calls=o.get("calls", 0), replies=o.get("replies", 0),
                           plays=o.get("plays", 0), webhooks=o.get("webhooks", 0)) + " · "
                    + self.t("door", walking=snap.walking, marked=snap.marked))
        return Group(head, table, foot)

    def finish(self, result: dict) -> None:
        self.stop()
        self.say("")
        for line in summary_lines(result, self.scenario, self.lang):
            self.say(line)


def summary_lines(result: dict, scenario: Scenario, lang: str) -> list[str]:
    """The closing summary of a demo run, in plain words."""
    t, view = T(lang), View(result, scenario, lang)
    lines = [t("summary_head")]
    w = view.warning
    if w is not None:
        c, tm = w["coverage"], w["timing"]
        if w["approval"]["delay_seconds"] is not None:
            lines.append("  " + t("summary_approval", took=duration(w["approval"]["delay_seconds"], lang)))
        lines.append("  " + t("summary_warning", what=view.title(), grids=c["grids"], confirmed=c["confirmed"],
                              covered=c["covered"], open=c["open"] + c.get("closed", 0),
                              p50=duration(tm["coverage_50_seconds"], lang),
                              p90=duration(tm["coverage_90_seconds"], lang),
                              p100=duration(tm["coverage_100_seconds"], lang)))
        nw = view.not_woken()
        if nw:
            left = sum(1 for r in nw if r["state"] not in ("confirmed", "covered"))
            lines.append("  " + (t("summary_not_woken_open", n=len(nw), left=left) if left
                                 else t("summary_not_woken", n=len(nw))))
        rungs = view.rung_counts()
        if rungs:
            sep = "，" if lang == "zh" else ", "
            lines.append("  " + t("summary_rungs", n=sum(rungs.values()),
                                  parts=sep.join(f"{k} {v}" for k, v in rungs.items())))
    totals = ("，" if lang == "zh" else ", ").join(
        f"{word(CHANNEL, c, lang)} {v.get('inside_delivered', 0)}/{v.get('outside_delivered', 0)}"
        for c, v in sorted(result["totals"].items()))
    lines.append("  " + t("summary_agree" if result["inside_outside_agree"] else "summary_disagree", totals=totals))
    v = result["verdict"]
    lines.append(t("verdict_ok") if v["ok"] else t("verdict_failed", reasons=reasons(v["reasons"], lang)))
    return lines
