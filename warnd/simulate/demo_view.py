"""What a county is shown of a demo run (pure: the scenario and the JSON report in, plain rows out).

`Places` names regions and says what an area covers ("河口村等 3 个村（12 个网格）");
`steps_of` says what each timeline entry issues (event, level, areas); `View`
turns the report into the rows the terminal summary, the CSV tables and the HTML
report share: per grid (with township, village and responsible person), the
coverage curve of the judged warning, the not-woken list, the rungs fired, and
what was issued when.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warnd.simulate import cap
from warnd.simulate.demo_text import EVENT_EN, HOW, LADDER, LEVEL, RUNG, T, word
from warnd.simulate.scenario import Scenario

SEVERITY_LEVEL = {v: k for k, v in cap.SEVERITY.items()}


class Places:
    def __init__(self, scenario: Scenario) -> None:
        d = scenario.directory
        self.regions = {r.code: r for r in d.regions}
        self.children: dict[str, list[str]] = {}
        for r in d.regions:
            if r.parent:
                self.children.setdefault(r.parent, []).append(r.code)
        self.responsible = {p.region: p for p in d.people if "grid_responsible" in p.roles}

    def name(self, code: str | None) -> str:
        return self.regions[code].name if code in self.regions else (code or "")

    def up(self, code: str, kind: str) -> str | None:
        """The region of `kind` that holds `code` (itself if it is one)."""
        while code in self.regions:
            if self.regions[code].kind == kind:
                return code
            code = self.regions[code].parent or ""
        return None

    def grids_under(self, codes: tuple[str, ...]) -> list[str]:
        out, todo = [], list(codes)
        while todo:
            code = todo.pop()
            kids = self.children.get(code, [])
            if not kids and code in self.regions and self.regions[code].kind == "grid":
                out.append(code)
            todo += kids
        return sorted(set(out))

    def describe(self, codes: tuple[str, ...], lang: str) -> str:
        t = T(lang)
        grids = self.grids_under(codes)
        if len(codes) == 1 and codes[0] in self.regions and self.regions[codes[0]].kind == "county":
            villages = {self.up(g, "village") for g in grids} - {None}
            townships = {self.up(g, "township") for g in grids} - {None}
            return t("all_county", name=self.name(codes[0]), townships=len(townships), villages=len(villages),
                     grids=len(grids))
        first = self.name(codes[0]) if codes else "—"
        if len(codes) > 1:
            return t("some_areas", first=first, n=len(codes), more=len(codes) - 1, grids=len(grids))
        return t("one_area", first=first, grids=len(grids))


@dataclass(frozen=True)
class StepInfo:
    name: str
    action: str  # issue / update / cancel
    event: str
    level: str
    areas: tuple[str, ...]
    previous_level: str | None = None  # an update or cancel: the level it changes


def steps_of(scenario: Scenario) -> dict[str, StepInfo]:
    out: dict[str, StepInfo] = {}
    chain: dict[str, str] = {}  # step → its chain's first step
    latest: dict[str, StepInfo] = {}  # chain → newest step
    for step in scenario.timeline:
        chain[step.name] = chain[step.target] if step.target else step.name
        before = latest.get(chain[step.name])
        source = step.source
        if source is None:  # a cancel of what it targets
            event, level, areas = (before.event, before.level, before.areas) if before else ("", "", ())
        elif source.template is not None:
            key, level = cap.split_template(source.template, source.level)
            event, areas = cap.EVENTS.get(key, (key,))[0], tuple(source.areas)
        else:
            try:
                info = cap.parse_cap(source.cap, scenario.base_dir).infos[0]
            except (cap.CapError, IndexError):
                event, level, areas = "", "", ()
            else:
                event, level = info.event, SEVERITY_LEVEL.get(info.severity, "")
                areas = tuple(v for a in info.areas for n, v in a.geocodes if n == "GB2260")
        info = StepInfo(step.name, step.action, event, level, areas, before.level if before else None)
        out[step.name] = latest[chain[step.name]] = info
    return out


def warning_name(event: str, level: str, lang: str) -> str:
    shown = event if lang == "zh" else EVENT_EN.get(event, event)
    return T(lang)("warning_name", event=shown or "", level=word(LEVEL, level, lang))


def reached_at(g: dict) -> float | None:
    times = [x for x in (g.get("confirmed_at_seconds"), g.get("covered_at_seconds")) if x is not None]
    return min(times) if times else None


def curve(grids: list[dict]) -> list[tuple[float, float]]:
    """(seconds after issue, % of grids confirmed or covered), a step at each grid reached."""
    total = len(grids)
    times = sorted(max(t, 0.0) for g in grids if g["state"] in ("confirmed", "covered")
                   and (t := reached_at(g)) is not None)
    points = [(0.0, 0.0)]
    for i, t in enumerate(times, 1):
        points.append((round(t, 1), round(100.0 * i / total, 1)))
    return points


def rung_words(rung: str, lang: str) -> str:
    """'red:notify@304.3' → '通知备用人和乡镇值班员'; an 'uncovered:' rung says the speaker was silent."""
    ladder, _, rest = rung.partition(":")
    action = rest.split("@", 1)[0]
    return (word(LADDER, ladder, lang) if ladder in LADDER else "") + word(RUNG, action, lang)


def how_words(g: dict, lang: str) -> str:
    """How the grid was reached, from the report's `how` ("confirmed by g0001-a via sms (late)")."""
    how = g.get("how") or ""
    if g["state"] == "covered":
        return word(HOW, "door", lang)
    if "carried" in how:
        return word(HOW, "carried", lang)
    channel = how.split(" via ")[-1].replace(" (late)", "") if " via " in how else ""
    late = ("（超时后）" if lang == "zh" else " (late)") if " (late)" in how else ""
    return (word(HOW, channel, lang) if channel else "") + late


class View:
    """The judged warning of a demo report, named and ready to show."""

    def __init__(self, result: dict, scenario: Scenario, lang: str) -> None:
        self.result, self.lang, self.places = result, lang, Places(scenario)
        self.steps = steps_of(scenario)
        self.start = datetime.fromisoformat(result["run"]["sim_start"])
        judged = [w for w in result["warnings"] if w["judged"] and w.get("coverage")]
        self.warning: dict[str, Any] | None = judged[-1] if judged else None

    def at(self, seconds: float | None, since_issue: bool = False) -> str:
        """Simulated seconds (from the start, or from the judged warning's issue) → a clock time HH:MM:SS."""
        if seconds is None:
            return "—"
        offset = (self.published() or 0.0) if since_issue else 0.0
        return (self.start + timedelta(seconds=offset + seconds)).astimezone().strftime("%H:%M:%S")

    def published(self) -> float | None:
        w = self.warning
        return None if w is None else (w["approval"]["published_at_seconds"] or w["issued_at_seconds"])

    def title(self) -> str:
        w = self.warning
        if w is None:
            return ""
        step = self.steps.get(w["name"])
        return warning_name(step.event if step else "", w["level"], self.lang)

    def grid_rows(self) -> list[dict]:
        p, lang = self.places, self.lang
        rows = []
        for g in (self.warning or {}).get("grids", []):
            person = p.responsible.get(g["grid"])
            rows.append({"township": p.name(p.up(g["grid"], "township")), "village": p.name(p.up(g["grid"], "village")),
                         "grid": g["grid"], "grid_name": p.name(g["grid"]),
                         "person": person.name if person else "", "phone": person.phone if person else "",
                         "state": g["state"], "how": how_words(g, lang),
                         "confirmed": g.get("confirmed_at_seconds"), "covered": g.get("covered_at_seconds"),
                         "not_woken": g.get("not_woken_at_seconds"),
                         "rungs": [rung_words(r, lang) for r in g.get("rungs_fired", [])],
                         "rung_times": [float(r.rsplit("@", 1)[1]) if "@" in r else None
                                        for r in g.get("rungs_fired", [])],
                         "door": g.get("door_to_door")})
        return rows

    def villages(self) -> list[dict]:
        """Per village: grids, confirmed, covered, open, not woken, and when its last grid was reached."""
        out: dict[str, dict] = {}
        for g, r in zip((self.warning or {}).get("grids", []), self.grid_rows()):
            v = out.setdefault(r["village"], {"township": r["township"], "village": r["village"], "grids": 0,
                                              "confirmed": 0, "covered": 0, "open": 0, "not_woken": 0,
                                              "last": None})
            v["grids"] += 1
            v[g["state"] if g["state"] in ("confirmed", "covered") else "open"] += 1
            v["not_woken"] += g.get("not_woken_at_seconds") is not None
            t = reached_at(g)
            if t is not None and g["state"] in ("confirmed", "covered"):
                v["last"] = t if v["last"] is None else max(v["last"], t)
        return list(out.values())  # in the directory's order

    def not_woken(self) -> list[dict]:
        return [r for r in self.grid_rows() if r["not_woken"] is not None]

    def curve(self) -> list[tuple[float, float]]:
        return curve((self.warning or {}).get("grids", []))

    def rung_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.grid_rows():
            for words in r["rungs"]:
                counts[words] = counts.get(words, 0) + 1
        return counts
