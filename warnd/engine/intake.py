"""Intake: validate, authorise, resolve areas, plan and store a warning; approve or reject a held one.

`check` is the part of a submission before anything is stored (parse, validate,
authorise, resolve the area, count the approvals needed); `submit` and `preview`
(the console's dry run, which stores nothing) both start with it, so they cannot
drift apart.

Directory reads happen before the write transaction (they are the slow part
and need no lock); the plan itself is made inside it, because it must see the
earlier versions' deliveries exactly as they are when this version retires them.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain import geo
from warnd.domain.authority import (Right, Scope, approval_rule, authorize_issuer, authorize_references,
                                    authorize_regions, covers, require)
from warnd.domain.directory import finest, with_ancestors
from warnd.domain.errors import WarndError, error
from warnd.domain.levels import level_of
from warnd.domain.model import Alert, Level, MsgType, ParsedAlert
from warnd.domain.planning import Plan, PlanInput, Prior, plan
from warnd.engine.alerts import AlertCache
from warnd.engine.metrics import Metrics
from warnd.ingest.validate import parse_warning
from warnd.domain.sending import Audience
from warnd.store.directory import DirectoryStore
from warnd.store.warnings import Decided, Submitted, WarningStore
from warnd_channels.registry import audiences

log = logging.getLogger("warnd.intake")


@dataclass(frozen=True)
class Targets:
    codes: tuple[str, ...]  # what the areas name (geocodes and regions touched by shapes)
    regions: dict  # code -> Region: the targets and everything below them


@dataclass(frozen=True)
class Checked:
    """A submission that passed every check before storage: what submit would store."""

    parsed: ParsedAlert
    level: Level
    targets: Targets
    needed: int  # approvals before it is planned and sent (0: publishes at once)


@dataclass(frozen=True)
class Preview:
    """A dry run: the checked submission and the plan publication would make now. Nothing stored."""

    checked: Checked
    plan: Plan


class Intake:
    def __init__(self, config: Config, clock: Clock, directory: DirectoryStore, warnings: WarningStore,
                 alerts: AlertCache, metrics: Metrics, enabled_channels: frozenset[str], on_commit) -> None:  # noqa: ANN001
        self.config = config
        self.clock = clock
        self.directory = directory
        self.warnings = warnings
        self.alerts = alerts
        self.metrics = metrics
        self.enabled_channels = enabled_channels
        self.audiences = audiences(enabled_channels)  # whom each reaches, for the planner
        self.on_commit = on_commit  # wakes the dispatcher

    async def check(self, body: bytes, content_type: str, scope: Scope, *, record: bool = True) -> Checked:
        """Parse, validate, authorise and resolve, as a submission is; store nothing.

        With `record` a refusal for authority is audited (a submission's is); a dry run
        (`record=False`) leaves no trace in the database."""
        return await self._checked(parse_warning(body, content_type, self.config), scope, record=record)

    async def _checked(self, parsed: ParsedAlert, scope: Scope, *, record: bool) -> Checked:
        alert = parsed.alert
        level = level_of(alert, self.config)
        targets = await self.authorize(scope, alert, level, record=record)
        return Checked(parsed, level, targets, self.approvals_needed(scope.department, alert.msg_type, level))

    def approvals_needed(self, department: str, msg_type: MsgType, level: Level) -> int:
        """Approvals a message of this department, type and level waits for (0: published at once)."""
        if msg_type in (MsgType.ACK, MsgType.ERROR):
            return 0
        return self.config.approval.needed(department, level, msg_type is MsgType.CANCEL)

    async def preview(self, body: bytes, content_type: str, scope: Scope) -> Preview:
        """What submitting this would do if it were published now: the same checks, the same
        plan from the same directory reads; nothing is written (not even a refusal)."""
        checked = await self.check(body, content_type, scope, record=False)
        alert = checked.parsed.alert
        planner = await self._planner(alert, checked.level, checked.targets)
        return Preview(checked, planner(await self.warnings.prior_of(alert)))

    async def submit(self, body: bytes, content_type: str, scope: Scope) -> tuple[Submitted, ParsedAlert]:
        """Check and store a warning; each outcome is one log line (never the CAP body)."""
        try:
            parsed = parse_warning(body, content_type, self.config)
        except WarndError as err:
            _log_rejected(err, scope, None)
            raise
        alert = parsed.alert
        try:
            checked = await self._checked(parsed, scope, record=True)
            level, targets, needed = checked.level, checked.targets, checked.needed
            info = alert.info_for("zh-CN")
            submitted = await self.warnings.submit(parsed, int(level), info.event if info else "",
                                                   (info.headline if info else None), scope,
                                                   await self._planner(alert, level, targets), needed)
        except WarndError as err:
            _log_rejected(err, scope, alert)
            raise
        log.info("warning accepted", extra=_identity(scope, alert) | {
            "warning_id": submitted.warning_id, "warning_level": level.label, "duplicate": not submitted.created,
            "awaiting_approval": submitted.awaiting, "approvals_needed": needed})
        if submitted.created:
            self.metrics.warnings.labels(alert.msg_type.value, alert.status.value).inc()
            if not submitted.awaiting:
                self._published(submitted.warning_id, parsed)
        return submitted, parsed

    async def approve(self, warning_id: int, approver: Scope) -> Decided:
        """An approver's 签发; the last one needed plans and publishes, as a submission would have."""
        parsed = await self._stored(warning_id, approver)
        level = level_of(parsed.alert, self.config)
        targets = await self.resolve(parsed.alert)
        decided = await self.warnings.approve(warning_id, parsed.alert, approver,
                                              await self._planner(parsed.alert, level, targets))
        if decided.state != "awaiting":
            self._published(warning_id, parsed)
        log.info("warning approved", extra=_identity(approver, parsed.alert) | {
            "warning_id": warning_id, "state": decided.state, "approvals": decided.approvals,
            "approvals_needed": decided.needed})
        return decided

    async def reject(self, warning_id: int, approver: Scope, reason: str) -> Decided:
        parsed = await self._stored(warning_id, approver)
        decided = await self.warnings.reject(warning_id, approver, reason)
        log.info("warning rejected by an approver", extra=_identity(approver, parsed.alert) | {
            "warning_id": warning_id, "state": decided.state})
        return decided

    async def authorize(self, scope: Scope, alert: Alert, level: Level, *, record: bool = True) -> Targets:
        """The whole message and everything it references; a refusal is audited (unless not `record`).

        Who may issue what is checked first: a message from the wrong sender, of the
        wrong event or level, costs no geometry at all.
        """
        try:
            authorize_issuer(scope, alert, level)
            targets = await self.resolve(alert)
            parents = await self.directory.parents_of(targets.codes)
            authorize_regions(scope, list(targets.codes), parents)
            if "*" not in scope.regions:
                await self._areas_inside(scope, alert, parents)
            referenced = await self.warnings.referenced(alert)
            if referenced:
                parents = {**parents, **await self.directory.parents_of(
                    sorted({c for r in referenced for c in r.regions}))}
            if authorize_references(scope, alert, referenced, parents) and record:
                self.metrics.supersedes.inc()
            return targets
        except WarndError as err:
            if err.status == 403 and record:
                await self.warnings.refused(alert, scope, err)
            raise

    async def _areas_inside(self, scope: Scope, alert: Alert, parents: dict) -> None:
        """Geocodes of any name, polygons and circles: all inside the jurisdiction."""
        names = {n.lower() for n in self.config.geocode_names}
        for area in alert.areas:
            for name, value in area.geocodes:
                if name.lower() not in names:
                    raise error("auth.geocode_unknown", "info.area.geocode",
                                f"geocode {name}={value} cannot be checked against {scope.department}'s "
                                f"jurisdiction (known names: {', '.join(self.config.geocode_names)})",
                                f"地理编码 {name}={value} 无法核对是否在 {scope.department} 辖区内")
        if not _has_shapes(alert):
            return
        rings = [r.polygon for r in await self.directory.regions_with_polygons()
                 if covers(scope.regions, r.code, parents | {r.code: r.parent})]
        if await asyncio.to_thread(_outside, alert, rings):
            raise error("auth.shape_out_of_scope", "info.area",
                        f"a polygon or circle reaches outside {scope.department}'s jurisdiction",
                        f"多边形或圆形区域超出 {scope.department} 辖区")

    async def _stored(self, warning_id: int, approver: Scope) -> ParsedAlert:
        require(approver, Right.APPROVE)
        cap_xml = await self.warnings.cap_of(warning_id)
        if cap_xml is None:
            raise WarndError("warning.not_found")
        parsed = parse_warning(cap_xml.encode(), "application/cap+xml", self.config)
        await self._within_jurisdiction(approver, parsed.alert)
        return parsed

    async def _within_jurisdiction(self, approver: Scope, alert: Alert) -> None:
        if "*" in approver.regions:
            return
        targets = await self.resolve(alert)
        if not covers_all(approver, list(targets.codes), await self.directory.parents_of(targets.codes)):
            raise error("auth.region_out_of_scope", "regions", "this warning reaches outside your jurisdiction",
                        "该预警超出您的辖区")

    async def approval_refusal(self, approver: Scope, cap_xml: str, submitted_by: str | None,
                               approved_by: set[str]) -> WarndError | None:
        """Why `approve` would refuse this approver for a held warning, or None if it would take it.

        The same checks in the same order: the right to approve and the jurisdiction
        (`_stored`), then the store's rule (`approval_rule`)."""
        try:
            require(approver, Right.APPROVE)
            if "*" not in approver.regions:
                await self._within_jurisdiction(approver, parse_warning(
                    cap_xml.encode(), "application/cap+xml", self.config).alert)
        except WarndError as err:
            return err
        return approval_rule(approver, submitted_by, approved_by)

    async def _planner(self, alert: Alert, level: Level, targets: Targets):  # noqa: ANN202
        """Read the directory (outside any write lock) and return the plan function the store calls."""
        people = tuple(await self.directory.people_in(sorted(with_ancestors(targets.regions)), None))
        subscribers = tuple(await self.directory.active_subscribers())
        speakers = tuple(await self.directory.speakers_in(sorted(targets.regions))) \
            if Audience.DEVICE in self.audiences.values() else ()

        def planner(prior: Prior):  # noqa: ANN202
            return plan(PlanInput(alert, level, self.clock.now(), targets.codes, targets.regions, people,
                                  subscribers, prior, self.audiences, speakers), self.config)
        return planner

    def _published(self, warning_id: int, parsed: ParsedAlert) -> None:
        self.alerts.put(warning_id, parsed.alert, parsed.cap_xml)
        self.on_commit()

    async def resolve(self, alert: Alert) -> Targets:
        """Region codes named by geocodes, plus the innermost regions whose polygons the shapes touch."""
        names = {n.lower() for n in self.config.geocode_names}
        codes = {value.strip() for area in alert.areas for name, value in area.geocodes
                 if name.lower() in names and value.strip()}
        if _has_shapes(alert):
            rings = [(r.code, r.polygon) for r in await self.directory.regions_with_polygons()]
            codes.update(finest(await asyncio.to_thread(_touched, alert, rings)))
        regions = {r.code: r for r in await self.directory.regions_within(sorted(codes))} if codes else {}
        return Targets(tuple(sorted(codes)), regions)


def _identity(scope: Scope, alert: Alert) -> dict:
    """The log fields that say which warning and who: never the CAP body or a token."""
    return {"identifier": alert.identifier, "sender": alert.sender, "status": alert.status.value,
            "msg_type": alert.msg_type.value, "department": scope.department, "actor": scope.actor}


def _log_rejected(err: WarndError, scope: Scope, alert: Alert | None) -> None:
    """A refused submission: its code and the fields at fault (`alert` None: it did not parse)."""
    fields = {"code": err.code, "status_code": err.status, "fields": [p.field for p in err.problems]}
    who = _identity(scope, alert) if alert is not None else {"department": scope.department, "actor": scope.actor}
    log.info("warning rejected", extra=who | fields)


def covers_all(scope: Scope, codes: list[str], parents: dict) -> bool:
    return "*" in scope.regions or all(covers(scope.regions, c, parents) for c in codes)


# Geometry runs on a worker thread: bounded by the limits (points per message) and
# by geo's repair policy, it still must never hold the event loop.

def _has_shapes(alert: Alert) -> bool:
    return any(area.polygons or area.circles for area in alert.areas)


def _touched(alert: Alert, rings: list) -> list[str]:
    return geo.regions_touched([s for area in alert.areas for s in geo.area_shapes(area)], rings)


def _outside(alert: Alert, rings: list) -> bool:
    return geo.outside_of([s for area in alert.areas for s in geo.area_shapes(area)], rings) is not None
