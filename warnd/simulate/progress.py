"""Live progress of a simulation: a `rich` live table on a terminal, plain lines otherwise.

The runner calls `begin`, then `update` with a `Snapshot` about every half second
and `event` for timeline events, and `finish` with the report. When stdout is not
a terminal (CI, a pipe) a line is printed every few seconds and on every event,
so a log shows how the run went without control characters.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from warnd.simulate.report import clock, coverage_lines

PLAIN_EVERY = 5.0  # real seconds between plain progress lines
LEVEL_STYLE = {"red": "bold red", "orange": "bold dark_orange", "yellow": "bold yellow", "blue": "bold blue"}


@dataclass
class Snapshot:
    sim_seconds: float
    speed: float
    api: str
    down: bool
    lives: int
    # name, id, level, msg_type, state, approvals, needed, channels {ch: {state: n}}, summary, rungs, lists
    warnings: list[dict]
    outside: dict[str, int] = field(default_factory=dict)
    walking: int = 0
    marked: int = 0


def sent_count(states: dict[str, int]) -> int:
    return sum(n for s, n in states.items() if s in ("sent", "delivered", "failed", "uncertain"))


def channel_text(channels: dict[str, dict[str, int]]) -> str:
    return "  ".join(f"{c} {states.get('delivered', 0)}/{sent_count(states)}/{sum(states.values())}"
                     for c, states in sorted(channels.items()))


def state_text(w: dict) -> str:
    """The warning's state; held for approval it shows how far: 待签发 1/2."""
    if w.get("state") == "awaiting":
        return f"待签发 awaiting {w.get('approvals', 0)}/{w.get('needed', 0)}"
    if w.get("state") == "rejected":
        return "已驳回 rejected"
    return str(w.get("state"))


def grid_text(summary: dict) -> str:
    if not summary or not summary.get("grids"):
        return "—"
    return (f"{summary['confirmed']}✓ {summary['covered']}⌂ {summary['open']} open"
            + (f" {summary['closed']} closed" if summary.get("closed") else "") + f" / {summary['grids']}")


class Display:
    def __init__(self, out: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.interactive = self.out.isatty() if interactive is None else interactive
        self.console = Console(file=self.out, force_terminal=self.interactive or None,
                               no_color=not self.interactive, highlight=False, soft_wrap=not self.interactive)
        self.live: Live | None = None
        self._last_plain = 0.0
        self._events: list[str] = []

    def say(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def begin(self, *, api: str, token: str, speed: float, workdir: Path, keep: bool) -> None:
        self.say(f"warnd API: {api}  (read with: curl -H 'Authorization: Bearer {token}' "
                 f"{api}/api/v1/warnings)")
        self.say(f"simulated time runs {speed:g}× real time; files in {workdir}"
                 + ("" if keep else " (removed at the end)"))
        if self.interactive:
            self.live = Live(Text("starting warnd …"), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def event(self, sim_seconds: float, text: str) -> None:
        self.say(f"{clock(sim_seconds)}  {text}")

    def update(self, snap: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self._table(snap))
            return
        now = time.monotonic()
        if now - self._last_plain < PLAIN_EVERY:
            return
        if not snap.warnings and not snap.down:
            return
        self._last_plain = now
        parts = [clock(snap.sim_seconds) + ("  warnd DOWN" if snap.down else "")]
        for w in snap.warnings:
            if w.get("state") in ("awaiting", "rejected"):
                parts.append(f"{w['name']} #{w['id']} {w['level']} {state_text(w)}: nothing sent / 未发送")
                continue
            parts.append(f"{w['name']} #{w['id']} {w['level']} {state_text(w)}: {channel_text(w['channels'])} | "
                         f"grids {grid_text(w['summary'])} | rungs {w['rungs']}")
        if snap.walking or snap.marked:
            parts.append(f"door to door: {snap.walking} walking, {snap.marked} households marked")
        self.say("  ·  ".join(parts))

    def _table(self, snap: Snapshot) -> Group:
        head = Text(f"{clock(snap.sim_seconds)}  ×{snap.speed:g}  {snap.api}  warnd life {snap.lives}")
        if snap.down:
            head.append("  warnd is DOWN (restarting)", style="bold red")
        table = Table(expand=False, show_edge=False, pad_edge=False)
        for title in ("warning", "level", "state", "delivered/sent/all", "grids ✓confirmed ⌂covered", "rungs",
                      "lists"):
            table.add_column(title, overflow="fold")
        for w in snap.warnings:
            table.add_row(f"{w['name']} #{w['id']}", Text(str(w["level"]), style=LEVEL_STYLE.get(w["level"], "")),
                          f"{w['msg_type']} {state_text(w)}", "\n".join(channel_text(w["channels"]).split("  ")),
                          grid_text(w["summary"]), str(w["rungs"]), str(w["lists"]))
        o = snap.outside
        foot = Text(f"outside: {o.get('sms', 0)} SMS, {o.get('calls', 0)} calls, {o.get('replies', 0)} replies, "
                    f"{o.get('plays', 0)} speaker plays, {o.get('webhooks', 0)} webhooks · door to door: "
                    f"{snap.walking} walking, {snap.marked} households marked")
        return Group(head, table, foot)

    def finish(self, result: dict) -> None:
        self.stop()
        self.say("")
        for line in coverage_lines(result):
            self.say(line)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
