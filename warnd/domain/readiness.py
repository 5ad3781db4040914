"""Readiness: can the routing and the escalation ladders reach anybody with the channels enabled?

Pure: a function of the configuration and the enabled channels (name → whom each reaches).
Only levels whose grids must confirm (`levels.<level>.confirm_minutes`) are checked: for them
somebody has to be told, asked, and asked again.

- The routing of such a level sends to no enabled channel that reaches people (phones, group
  chats, loudspeakers; webhooks reach other systems): always a *warning*. Forwarding to other
  systems only is a real set-up (a release centre's relay).
- Its ladder has notify or door-to-door rungs but none of their channels is enabled: the
  rungs fire and ask nobody. An *error* (`warnd serve` refuses to start) when the configuration
  wrote that ladder itself; a *warning* for the built-in ladders, so `warnd serve` with no
  configuration (webhooks only) still starts and says loudly what to enable.
- `allow_silent_ladders: true` (or a list of levels) says it is meant: reported as *allowed*.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from warnd.config import Config, RungConfig, _default_ladders
from warnd.domain.model import Level, Status
from warnd.domain.sending import Audience

REACHES_PEOPLE = frozenset({Audience.PERSON, Audience.GROUP, Audience.DEVICE, Audience.HOUSEHOLD})


@dataclass(frozen=True)
class Finding:
    code: str  # routing.reaches_nobody | ladder.asks_nobody
    severity: str  # error | warning | allowed
    level: str
    key: str  # the configuration key to change
    en: str
    zh: str

    def json(self) -> dict:
        return {"code": self.code, "severity": self.severity, "level": self.level, "key": self.key,
                "message_en": self.en, "message_zh": self.zh}

    def line(self) -> str:
        return f"{self.severity}: {self.key}: {self.en} / {self.zh}"


def check(config: Config, channels: Mapping[str, Audience]) -> tuple[Finding, ...]:
    """What cannot act, level by level, most urgent first."""
    out: list[Finding] = []
    for level in sorted(Level, reverse=True):
        if config.level_policy(level).confirm_minutes is None:
            continue
        routed = _routed(config, level)
        if not any(channels.get(name) in REACHES_PEOPLE for name in routed):
            out.append(_routing(config, level, routed, channels))
        rungs = config.ladder(level.label)
        used = _rung_channels(rungs)
        if used and not any(name in channels for name in used):
            out.append(_ladder(config, level, used))
    return tuple(out)


def ok(findings: tuple[Finding, ...]) -> bool:
    return not any(f.severity == "error" for f in findings)


def can_ask(config: Config, level: Level, channels: Mapping[str, Audience]) -> bool:
    """Whether a warning of this level can ask anyone to confirm: its routing or its ladder
    reaches people on an enabled channel (planning's note)."""
    routed = any(channels.get(name) in REACHES_PEOPLE for name in _routed(config, level))
    return routed or any(name in channels for name in _rung_channels(config.ladder(level.label)))


def summary(findings: tuple[Finding, ...]) -> dict:
    """As the API shows it (GET /readyz)."""
    return {"ok": ok(findings), "findings": [f.json() for f in findings]}


def _routed(config: Config, level: Level) -> list[str]:
    return sorted({name for rule in config.routing if rule.matches(level, Status.ACTUAL) for name in rule.channels})


def _rung_channels(rungs: list[RungConfig]) -> list[str]:
    used: list[str] = []
    for rung in rungs:
        if rung.action == "notify":
            used += rung.channels
        elif rung.action == "door_to_door":
            used += rung.list_channels + (rung.household_channels if rung.call_households else [])
    return sorted(set(used))


def _severity(config: Config, level: Level, own: bool) -> str:
    if config.silence_allowed(level):
        return "allowed"
    return "error" if own else "warning"


def _routing(config: Config, level: Level, routed: list[str], channels: Mapping[str, Audience]) -> Finding:
    enabled = [name for name in routed if name in channels]
    what = ", ".join(enabled) or "no enabled channel"
    return Finding(
        "routing.reaches_nobody", _severity(config, level, own=False), level.label, "routing",
        f"{level.label} warnings reach no person (routed to: {what}); their grids must confirm within "
        f"{config.level_policy(level).confirm_minutes:g} min but nobody is told: enable sms, voice, speaker "
        "or wecom and route the level to it",
        f"{level.zh}预警不会送达任何人（路由到：{what if enabled else '无已启用渠道'}）；网格须在 "
        f"{config.level_policy(level).confirm_minutes:g} 分钟内叫应，却无人收到：请启用 sms、voice、speaker "
        "或 wecom 并在 routing 中为该级别配置")


def _ladder(config: Config, level: Level, used: list[str]) -> Finding:
    own = config.ladder(level.label) != _default_ladders().get(level.label, [])
    key = f"ladders.{level.label}"
    return Finding(
        "ladder.asks_nobody", _severity(config, level, own), level.label, key,
        f"the {level.label} escalation ladder asks by {', '.join(used)}, none of them enabled: its rungs "
        f"would fire and ask nobody; enable one ({', '.join(f'{n}.enabled: true' for n in used)}), change "
        "the rungs' channels, or set allow_silent_ladders: true",
        f"{level.zh}升级梯队通过 {'、'.join(used)} 询问，但这些渠道均未启用：梯队触发时无人被询问；"
        f"请启用其一（{'、'.join(f'{n}.enabled: true' for n in used)}）、修改梯队的 channels，"
        "或设置 allow_silent_ladders: true")
