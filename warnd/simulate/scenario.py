"""Scenario files for `warnd simulate`: read, validate, and resolve into what the runner plays.

Validation has two layers, both reported with the path of the offending value:
the JSON Schema (`scenario.schema.json`, the shape) and the meaning (the
directory parses, people and speakers named in behaviours exist, timeline
references point to earlier entries, CAP files are accepted as the API would
accept them, config overrides are a valid warnd configuration, each entry's
approvers are exactly the approvals warnd will want for it).

Shares are resolved here, once, with the scenario's seeded RNG: the same file and
seed always give every person and speaker the same behaviour.
"""
from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.domain.levels import level_of
from warnd.domain.model import Level
from warnd.ingest.directory import DirectoryData, KnownIds, load_directory
from warnd.sim.speakers import Behaviour as SpeakerBehaviour
from warnd.sim.twilio_behaviour import Behaviour as PhoneBehaviour
from warnd.sim.twilio_behaviour import Faults, FaultWindow, Reply, parse_faults
from warnd.simulate import cap
from warnd.simulate.cap import LEVEL_ZH

DEFAULT_SPEED = 10.0
DEFAULT_DEPARTMENT = "县气象局"
DEFAULT_EXPIRES = 6 * 3600.0
DEFAULT_SETTLE = 300.0
DEFAULT_REASON = "演练：签发人驳回 / rehearsal: rejected by the approver"
PERSON_SPANS = ("reply_after", "answer_after", "press_after", "hangup_after", "deliver_after")
PASS_THROUGH = ("answer_after", "press", "press_after", "hangup_after", "deliver_after", "call", "sms",
                "phone_off")
# `crash: {at_event: …}`: what the runner watches for (see Simulation._event_seen)
CRASH_EVENTS = {
    "published": "a warning was published (accepted, or its last approval given)",
    "approval": "an approver approved (签发) an entry",
    "first_sms_delivered": "the Twilio simulator reported an SMS delivered",
    "first_call_answered": "a simulated person answered a call",
    "first_rung": "a rung of an escalation ladder fired (warnd's rungs, via the coverage API)",
}


class ScenarioError(Exception):
    """A scenario that cannot run: every problem names where it is (`timeline[2].at`)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {where or '(top)'}: {what}" for where, what in self.problems)


@dataclass(frozen=True)
class Source:
    """One CAP message to issue: a file, inline CAP JSON, or a template (see `cap`)."""

    cap: str | dict | None = None
    template: str | None = None
    level: str | None = None
    areas: tuple[str, ...] = ()
    expires_after: float = DEFAULT_EXPIRES
    headline: str | None = None
    instruction: str | None = None
    status: str = "Actual"


@dataclass(frozen=True)
class Decision:
    """One approver's 签发 (or 驳回) of a timeline entry, `after` simulated seconds after its issue."""

    by: str  # the approver's name as the scenario writes it (the account's display name)
    after: float
    reject: bool = False
    reason: str = ""
    where: str = ""  # timeline[i].approve[j] / timeline[i].reject, for messages


@dataclass(frozen=True)
class Step:
    at: float  # simulated seconds from the start
    action: str  # issue / update / cancel
    name: str
    department: str
    source: Source | None  # None: a cancel built from what it cancels
    target: str | None = None  # update / cancel: the name of an earlier step
    where: str = ""  # timeline[i], for messages
    approve: tuple[Decision, ...] = ()  # in the order they happen
    reject: Decision | None = None
    needed: int = 0  # approvals warnd will want for it (config.approval); 0: published at once

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Approvals, then the rejection: what the runner does, in order (a tie goes to the approval)."""
        return self.approve + ((self.reject,) if self.reject else ())


@dataclass(frozen=True)
class Crash:
    at: float | None  # simulated seconds from the start; None: at `at_event`
    restart_after: float  # simulated seconds from the kill to the restart command (warnd's start-up not counted)
    at_event: str | None = None  # one of CRASH_EVENTS: killed when the runner first sees it …
    after: float = 0.0  # … this many simulated seconds later


@dataclass(frozen=True)
class DoorToDoor:
    visit_after: float = 60.0  # per household
    start_after: float = 120.0  # from the list's SMS to the first door
    mark: str = "notified"  # an outcome of warnd.domain.households: notified, moved, not_home, refused, needs_help
    people: int = 1  # moved: each household's head count


@dataclass(frozen=True)
class SubscriberBehaviour:
    down_from: float = 0.0
    down_for: float = 0.0
    latency: float = 0.0
    fail_rate: float = 0.0
    status: int | None = None


@dataclass(frozen=True)
class Scenario:
    source: str  # the file's name, for messages
    base_dir: Path
    seed: int
    speed: float
    department: str
    directory: DirectoryData
    config: dict[str, Any]
    phones: dict[str, PhoneBehaviour]  # E.164 → what the simulator plays for it
    person_groups: dict[str, str]  # person id → the behaviour it got ("default", "groups[0]", its id)
    speakers: dict[str, SpeakerBehaviour]
    speaker_default: SpeakerBehaviour
    multiplexed: bool | None
    faults: Faults
    subscribers: dict[str, SubscriberBehaviour]
    door_to_door: DoorToDoor | None
    timeline: tuple[Step, ...]
    crash: Crash | None
    end_at: float | None
    end_max: float
    settle: float
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    fault_windows: tuple[FaultWindow, ...] = ()  # provider faults in force for a while (from T+0)

    @property
    def approves(self) -> bool:
        """Does this scenario rehearse approval? Without it every department is in the green channel."""
        return any(s.decisions for s in self.timeline)

    @property
    def approvers(self) -> tuple[str, ...]:
        """Every approver's name, once, in the order they first appear in the timeline."""
        return tuple(dict.fromkeys(d.by for s in self.timeline for d in s.decisions))


def seconds(value: float | int | str) -> float:
    """90, "01:30" or "00:01:30" → 90.0."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for part in value.split(":"):
        total = total * 60 + int(part)
    return total


@cache
def schema() -> dict:
    return json.loads(resources.files("warnd.simulate").joinpath("scenario.schema.json").read_text("utf-8"))


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def schema_problems(data: Any) -> list[tuple[str, str]]:
    validator = Draft202012Validator(schema())
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        deepest = err
        # oneOf: when an alternative got further into the value, its complaint says the most
        while deepest.context and max(len(e.absolute_path) for e in deepest.context) > len(deepest.absolute_path):
            deepest = max(deepest.context, key=lambda e: len(e.absolute_path))
        problems.append((_path(deepest.absolute_path) or _path(err.absolute_path), _message(deepest)))
    return problems


def _message(err: Any) -> str:
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        return err.message.replace("were unexpected", "are not known").replace("was unexpected", "is not known")
    if err.validator == "minProperties" and isinstance(err.schema, dict) and err.schema.get("description"):
        return f"{err.instance!r} is incomplete; expected: {err.schema['description']}"
    if err.validator in ("oneOf", "anyOf"):
        expected = err.schema.get("description") if isinstance(err.schema, dict) else None
        if not expected:
            expected = " or ".join(sorted({e.message.split(" is ", 1)[-1] for e in err.context}))
        return f"{err.instance!r} is not valid here; expected: {expected}"
    return err.message


def load(path: str | Path) -> Scenario:
    """Read a scenario file; raise ScenarioError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [("", f"cannot read the file: {exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ScenarioError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return from_data(data, base_dir=path.resolve().parent, source=str(path))


def from_data(data: Any, *, base_dir: Path, source: str) -> Scenario:
    problems = schema_problems(data)
    if problems:
        raise ScenarioError(source, problems)
    return _Resolver(data, base_dir, source).resolve()


class _Resolver:
    def __init__(self, data: dict, base_dir: Path, source: str) -> None:
        self.data, self.base_dir, self.source = data, base_dir, source
        self.problems: list[tuple[str, str]] = []
        self.seed = int(data.get("seed", 1))
        self.rng = random.Random(self.seed)

    def fail(self, where: str, what: str) -> None:
        self.problems.append((where, what))

    def resolve(self) -> Scenario:
        d = self.data
        directory = self.directory(d["directory"])
        behaviours = d.get("behaviours") or {}
        phones, groups = self.people(behaviours.get("people") or {}, directory)
        speakers, speaker_default, multiplexed = self.speakers(behaviours.get("speakers") or {}, directory)
        subscribers = self.subscribers(behaviours.get("subscribers") or {}, directory)
        faults, windows = self.faults(behaviours.get("provider") or {})
        config = self.config(d.get("config") or {})
        department = d.get("department", DEFAULT_DEPARTMENT)
        timeline = self.timeline(d["timeline"], department, directory)
        if config is not None and any(s.decisions for s in timeline):
            timeline = tuple(self.approval(s, config) for s in timeline)
        crash = self.crash(d["crash"]) if "crash" in d else None
        door = d.get("door_to_door", {})
        door_to_door = None if door is False else DoorToDoor(**{k: (v if k in ("mark", "people") else seconds(v))
                                                                for k, v in door.items()})
        end = d.get("end") or {}
        last = max((s.at for s in timeline), default=0.0)
        end_at = seconds(end["at"]) if "at" in end else None
        end_max = seconds(end["max"]) if "max" in end else (end_at if end_at is not None else last + 3600.0)
        if end_max < last:
            self.fail("end.max", f"ends at {end_max:g} s, before the last timeline entry at {last:g} s")
        for step in timeline:
            for decision in step.decisions:
                if step.at + decision.after > end_max:
                    self.fail(f"{decision.where}.after", f"at {step.at + decision.after:g} s, after the end of "
                              f"the run ({end_max:g} s) / 晚于演练结束时间")
        if self.problems:
            raise ScenarioError(self.source, self.problems)
        return Scenario(self.source, self.base_dir, self.seed, float(d.get("speed", DEFAULT_SPEED)), department,
                        directory, d.get("config") or {}, phones, groups, speakers, speaker_default, multiplexed,
                        faults, subscribers, door_to_door, timeline, crash, end_at, end_max,
                        float(end.get("settle", DEFAULT_SETTLE)), d.get("description", ""), d, windows)

    def crash(self, spec: dict) -> Crash:
        restart_after = float(spec.get("restart_after", 5.0))
        if "at_event" in spec:
            event = spec["at_event"]
            if event not in CRASH_EVENTS:  # the schema's enum says so too; this names the choices
                self.fail("crash.at_event", f"unknown event {event!r}; events are {', '.join(CRASH_EVENTS)}")
            return Crash(None, restart_after, event, seconds(spec.get("after", 0)))
        return Crash(seconds(spec["at"]), restart_after)

    # -- the directory --

    def directory(self, spec: Any) -> DirectoryData:
        if isinstance(spec, dict) and "generate" in spec:
            from warnd.simulate.demo import generate_directory
            spec = generate_directory(**spec["generate"])
        try:
            if isinstance(spec, list):
                paths = []
                for i, name in enumerate(spec):
                    p = (self.base_dir / name).resolve()
                    if not p.is_file():
                        self.fail(f"directory[{i}]", f"no such file: {p}")
                    paths.append(p)
                if self.problems:
                    return DirectoryData()
                return load_directory(paths, known=KnownIds())
            with tempfile.TemporaryDirectory(prefix="warnd-scenario-") as tmp:
                inline = Path(tmp) / "directory.yaml"
                inline.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
                return load_directory([inline], known=KnownIds())
        except WarndError as err:
            for p in err.problems:
                self.fail("directory", f"{p.field}: {p.detail_en}")
            return DirectoryData()

    # -- behaviours --

    def people(self, spec: dict, directory: DirectoryData) -> tuple[dict[str, PhoneBehaviour], dict[str, str]]:
        people = [p for p in directory.people if p.phone]
        default = _plain(spec.get("default", {}))
        chosen: dict[str, tuple[str, dict]] = {p.id: ("default", default) for p in people}
        for i, group in enumerate(spec.get("groups") or []):
            roles = set(group.get("roles") or ())
            matching = [p for p in people if not roles or roles & set(p.roles)]
            free = [p for p in matching if chosen[p.id][0] == "default"]
            n = round(group["share"] * len(matching))
            if n > len(free):
                self.fail(f"behaviours.people.groups[{i}].share",
                          f"{n} people wanted but only {len(free)} of {len(matching)} are not in an earlier group")
                n = len(free)
            settings = _plain({k: v for k, v in group.items() if k not in ("share", "roles")})
            for p in self.rng.sample(free, n):
                chosen[p.id] = (f"groups[{i}]", {**default, **settings})
        by_phone = {p.phone: p for p in people}
        by_id = {p.id: p for p in people}
        for key, settings in spec.items():
            if key in ("default", "groups"):
                continue
            person = by_id.get(key) or by_phone.get(key)
            if person is None:
                self.fail(f"behaviours.people.{key}", "no person with this id or phone (with a phone) in the directory")
                continue
            chosen[person.id] = (key, {**default, **_plain(settings)})
        phones: dict[str, PhoneBehaviour] = {}
        for p in people:
            label, settings = chosen[p.id]
            try:
                phones[p.phone] = self.phone(settings)
            except ValueError as exc:
                self.fail(f"behaviours.people.{label}", str(exc))
        return phones, {pid: label for pid, (label, _) in chosen.items()}

    def span(self, value: Any) -> float:
        if isinstance(value, list):
            low, high = sorted(map(float, value))
            return round(self.rng.uniform(low, high), 1)
        return float(value)

    def phone(self, s: dict) -> PhoneBehaviour:
        """A person's behaviour in the scenario's words → the Twilio simulator's per-number behaviour."""
        values: dict[str, Any] = {}
        for key in PASS_THROUGH:
            if key in s and s[key] is not None:
                values[key] = self.span(s[key]) if key in PERSON_SPANS else s[key]
        for kind in ("call", "sms"):  # {attempts: [no-answer, answer]}: the n-th call or SMS, the n-th outcome
            if isinstance(values.get(kind), dict):
                values[f"{kind}_attempts"] = tuple(values.pop(kind)["attempts"])
        if "press" in s and s["press"] is None:
            values["press"] = None
        if s.get("reply_after") is not None and not s.get("never"):
            values["reply"] = Reply(after=self.span(s["reply_after"]), text=str(s.get("text", "1")))
        if s.get("never"):
            values["call"] = "no-answer"
            values.pop("call_attempts", None)
            values.pop("press", None)
        if s.get("invalid"):
            values["sms"] = values["call"] = "invalid"
        return PhoneBehaviour(**values)

    def speakers(self, spec: dict, directory: DirectoryData
                 ) -> tuple[dict[str, SpeakerBehaviour], SpeakerBehaviour, bool | None]:
        ids = [s.id for s in directory.speakers]
        default = spec.get("default", {})
        chosen: dict[str, dict] = {}
        for i, group in enumerate(spec.get("groups") or []):
            free = [sid for sid in ids if sid not in chosen]
            n = round(group["share"] * len(ids))
            if n > len(free):
                self.fail(f"behaviours.speakers.groups[{i}].share",
                          f"{n} speakers wanted but only {len(free)} are not in an earlier group")
                n = len(free)
            settings = {k: v for k, v in group.items() if k != "share"}
            for sid in self.rng.sample(free, n):
                chosen[sid] = {**default, **settings}
        known = set(ids)
        for key, settings in spec.items():
            if key in ("default", "groups", "multiplexed"):
                continue
            if key not in known:
                self.fail(f"behaviours.speakers.{key}", "no speaker with this id in the directory")
                continue
            chosen[key] = {**default, **settings}
        return ({sid: SpeakerBehaviour.from_dict(s) for sid, s in chosen.items()},
                SpeakerBehaviour.from_dict(default), spec.get("multiplexed"))

    def subscribers(self, spec: dict, directory: DirectoryData) -> dict[str, SubscriberBehaviour]:
        known = {s.id for s in directory.subscribers}
        out = {}
        for key, settings in spec.items():
            if key not in known:
                self.fail(f"behaviours.subscribers.{key}", "no subscriber with this id in the directory")
                continue
            values = dict(settings)
            if "down_from" in values:
                values["down_from"] = seconds(values["down_from"])
            out[key] = SubscriberBehaviour(**values)
        return out

    def faults(self, spec: dict | list) -> tuple[Faults, tuple[FaultWindow, ...]]:
        """`behaviours.provider`: constant settings, optionally `windows: […]`, or a list of windows;
        a window's `from` and `until` are times like any other (seconds or "MM:SS")."""
        windows = spec if isinstance(spec, list) else spec.get("windows")
        if windows:
            where = "behaviours.provider" + ("" if isinstance(spec, list) else ".windows")
            windows = [{**w, **{k: seconds(w[k]) for k in ("from", "until") if k in w}} for w in windows]
            for i, w in enumerate(windows):
                if w["until"] <= w["from"]:
                    self.fail(f"{where}[{i}].until", f"{w['until']:g} s is not after from ({w['from']:g} s)")
            if self.problems:
                return Faults(), ()
            spec = windows if isinstance(spec, list) else {**spec, "windows": windows}
        try:
            faults, parsed = parse_faults(spec)
        except ValueError as exc:
            self.fail("behaviours.provider", str(exc))
            return Faults(), ()
        return faults, parsed or ()

    def config(self, overrides: dict) -> Config | None:
        try:
            return Config.model_validate(overrides)
        except ValidationError as exc:
            for e in exc.errors():
                self.fail("config." + ".".join(str(p) for p in e["loc"]), e["msg"])
            return None

    # -- the timeline --

    def timeline(self, entries: list[dict], department: str, directory: DirectoryData) -> tuple[Step, ...]:
        top = tuple(r.code for r in directory.regions if r.parent is None)
        steps: list[Step] = []
        names: dict[str, float] = {}
        for i, e in enumerate(entries):
            where = f"timeline[{i}]"
            at = seconds(e["at"])
            action = next(a for a in ("issue", "update", "cancel") if a in e)
            name = e.get("name") or f"step{i + 1}"
            if name in names:
                self.fail(f"{where}.name", f"{name!r} is already the name of an earlier entry")
            target = None
            if action != "issue":
                target = e[action]
                if target not in names:
                    self.fail(f"{where}.{action}", f"no earlier entry is named {target!r}")
                elif names[target] > at:
                    self.fail(f"{where}.at", f"comes before {target!r} (at {names[target]:g} s), which it refers to")
            elif "with" in e:
                self.fail(f"{where}.with", "only update and cancel take `with`; put the message in `issue`")
            raw = e.get("issue") if action == "issue" else e.get("with")
            if action == "update" and raw is None:
                self.fail(f"{where}.with", "an update needs the new message: with: {cap: …} or {template: …}")
            source = self.message(raw, f"{where}.{'issue' if action == 'issue' else 'with'}", top) if raw else None
            names[name] = at
            approve, reject = self.decisions(e, where)
            steps.append(Step(at, action, name, e.get("as", department), source, target, where, approve, reject))
        return tuple(sorted(steps, key=lambda s: s.at))

    def decisions(self, e: dict, where: str) -> tuple[tuple[Decision, ...], Decision | None]:
        """`approve: [{by, after}, …]` and `reject: {by, after, reason}` of one entry, in time order."""
        approve, seen = [], set()
        for j, a in enumerate(e.get("approve") or ()):
            if a["by"] in seen:
                self.fail(f"{where}.approve[{j}].by", f"{a['by']} already approves this entry: each approver "
                          "counts once / 同一签发人只计一次")
            seen.add(a["by"])
            approve.append(Decision(a["by"], seconds(a["after"]), where=f"{where}.approve[{j}]"))
        approve.sort(key=lambda a: a.after)
        reject = None
        if "reject" in e:
            r = e["reject"]
            reject = Decision(r["by"], seconds(r["after"]), True, r.get("reason") or DEFAULT_REASON, f"{where}.reject")
            later = [a for a in approve if a.after > reject.after]
            if later:
                self.fail(f"{where}.reject.after", f"comes before {later[0].where} (after {later[0].after:g} s): "
                          "nothing is left to approve once the warning is rejected / 驳回之后不能再签发")
        return tuple(approve), reject

    def approval(self, step: Step, config: Config) -> Step:
        """How many approvals warnd will want for this entry, checked against the approvers it names."""
        level = self.level(step, config)
        if level is None:
            return step
        needed = config.approval.needed(step.department, level, step.action == "cancel")
        problem = misfit(step, needed, level.label)
        if problem:
            self.fail(*problem)
        return replace(step, needed=needed)

    def level(self, step: Step, config: Config) -> Level | None:
        """The level warnd will give the entry's message (a cancel's does not matter); None: unreadable."""
        source = step.source
        if source is None or step.action == "cancel":
            return Level.RED
        if source.template is not None:
            return Level.parse(cap.split_template(source.template, source.level)[1])
        try:
            return level_of(cap.parse_cap(source.cap, self.base_dir), config)
        except cap.CapError:
            return None  # already reported

    def message(self, raw: dict, where: str, top: tuple[str, ...]) -> Source:
        values = dict(raw)
        if "expires_after" in values:
            values["expires_after"] = seconds(values["expires_after"])
        values["areas"] = tuple(values.get("areas") or (() if "cap" in values else top))
        source = Source(**values)
        if source.cap is not None:
            try:
                cap.parse_cap(source.cap, self.base_dir)
            except cap.CapError as exc:
                self.fail(f"{where}.cap", str(exc))
        elif source.template is not None:
            event, _ = cap.split_template(source.template, source.level)
            if event not in cap.EVENTS:
                self.fail(f"{where}.template", f"unknown template {source.template!r}; templates are "
                          f"{', '.join(sorted(cap.EVENTS))}, optionally prefixed by a level (red-rainstorm)")
        return source


def _plain(settings: dict) -> dict:
    """A person's settings with `reply: {after, text}` as `reply_after` and `text`, so that a
    group's or a person's settings override the default's key by key, whichever form each uses."""
    reply = settings.get("reply")
    if not isinstance(reply, dict):
        return settings
    out = {k: v for k, v in settings.items() if k != "reply"}
    out["reply_after"] = reply.get("after", 0)
    if "text" in reply:
        out["text"] = reply["text"]
    return out


def misfit(step: Step, needed: int, level: str) -> tuple[str, str] | None:
    """(where, why) the decisions a step names cannot happen as written when warnd wants
    `needed` approvals for it; None when they fit. Used before the run and, as a last
    check, when warnd has answered the submission."""
    kind = "cancel" if step.action == "cancel" else f"{level} {step.action}"
    rule = "config.approval (by default red needs 2, orange 1, a cancel none)"
    what = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} of {step.department}"
    n, named = needed, len(step.approve)
    zh = "解除信息" if step.action == "cancel" else f"{LEVEL_ZH.get(level, '')}预警"
    if n == 0 and step.decisions:
        return (f"{step.where}.{'approve' if step.approve else 'reject'}",
                f"{what} needs no approval under config.approval: it is published when submitted; "
                "remove approve/reject / 该预警无需签发，提交即发布")
    if n and not step.decisions:
        return (step.where, f"{what} needs {_approvals(n)} under {rule} and names none: add "
                f"approve: [{{by: NAME, after: TIME}}, …] / 该{zh}需 {n} 人签发，未指定签发人")
    if step.reject is None and named < n:
        return (f"{step.where}.approve", f"{what} needs {_approvals(n)} under {rule}; {named} named / "
                f"需 {n} 人签发，只指定了 {named} 人")
    if step.reject is None and named > n:
        return (step.approve[n].where, f"{what} is published by its approval number {n} "
                f"({step.approve[n - 1].by}); this one would find nothing to approve / 第 {n} 人签发后即发布，无需再签发")
    if step.reject is not None and named >= n:
        return (step.reject.where, f"{what} is published by its approval number {n} ({step.approve[n - 1].by}) "
                "before this rejection / 签发后已发布，不能再驳回")
    return None


def _approvals(n: int) -> str:
    return f"{n} approval" + ("" if n == 1 else "s")


def packaged(name: str) -> Path:
    """A scenario shipped with warnd (warnd/simulate/scenarios/NAME)."""
    return Path(str(resources.files("warnd.simulate").joinpath("scenarios", name)))

