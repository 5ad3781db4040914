"""Intake: validate, authorise, resolve areas, plan and store a warning — the API's one verb.

Directory reads happen before the write transaction (they are the slow part
and need no lock); the plan itself is made inside it, because it must see the
earlier versions' deliveries exactly as they are when this version retires them.
"""
from __future__ import annotations

from dataclasses import dataclass

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain import geo
from warnd.domain.authority import Scope, authorize
from warnd.domain.directory import with_ancestors
from warnd.domain.levels import level_of
from warnd.domain.model import Alert, ParsedAlert
from warnd.domain.planning import PlanInput, Prior, plan
from warnd.engine.alerts import AlertCache
from warnd.engine.metrics import Metrics
from warnd.ingest.validate import parse_warning
from warnd.store.directory import DirectoryStore
from warnd.store.warnings import Submitted, WarningStore


@dataclass(frozen=True)
class Targets:
    codes: tuple[str, ...]  # what the areas name (geocodes and regions touched by shapes)
    regions: dict  # code -> Region: the targets and everything below them


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
        self.on_commit = on_commit  # wakes the dispatcher

    async def submit(self, body: bytes, content_type: str, scope: Scope) -> tuple[Submitted, ParsedAlert]:
        parsed = parse_warning(body, content_type, self.config)
        alert = parsed.alert
        level = level_of(alert, self.config)
        targets = await self.resolve(alert)
        authorize(scope, alert, level, list(targets.codes))
        people = tuple(await self.directory.people_in(sorted(with_ancestors(targets.regions)), None))
        subscribers = tuple(await self.directory.active_subscribers())
        speakers = tuple(await self.directory.speakers_in(sorted(targets.regions))) \
            if "speaker" in self.enabled_channels else ()

        def planner(prior: Prior):  # noqa: ANN202
            return plan(PlanInput(alert, level, self.clock.now(), targets.codes, targets.regions, people,
                                  subscribers, prior, self.enabled_channels, speakers), self.config)

        info = alert.info_for("zh-CN")
        submitted = await self.warnings.submit(parsed, int(level), info.event if info else "",
                                               (info.headline if info else None), scope.department, planner)
        if submitted.created:
            self.alerts.put(submitted.warning_id, alert, parsed.cap_xml)
            self.metrics.warnings.labels(alert.msg_type.value, alert.status.value).inc()
            self.on_commit()
        return submitted, parsed

    async def resolve(self, alert: Alert) -> Targets:
        """Region codes named by geocodes, plus regions whose polygons the shapes touch."""
        names = {n.lower() for n in self.config.geocode_names}
        codes = {value.strip() for area in alert.areas for name, value in area.geocodes
                 if name.lower() in names and value.strip()}
        shapes = [s for area in alert.areas for s in geo.area_shapes(area)]
        if shapes:
            rings = [(r.code, r.polygon) for r in await self.directory.regions_with_polygons()]
            codes.update(geo.regions_touched(shapes, rings))
        regions = {r.code: r for r in await self.directory.regions_within(sorted(codes))} if codes else {}
        return Targets(tuple(sorted(codes)), regions)

