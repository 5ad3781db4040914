"""What a department token may issue: event types, regions, up to a level (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from warnd.domain.directory import within
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Alert, Level


@dataclass(frozen=True)
class Scope:
    department: str
    events: tuple[str, ...]  # ("*",) = any
    regions: tuple[str, ...]  # ("*",) = anywhere; codes cover their descendants
    max_level: Level
    admin: bool = False


def authorize(scope: Scope, alert: Alert, level: Level, region_codes: list[str]) -> None:
    """Raise a 403 WarndError naming the first thing outside the token's scope."""
    if "*" not in scope.events:
        for i, info in enumerate(alert.infos):
            if info.event not in scope.events:
                raise error("auth.event_out_of_scope", f"info[{i}].event",
                            f"{scope.department} may not issue '{info.event}' (allowed: {', '.join(scope.events)})",
                            f"{scope.department} 无权发布“{info.event}”类预警（允许：{'、'.join(scope.events)}）")
    if level > scope.max_level:
        raise error("auth.level_out_of_scope", "info.severity",
                    f"{scope.department} may issue up to {scope.max_level.label}, not {level.label}",
                    f"{scope.department} 最高只能发布{scope.max_level.zh}预警，不能发布{level.zh}预警")
    if "*" in scope.regions:
        return
    for code in region_codes:
        if not any(within(code, allowed) for allowed in scope.regions):
            raise error("auth.region_out_of_scope", "info.area",
                        f"{scope.department} may not issue warnings for region {code}",
                        f"{scope.department} 无权向区域 {code} 发布预警")
    if not region_codes:
        raise error("auth.region_out_of_scope", "info.area",
                    "the warning's areas match no region of this department's jurisdiction",
                    "预警区域不在本单位辖区内")


def admin_scope() -> Scope:
    return Scope("admin", ("*",), ("*",), Level.RED, admin=True)


def require_admin(scope: Scope) -> None:
    if not scope.admin:
        raise WarndError("auth.admin_required")
