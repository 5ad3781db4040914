"""`warnd simulate`: warnd as a real child process, every simulator around it, a scenario's timeline.

One run:
  1. a work directory, a database (SQLite there, or --db), free loopback ports;
  2. the simulators, all at the scenario's speed: the Twilio simulator (in this
     process), the MQTT broker (embedded, or `config.mqtt.url`) with a speaker
     fleet, a webhook sink for the subscribers;
  3. the generated warnd configuration (simulators, routing, the scenario's
     overrides; without approvals in the scenario every department in the green
     channel), the schema, the directory (subscriber URLs pointed at the sink), one
     token per issuing department bound to its CAP senders, one account and
     personal token per approver;
  4. `warnd serve --simulation-clock …` as a child; the timeline POSTs CAP to its
     API, and each held entry's approvers approve or reject it at their moment;
     a crash is a real SIGKILL (at a time, or when an event is first seen) and a
     restart with the same config and clock `restart_after` simulated seconds after
     the kill (warnd's own start-up comes on top and is reported apart);
  5. progress polled from the API about every 0.5 s; door-to-door visitors;
  6. the end (see `_finished`), then the facts: warnd's view from the API, the
     outside view from the simulators → `report.build`.
Every wait is bounded; the child, the broker and the simulators stop on any exit.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from warnd.clock import ScaledClock, SystemClock
from warnd.config import AccountsConfig, load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.errors import WarndError
from warnd.domain.model import Alert, Level, MsgType
from warnd.ingest.capxml import alert_to_xml
from warnd.simulate import cap, report
from warnd.simulate.child import Child, ChildFailed
from warnd.simulate.progress import Display, Snapshot
from warnd.simulate.scenario import Decision, Scenario, ScenarioError, Step, misfit
from warnd.simulate.visitors import Visitors
from warnd.simulate.world import World

POLL_SECONDS = 0.5
STARTUP_SECONDS = 3.0  # real seconds from starting warnd to T+0 (it is usually ready in one or two)
COVERAGE_EVERY = 2  # polls: the coverage report costs warnd more than the delivery counts
API_SECONDS = 30.0  # a single API call
RETRY_SECONDS = 90.0  # real seconds a timeline POST waits for a warnd that is down
ALL_DELIVERIES = 1_000_000
EVENT_POLL_SECONDS = 0.1  # real seconds between looks for a crash's `at_event`
RUNG_POLL_SECONDS = 0.2  # … for first_rung (a coverage read per warning)
# Sweep intervals are real seconds (warnd's scheduler runs on the wall clock) while what they
# look for is on the engine's scaled clock: at speed N they run N× as often, so a lost callback
# or an uncertain send is settled within the same simulated time as at speed 1 (warnd's
# defaults), never more often than MIN_SWEEP_SECONDS. The `twilio.*_after_seconds` thresholds
# are compared with the engine's clock: already simulated, left as they are.
SWEEPS_AT_SPEED_1 = {"recover_seconds": 5.0, "expire_seconds": 5.0, "escalate_seconds": 0.5,
                     "speaker_seconds": 5.0, "reconcile_seconds": 60.0}
MIN_SWEEP_SECONDS = 0.2
OBSERVER = "warnd simulate"
DEFAULT_ROUTING = [
    {"levels": ["red", "orange", "yellow", "blue"], "channels": ["webhook"]},
    {"levels": ["red", "orange"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]},
    {"levels": ["red", "orange"], "channels": ["sms"], "roles": ["village_head", "township_duty"]},
    {"levels": ["red", "orange"], "channels": ["speaker"]},
    {"levels": ["yellow", "blue"], "channels": ["sms"], "roles": ["grid_responsible"]},
]


def scaled_sweeps(speed: float) -> dict[str, float]:
    """warnd's `sweeps` for a run at `speed`: its speed-1 intervals divided by the speed, bounded below."""
    return {key: round(max(value / speed, MIN_SWEEP_SECONDS), 3) for key, value in SWEEPS_AT_SPEED_1.items()}


class SimulationFailed(RuntimeError):
    """The run itself could not go on (warnd died, an API call was refused, a bound was hit)."""


@dataclass
class Options:
    speed: float | None = None
    report_path: Path | None = None
    db_url: str | None = None
    workdir: Path | None = None  # kept after the run; default: a temporary directory, removed


@dataclass
class Issued:
    step: Step
    warning_id: int
    alert: Alert
    at: float  # simulated seconds from the start
    chain: str  # the name of the chain's first step
    planned: list[int] = field(default_factory=list)  # delivery ids written by its plan
    previous: str | None = None  # the step it updates or cancels (the chain's newest when it was issued)
    awaiting: bool = False  # held by warnd for approval (待签发)
    rejected: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _took(w: dict) -> str:
    """Submitted → published, by warnd's own (simulated) clock: M:SS."""
    s = int(round((datetime.fromisoformat(w["published_at"]) - datetime.fromisoformat(w["created_at"]))
                  .total_seconds()))
    return f"{s // 60}:{s % 60:02d}"


def merged(base: dict, overrides: dict) -> dict:
    """Deep merge of mappings; lists and values in `overrides` replace."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


class Simulation:
    def __init__(self, scenario: Scenario, options: Options, display: Display) -> None:
        self.scenario, self.options, self.display = scenario, options, display
        self.speed = options.speed or scenario.speed
        self.run_tag = secrets.token_hex(3)
        self.issued: dict[str, Issued] = {}  # step name → what it issued
        self.latest: dict[str, str] = {}  # chain → name of its newest step
        self.events: list[dict] = []
        self.crash_facts: dict | None = None
        self.tokens: dict[str, str] = {}  # department (and OBSERVER) → its API token
        self.approvers: dict[str, tuple[str, str]] = {}  # approver's name → (account, personal token)
        self.last_poll: dict[int, dict] = {}  # warning id → {"warning":…, "coverage":…}
        self.timeline_done = False
        self.crash_done = scenario.crash is None
        self.crash_waiting = False  # an event crash still waiting for its event (does not hold the end)
        self.approvals_given = 0
        self.reconcile_wait = 0.0  # simulated seconds a lost callback may take to be looked up (see _watch)
        self._stops: list = []
        self._polls = 0
        self.issued_until = float("-inf")  # the time of the newest timeline entry issued
        self.progressed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []  # the timeline, the crash, and each entry's approvals
        self.deciding: list[asyncio.Task] = []  # each held entry's approvals (also in `tasks`)

    # -- the whole run --

    async def run(self) -> dict:
        temp = self.options.workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="warnd-simulate-")) if temp else self.options.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.child: Child | None = None
        # this process's own log (simulators, aiohttp) goes to a file, never over the progress display
        log = logging.FileHandler(self.workdir / "simulate.log", encoding="utf-8")
        log.setLevel(logging.WARNING)
        logging.getLogger().addHandler(log)
        try:
            return await self._run()
        finally:
            logging.getLogger().removeHandler(log)
            log.close()
            if self.child is not None:
                self.child.stop()
            for stop in reversed(self._stops):
                try:
                    await asyncio.wait_for(stop(), 15)
                except Exception:  # noqa: BLE001 - keep stopping the others
                    pass
            if temp:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def _run(self) -> dict:
        sc = self.scenario
        real_started = time.time()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_SECONDS))
        self._stops.append(self.session.close)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db_url = self.options.db_url or f"sqlite:///{self.workdir / 'warnd.db'}"
        config = await self._start_world(db_url)
        config_path = self.workdir / "warnd.yaml"
        config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        try:
            loaded = load_config(config_path)
        except WarndError as err:
            raise ScenarioError(sc.source, [(f"config.{p.field}", p.detail_en) for p in err.problems]) from None
        await self._prepare_database(db_url, loaded.accounts)
        # a callback lost at the last moment is looked up reconcile_after_seconds later, at the
        # next reconcile sweep (real seconds): the end waits that long for what is still `sent`
        self.reconcile_wait = loaded.twilio.reconcile_after_seconds + 2 * loaded.sweeps.reconcile_seconds * self.speed
        # T+0 is a moment just ahead: warnd starts before it, so the timeline starts on time.
        self.sim_start = (datetime.now(timezone.utc) + timedelta(seconds=STARTUP_SECONDS)).replace(microsecond=0)
        self.clock = ScaledClock(self.speed, self.sim_start.timestamp(), self.sim_start)
        self.world.twilio.scenario.epoch = self.clock.real_start  # fault windows count from T+0
        self.child = Child(config_path, self.clock.spec(), self.base, self.workdir)
        self.display.begin(api=self.base, token=self.tokens[OBSERVER], speed=self.speed, workdir=self.workdir,
                           keep=not (self.options.workdir is None))
        await self.child.start(self.session)
        self.visitors = None
        if sc.door_to_door is not None:
            d = sc.door_to_door
            self.visitors = Visitors(self.session, self.sleep_sim, self.now, self.child.ready,
                                     d.visit_after, d.start_after, d.mark, d.people)
            self._stops.append(self.visitors.stop)
        tasks = self.tasks
        tasks.append(asyncio.create_task(self._timeline(), name="timeline"))
        if sc.crash is not None:
            tasks.append(asyncio.create_task(self._crash(), name="crash"))
        try:
            ended = await self._watch(tasks)
            inside = await self._collect_inside()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        facts = self._facts(inside, ended, real_started)
        result = report.build(facts)
        self.display.finish(result)
        return result

    # -- simulators and configuration --

    async def _start_world(self, db_url: str) -> dict:
        """Start the simulators; return warnd's configuration pointing at them."""
        sc = self.scenario
        has_phones = any(p.phone for p in sc.directory.people)
        base = {
            "database_url": db_url, "host": "127.0.0.1", "port": self.port, "public_base_url": self.base,
            "node_id": f"simulate-{self.run_tag}", "log_level": "WARNING", "routing": DEFAULT_ROUTING,
            "sms": {"enabled": has_phones, "rate_per_second": 1000, "concurrency": 64},
            "voice": {"enabled": has_phones, "rate_per_second": 200, "concurrency": 64},
            "webhook": {"enabled": bool(sc.directory.subscribers)},
            "speaker": {"enabled": bool(sc.directory.speakers)},
            # Leases run on the engine's (scaled) clock, sends on real time: 60 real seconds.
            "dispatcher": {"poll_seconds": 0.2, "lease_seconds": 60.0 * self.speed},
            "sweeps": scaled_sweeps(self.speed),
        }
        config = merged(base, sc.config)
        if not sc.approves:
            config["approval"] = self._green_channel(config.get("approval") or {})
        speakers = bool(config["speaker"].get("enabled") and sc.directory.speakers)
        self.world = World(sc, self.speed, self.base)
        self._stops.append(self.world.stop)
        await self.world.start(dict(config.get("mqtt") or {}) if speakers else None)
        config["twilio"] = {**self.world.twilio_config(), **config.get("twilio", {})}
        config["webhook"]["allow_private_urls"] = True  # the sink is on loopback
        if self.world.broker is not None:
            url, protocol = self.world.broker
            # One MQTT session across warnd's lives: with the default (a random id per process) a
            # restarted node leaves its old persistent session in the shared ack subscription, and
            # the broker hands it every other played-ack.
            config["mqtt"] = {"client_id": f"warnd-{config['node_id']}", **config.get("mqtt", {}),
                              "url": url, "protocol": protocol}
        return config

    def _green_channel(self, approval: dict) -> dict:
        """Without approvals in the scenario, every issuing department publishes at once:
        the rehearsal is of dissemination only (warnd's own defaults would hold red and orange)."""
        departments = set(approval.get("green_channel") or ()) | {s.department for s in self.scenario.timeline}
        return {**approval, "green_channel": sorted(departments)}

    async def _prepare_database(self, db_url: str, accounts: AccountsConfig) -> None:
        """Schema, directory, tokens and approvers, through warnd's own stores (what `warnd directory
        import`, `warnd token create` and `warnd user create` do)."""
        from warnd.store.database import Database
        from warnd.store.directory import DirectoryStore
        from warnd.store.migrate import upgrade
        from warnd.store.tokens import TokenStore
        from warnd.store.users import UserStore
        sc = self.scenario
        await asyncio.to_thread(upgrade, db_url)
        data = replace(sc.directory, subscribers=tuple(replace(s, url=self.world.subscriber_url(s.id))
                                                       for s in sc.directory.subscribers))
        database = Database(db_url)
        try:
            await DirectoryStore(database, SystemClock(), allow_private_urls=True).import_data(data)
            tokens = TokenStore(database, SystemClock())
            for department, senders in self._senders().items():
                self.tokens[department] = await tokens.create(
                    Scope(department, ("*",), ("*",), Level.RED, Role.DEPARTMENT, senders=tuple(sorted(senders))),
                    actor="simulation")
            self.tokens[OBSERVER] = await tokens.create(Scope(OBSERVER, ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)),
                                                        actor="simulation")
            users = UserStore(database, SystemClock(), accounts)
            for i, name in enumerate(sc.approvers, 1):
                account = f"approver{i}"  # names are ASCII; the scenario's name is the display name
                department = next(s.department for s in sc.timeline if any(d.by == name for d in s.decisions))
                await users.create(account, Role.APPROVER, department, secrets.token_urlsafe(18),
                                   display_name=name, actor="simulation")
                self.approvers[name] = (account, await tokens.create(admin_scope("simulation"), actor="simulation",
                                                                     user_name=account))
        finally:
            await database.close()

    def _senders(self) -> dict[str, set[str]]:
        """Department → the CAP <sender>s its timeline entries issue as (its token is bound to them).

        A template issues as `cap.SENDER`, a CAP file as its own <sender>; an update or a
        cancel may carry any sender of the chain it changes (a plain cancel copies the
        newest version's), so the chain's senders are all allowed.
        """
        sent_as: dict[str, str] = {}  # step name → its message's sender
        chain_of: dict[str, str] = {}  # step name → the name of its chain's first step
        out: dict[str, set[str]] = {}
        for step in self.scenario.timeline:
            chain_of[step.name] = chain_of[step.target] if step.target else step.name
            source = step.source
            if source is not None:
                sent_as[step.name] = cap.SENDER if source.template is not None \
                    else cap.parse_cap(source.cap, self.scenario.base_dir).sender
            mine = out.setdefault(step.department, set())
            if step.target is None:
                mine.add(sent_as[step.name])
            else:
                mine |= {sender for name, sender in sent_as.items() if chain_of[name] == chain_of[step.name]}
        return out

    # -- time --

    def now(self) -> float:
        """Simulated seconds since the start."""
        return (time.time() - self.clock.real_start) * self.speed

    async def sleep_sim(self, simulated: float) -> None:
        await asyncio.sleep(max(simulated, 0.0) / self.speed)

    async def until_sim(self, at: float) -> None:
        await asyncio.sleep(max(self.clock.real_start + at / self.speed - time.time(), 0.0))

    # -- the API --

    async def api(self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None,
                  token: str | None = None, wait: bool = False) -> tuple[int, Any]:
        """One API call; with `wait`, a warnd that is down is waited for (bounded)."""
        headers = {"Authorization": f"Bearer {token or self.tokens[OBSERVER]}"}
        if content_type:
            headers["Content-Type"] = content_type
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_SECONDS
        while True:
            try:
                async with self.session.request(method, self.base + path, data=body, headers=headers) as r:
                    text = await r.text()
                    return r.status, (await r.json(content_type=None)) if text.strip() else None
            except (aiohttp.ClientError, TimeoutError):
                if not wait or loop.time() > deadline:
                    raise
                self._check_child()
                try:
                    async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                        await self.child.ready.wait()
                except TimeoutError:
                    raise SimulationFailed(f"warnd did not come back to answer {method} {path}") from None

    async def get(self, path: str, *, wait: bool = False) -> Any:
        """GET a JSON resource of the API; anything but 200 ends the run."""
        status, body = await self.api("GET", path, wait=wait)
        if status != 200:
            raise SimulationFailed(f"GET {path}: warnd answered {status}: {body}")
        return body

    def _check_child(self) -> None:
        if self.child is not None and self.child.died():
            raise SimulationFailed(f"warnd exited with {self.child.proc.returncode} on its own:\n"
                                   f"{self.child.log_tail()}")

    # -- the timeline --

    async def _timeline(self) -> None:
        for step in self.scenario.timeline:
            await self.until_sim(step.at)
            await self._issue(step)
            self.issued_until = step.at
            self.progressed.set()
        self.timeline_done = True
        self.issued_until = float("inf")
        self.progressed.set()

    def _alert(self, step: Step, at: datetime) -> tuple[Alert, str]:
        source, sc = step.source, self.scenario
        previous = self.issued[self.latest[self.issued[step.target].chain]] if step.target else None
        identifier = f"SIM-{self.run_tag}-{step.name}"
        if source is None:  # a plain cancel
            alert = cap.cancel_of(previous.alert, sent=at, identifier=identifier,
                                  references=(cap.reference(previous.alert),))
            return alert, previous.chain
        if source.template is not None:
            names = {r.code: r.name for r in sc.directory.regions}
            alert = cap.template_alert(source.template, level=source.level, areas=source.areas,
                                       area_desc="、".join(names.get(c, c) for c in source.areas),
                                       department=step.department, sent=at, expires_after=source.expires_after,
                                       identifier=identifier, headline=source.headline,
                                       instruction=source.instruction, status=source.status)
        else:
            alert = cap.parse_cap(source.cap, sc.base_dir)
            identifier = f"{alert.identifier}-{self.run_tag}"
        if previous is None:
            return cap.moved(alert, sent=at, identifier=identifier, msg_type=MsgType.ALERT, references=()), step.name
        msg_type = MsgType.UPDATE if step.action == "update" else MsgType.CANCEL
        return cap.moved(alert, sent=at, identifier=identifier, msg_type=msg_type,
                         references=(cap.reference(previous.alert),)), previous.chain

    async def _issue(self, step: Step) -> None:
        at = self.clock.now().replace(microsecond=0)
        alert, chain = self._alert(step, at)
        status, body = await self.api("POST", "/api/v1/warnings", body=alert_to_xml(alert).encode("utf-8"),
                                      content_type="application/cap+xml", token=self.tokens[step.department],
                                      wait=True)
        if status not in (200, 201):
            raise SimulationFailed(f"{step.where} ({step.action} {step.name}): warnd answered {status}: {body}")
        w = body["warning"]
        wid, level = w["id"], w.get("level")
        issued = Issued(step, wid, alert, self.now(), chain, previous=self.latest.get(chain) if step.target else None,
                        awaiting=w.get("state") == "awaiting")
        problem = misfit(step, int(w.get("approvals_needed") or 0), str(level))
        if problem:  # the scenario's check before the run saw it otherwise: say what warnd decided
            where, why = problem
            n = int(w.get("approvals_needed") or 0)
            raise ScenarioError(self.scenario.source, [(where, f"warnd wants {n} approval{'' if n == 1 else 's'} "
                                                               f"for warning {wid}: {why}")])
        self.issued[step.name] = issued
        self.latest[chain] = step.name
        if issued.awaiting:
            n = w["approvals_needed"]
            self.event(f"{step.action} {step.name}: warning {wid} ({level}) submitted, awaiting {n} "
                       f"approval{'' if n == 1 else 's'} / 待签发 0/{n}")
            self.deciding.append(asyncio.create_task(self._decide(issued), name=f"approve {step.name}"))
            self.tasks.append(self.deciding[-1])
            return
        await self._planned(issued)
        self.event(f"{step.action} {step.name}: warning {wid} ({level}, {len(issued.planned)} deliveries planned)")

    async def _planned(self, issued: Issued) -> dict:
        """The first wave: the deliveries its publication planned (judged by `all_sent_seconds`)."""
        full = await self.get(f"/api/v1/warnings/{issued.warning_id}?deliveries={ALL_DELIVERIES}", wait=True)
        issued.planned = [d["id"] for d in full.get("deliveries", [])]
        return full

    # -- approvals --

    async def _decide(self, issued: Issued) -> None:
        """The entry's approvers, each at their moment after its issue: 签发 …, then 驳回 if any."""
        step = issued.step
        for decision in step.decisions:
            await self.until_sim(issued.at + decision.after)
            answer = await self._decision(issued, decision)
            name = self.approvers[decision.by][0]
            if decision.reject:
                issued.awaiting, issued.rejected = False, True
                if self.latest.get(issued.chain) == step.name and issued.previous:
                    self.latest[issued.chain] = issued.previous  # later entries change what was published
                self.event(f"reject {step.name}: {decision.by} ({name}) rejected warning {issued.warning_id}: "
                           f"{decision.reason} / 驳回")
            elif answer["published"]:
                issued.awaiting = False
                self.approvals_given += 1
                w = await self._planned(issued)
                self.event(f"approve {step.name}: {decision.by} ({name}) {answer['approvals']}/{answer['needed']}; "
                           f"warning {issued.warning_id} published {_took(w)} after submission, "
                           f"{len(issued.planned)} deliveries planned / 已签发，发布")
            else:
                self.approvals_given += 1
                self.event(f"approve {step.name}: {decision.by} ({name}) {answer['approvals']}/{answer['needed']} "
                           f"/ 待签发 {answer['approvals']}/{answer['needed']}")

    async def _decision(self, issued: Issued, decision: Decision) -> dict:
        """POST approve or reject as the approver; what warnd answered ({state, approvals, needed, published})."""
        wid = issued.warning_id
        account, token = self.approvers[decision.by]
        verb = "reject" if decision.reject else "approve"
        body = json.dumps({"reason": decision.reason}, ensure_ascii=False).encode() if decision.reject else None
        status, answer = await self.api("POST", f"/api/v1/warnings/{wid}/{verb}", body=body, token=token, wait=True,
                                        content_type="application/json" if body else None)
        if status == 409 and (answer or {}).get("code") == "approval.already_approved":
            # warnd took it but its answer was lost (a crash mid-request): read what it recorded
            w = await self.get(f"/api/v1/warnings/{wid}?deliveries=0", wait=True)
            done = sum(1 for a in w.get("approvals", []) if a["decision"] == "approved")
            return {"warning_id": wid, "state": w["state"], "approvals": done, "needed": w["approvals_needed"],
                    "published": w["state"] in ("active", "expired", "cancelled")}
        if status != 200:
            raise SimulationFailed(f"{decision.where} ({verb} {issued.step.name} as {decision.by}, {account}): "
                                   f"warnd answered {status}: {answer}")
        return answer

    def event(self, text: str) -> None:
        self.events.append({"at_seconds": round(self.now(), 1), "event": text})
        self.display.event(self.now(), text)

    # -- the crash --

    async def _crash(self) -> None:
        crash = self.scenario.crash
        seen_at = None
        if crash.at_event is not None:
            seen_at = await self._wait_event(crash.at_event)
            if seen_at is None:  # the run settled (or ends) without it: no crash
                self.crash_facts = {"at_event": crash.at_event, "happened": False}
                self.event(f"crash event: {crash.at_event} never happened; warnd was not killed")
                self.crash_done = True
                return
            self.event(f"crash event: {crash.at_event} seen at T+{seen_at:.1f} s")
            await self.until_sim(seen_at + crash.after)
        else:
            await self.until_sim(crash.at)
            due = [s.at for s in self.scenario.timeline if s.at <= crash.at]
            while due and self.issued_until < max(due):  # what was due before the crash was accepted first
                self.progressed.clear()
                await asyncio.wait_for(self.progressed.wait(), RETRY_SECONDS)
        in_flight: set[int] = set()  # sends warnd had not settled just before the kill
        for issued in list(self.issued.values()):
            w = await self.get(f"/api/v1/warnings/{issued.warning_id}?deliveries={ALL_DELIVERIES}")
            in_flight |= {d["id"] for d in w.get("deliveries", []) if d["state"] in ("sending", "sent", "uncertain")}
        killed_at = self.now()
        await self.child.kill9()
        self.event(f"crash: warnd killed (kill -9) with {len(in_flight)} sends unsettled")
        await self.until_sim(killed_at + crash.restart_after)  # the outage counts from the kill itself
        restarted_at = self.now()
        real_restart = time.time()
        await self.child.start(self.session)
        ready_at, startup_real = self.now(), time.time() - real_restart
        recovered: dict[str, dict[str, int]] = {}
        for issued in list(self.issued.values()):
            w = await self.get(f"/api/v1/warnings/{issued.warning_id}?deliveries={ALL_DELIVERIES}")
            for d in w.get("deliveries", []):
                if d.get("last_code") in ("orphaned", "recovered"):  # `sending` at the kill
                    per = recovered.setdefault(d["channel"], {"uncertain": 0, "resent": 0})
                    per["uncertain" if d["last_code"] == "orphaned" else "resent"] += 1
                    in_flight.add(d["id"])
        self.crash_facts = {"at_event": crash.at_event, "event_seen_at_seconds": None if seen_at is None
                            else round(seen_at, 1), "at_seconds": round(killed_at, 1),
                            "restart_after": crash.restart_after, "restarted_at_seconds": round(restarted_at, 1),
                            "outage_seconds": round(restarted_at - killed_at, 1),
                            "ready_at_seconds": round(ready_at, 1),
                            "startup_seconds": round(ready_at - restarted_at, 1),
                            "startup_real_seconds": round(startup_real, 2),
                            "recovered": recovered, "in_flight": len(in_flight), "in_flight_ids": sorted(in_flight)}
        self.event(f"restart: warnd is back (life {self.child.lives}); recovered {recovered or 'nothing'}")
        self.crash_done = True

    async def _wait_event(self, event: str) -> float | None:
        """Simulated seconds when `event` (a scenario.CRASH_EVENTS key) was first seen; None when the
        run is done or at its end without it."""
        self.crash_waiting = True
        loop = asyncio.get_running_loop()
        next_rung_look = 0.0
        try:
            while self.now() < self.scenario.end_max:
                if event == "published":
                    seen = any(not i.awaiting and not i.rejected for i in self.issued.values())
                elif event == "approval":
                    seen = self.approvals_given > 0
                elif event == "first_sms_delivered":
                    seen = any(m.status == "delivered" for m in self.world.twilio.messages.values())
                elif event == "first_call_answered":
                    seen = any(c.start_time is not None for c in self.world.twilio.calls.values())
                else:  # first_rung: warnd's own rungs, read through its coverage API
                    seen = False
                    if loop.time() >= next_rung_look:
                        next_rung_look = loop.time() + RUNG_POLL_SECONDS
                        seen = await self._rung_fired()
                if seen:
                    return self.now()
                await asyncio.sleep(EVENT_POLL_SECONDS)
            return None
        finally:
            self.crash_waiting = False

    async def _rung_fired(self) -> bool:
        for issued in list(self.issued.values()):
            try:
                c = await self.get(f"/api/v1/warnings/{issued.warning_id}/coverage")
            except (aiohttp.ClientError, TimeoutError):
                return False
            if any(g.get("rungs_fired", 0) for g in c.get("grids", [])):
                return True
        return False

    def _counts(self, state: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for polled in self.last_poll.values():
            for channel, states in polled["warning"].get("deliveries_by_channel", {}).items():
                if states.get(state):
                    out[channel] = out.get(channel, 0) + states[state]
        return out

    # -- watching and ending --

    async def _watch(self, tasks: list[asyncio.Task]) -> str:
        sc = self.scenario
        settle_from: float | None = None
        next_poll = 0.0
        while True:
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()
            self._check_child()
            if self.visitors is not None:
                self.visitors.watch(list(self.world.twilio.messages.values()))
            loop = asyncio.get_running_loop()
            if loop.time() >= next_poll:
                next_poll = loop.time() + POLL_SECONDS
                await self._poll()
                now = self.now()
                if sc.end_at is not None:
                    if now >= sc.end_at:
                        return "end.at"
                elif now >= sc.end_max:
                    return "end.max"
                elif (self.timeline_done and (self.crash_done or self.crash_waiting) and self._decided()
                      and self._chains_done()):
                    settle_from = now if settle_from is None else settle_from
                    if self._quiet():
                        return "settled"
                    # what is still `sent` may wait on a lost callback: give reconciliation its time
                    if now >= settle_from + max(sc.settle, self.reconcile_wait if self._counts("sent") else 0):
                        return "end.settle"
                else:
                    settle_from = None
            await asyncio.sleep(0.1)

    async def _poll(self) -> None:
        self._polls += 1
        if not self.child.ready.is_set():
            self.display.update(self._snapshot(down=True))
            return
        try:
            for issued in list(self.issued.values()):
                wid = issued.warning_id
                w = await self.get(f"/api/v1/warnings/{wid}?deliveries=0")
                before = self.last_poll.get(wid)
                changed = before is None or w["state"] != before["warning"]["state"]  # e.g. just published
                ended = not changed and w["state"] != "active"  # an ended or held warning's grids do not change
                if changed or (not ended and self._polls % COVERAGE_EVERY == 0):
                    c = await self.get(f"/api/v1/warnings/{wid}/coverage")
                else:
                    c = before["coverage"]
                self.last_poll[wid] = {"warning": w, "coverage": c}
        except (aiohttp.ClientError, TimeoutError):
            self.display.update(self._snapshot(down=True))
            return
        self.display.update(self._snapshot(down=False))

    def _decided(self) -> bool:
        """Every approval and rejection the timeline names has been given."""
        return all(t.done() for t in self.deciding)

    def _final_versions(self) -> dict[str, Issued]:
        """Each chain's newest version that is neither a Cancel nor rejected: the one whose grids are judged."""
        out: dict[str, Issued] = {}
        for issued in self.issued.values():
            if issued.step.action != "cancel" and not issued.rejected:
                out[issued.chain] = issued
        return out

    def _chains_done(self) -> bool:
        for chain, issued in self._final_versions().items():
            latest = self.issued[self.latest[chain]]
            polled = self.last_poll.get(latest.warning_id)
            if polled is None:
                return False
            if latest.step.action == "cancel" or polled["warning"]["state"] in ("cancelled", "expired"):
                continue
            summary = (self.last_poll.get(issued.warning_id) or {}).get("coverage", {}).get("summary", {})
            if summary.get("open", 1) or summary.get("closed", 0):
                return False
        return True

    def _quiet(self) -> bool:
        return not any(self._counts(state) for state in ("pending", "sending", "sent", "uncertain"))

    def _snapshot(self, *, down: bool) -> Snapshot:
        rows = []
        for issued in self.issued.values():
            polled = self.last_poll.get(issued.warning_id)
            if polled is None:
                continue
            w, c = polled["warning"], polled["coverage"]
            rows.append({"name": issued.step.name, "id": issued.warning_id, "level": w.get("level"),
                         "msg_type": w.get("msg_type"), "state": w.get("state"),
                         "approvals": sum(1 for a in w.get("approvals", []) if a["decision"] == "approved"),
                         "needed": w.get("approvals_needed") or 0,
                         "channels": w.get("deliveries_by_channel", {}), "summary": c.get("summary", {}),
                         "rungs": sum(g.get("rungs_fired", 0) for g in c.get("grids", [])),
                         "lists": sum(1 for g in c.get("grids", []) if g.get("door_to_door"))})
        outside = self.world.counts()
        walks = self.visitors.walks.values() if self.visitors else ()
        return Snapshot(self.now(), self.speed, self.base, down, self.child.lives if self.child else 0, rows, outside,
                        walking=sum(1 for w in walks if w.outcome == "walking"),
                        marked=sum(w.marked for w in walks))

    # -- the facts --

    async def _collect_inside(self) -> list[dict]:
        self.read_at = time.time()
        out = []
        for name, issued in self.issued.items():
            wid = issued.warning_id
            w = await self.get(f"/api/v1/warnings/{wid}?deliveries={ALL_DELIVERIES}", wait=True)
            c = await self.get(f"/api/v1/warnings/{wid}/coverage", wait=True)
            lists = await self.get(f"/api/v1/warnings/{wid}/call-lists", wait=True)
            w.pop("cap_xml", None)
            out.append({"name": name, "action": issued.step.action, "chain": issued.chain,
                        "issued_at_seconds": round(issued.at, 1), "department": issued.step.department,
                        "planned": issued.planned, "warning": w, "coverage": c,
                        "call_lists": (lists or {}).get("items", []),
                        "final": self._final_versions().get(issued.chain) is issued})
        return out

    def _facts(self, inside: list[dict], ended: str, real_started: float) -> report.Facts:
        sc = self.scenario
        walks = [vars(w).copy() for w in (self.visitors.walks.values() if self.visitors else ())]
        if self.crash_facts is None and sc.crash is not None and sc.crash.at_event is not None:
            self.crash_facts = {"at_event": sc.crash.at_event, "happened": False}  # the run ended first
        return report.Facts(
            scenario={"file": sc.source, "description": sc.description, "seed": sc.seed, "speed": self.speed,
                      "fault_windows": [{"from": w.start, "until": w.until, **w.settings} for w in sc.fault_windows]},
            run={"api": self.base, "sim_start": self.sim_start.isoformat(), "ended_because": ended,
                 "simulated_seconds": round(self.now(), 1), "real_seconds": round(time.time() - real_started, 1),
                 "warnd_lives": self.child.lives, "read_at": self.read_at, "real_start": self.clock.real_start,
                 "startup_real_seconds": [round(t, 2) for t in self.child.startup_seconds]},
            warnings=inside, crash=self.crash_facts, events=self.events, walks=walks,
            approvers={account: name for name, (account, _) in self.approvers.items()}, **self.world.facts())


async def simulate(scenario: Scenario, options: Options, display: Display) -> dict:
    """Run one simulation; SIGTERM ends it like Ctrl-C (everything is stopped on the way out)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await Simulation(scenario, options, display).run()
    except ChildFailed as exc:
        raise SimulationFailed(str(exc)) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
