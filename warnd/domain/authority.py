"""Who may do what (pure): roles and their rights, and what a principal may issue.

A principal is whoever is behind a request: a department's token, a person's
login or personal token, or warnd itself (CLI, feeds, simulations). It is
bound to a department, to that department's CAP sender(s), and to event
types, regions and a highest level. Decisions here take only data: the
directory's hierarchy and the referenced warnings are looked up by the
caller and handed in.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Mapping

from warnd.domain.directory import region_parent
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Alert, Level


class Role(str, enum.Enum):
    ADMIN = "admin"  # 管理员: everything, including accounts, tokens and the directory
    APPROVER = "approver"  # 签发人: approves or rejects warnings
    OPERATOR = "operator"  # 值班员: composes, watches, records phoned confirmations, acknowledges alarms
    EDITOR = "editor"  # 制作: a department's author; sees their own department's warnings
    VIEWER = "viewer"  # 查看: reads warnings and progress, no contact details
    DEPARTMENT = "department"  # a department's or feed's API token (a system, not a person)


class Right(str, enum.Enum):
    SUBMIT = "submit"  # issue warnings (of the principal's own scope)
    APPROVE = "approve"  # approve / reject (a person only)
    OPERATE = "operate"  # record phoned confirmations, acknowledge alarms
    READ_ALL = "read_all"  # every department's warnings (else only one's own)
    CONTACTS = "contacts"  # phone numbers and household addresses
    MANAGE = "manage"  # directory writes, tokens, users
    AUDIT = "audit"  # read the audit log


RIGHTS: dict[Role, frozenset[Right]] = {
    Role.ADMIN: frozenset(Right),
    Role.APPROVER: frozenset({Right.APPROVE, Right.READ_ALL}),
    Role.OPERATOR: frozenset({Right.SUBMIT, Right.OPERATE, Right.READ_ALL, Right.CONTACTS}),
    Role.EDITOR: frozenset({Right.SUBMIT}),
    Role.VIEWER: frozenset({Right.READ_ALL}),
    Role.DEPARTMENT: frozenset({Right.SUBMIT}),
}
PERSON_ROLES = tuple(r for r in Role if r is not Role.DEPARTMENT)


@dataclass(frozen=True)
class Scope:
    department: str
    events: tuple[str, ...]  # ("*",) = any
    regions: tuple[str, ...]  # ("*",) = anywhere; codes cover their descendants in the directory
    max_level: Level
    role: Role = Role.DEPARTMENT
    senders: tuple[str, ...] = ()  # CAP <sender> values this principal issues as; ("*",) = any
    supersede: bool = False  # the release centre's right to update/cancel others' warnings in its area
    actor: str = ""  # who, in the audit log: "token:12", "user:zhang", "cli", "simulation"
    user: str | None = None  # the person's account name, if a person is behind it

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    def can(self, right: Right) -> bool:
        return right in RIGHTS[self.role]

    @property
    def who(self) -> str:
        return self.actor or self.department


@dataclass(frozen=True)
class Referenced:
    """An earlier warning a new message references, as stored."""

    id: int
    department: str | None
    regions: tuple[str, ...]


def require(scope: Scope, right: Right) -> None:
    if not scope.can(right):
        raise error("auth.forbidden", "role", f"the role {scope.role.value} may not {right.value}",
                    f"角色 {scope.role.value} 无权执行 {right.value}")


def require_admin(scope: Scope) -> None:
    if not scope.admin:
        raise WarndError("auth.admin_required")


def admin_scope(actor: str = "cli") -> Scope:
    """warnd itself (CLI, simulations): every right, any sender."""
    return Scope("admin", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",), True, actor)


def covers(scope_codes: Iterable[str], code: str, parents: Mapping[str, str | None]) -> bool:
    """True if `code` is, or lies below, one of `scope_codes` in the directory's hierarchy.

    `parents` is the directory's parent links; where it has none, the shape of the
    code decides (grid → village → township → county). A grid code that merely
    starts with another grid's code is therefore not inside it.
    """
    allowed = set(scope_codes)
    if "*" in allowed:
        return True
    seen: set[str] = set()
    current: str | None = code
    while current and current not in seen:
        if current in allowed:
            return True
        seen.add(current)
        current = parents.get(current) or region_parent(current)
    return False


def authorize(scope: Scope, alert: Alert, level: Level, region_codes: list[str],
              parents: Mapping[str, str | None] | None = None) -> None:
    """Raise a 403 WarndError naming the first thing outside the principal's scope."""
    authorize_issuer(scope, alert, level)
    authorize_regions(scope, region_codes, parents)


def authorize_issuer(scope: Scope, alert: Alert, level: Level) -> None:
    """Role, sender, event types and level: cheap, so checked before any area is resolved."""
    require(scope, Right.SUBMIT)
    if "*" not in scope.senders and alert.sender not in scope.senders:
        allowed = ", ".join(scope.senders) or "none"
        raise error("auth.sender_not_yours", "sender",
                    f"{scope.department} issues as {allowed}, not as {alert.sender}",
                    f"{scope.department} 只能以 {allowed} 身份发布，不能以 {alert.sender} 身份发布")
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


def authorize_regions(scope: Scope, region_codes: list[str], parents: Mapping[str, str | None] | None = None) -> None:
    if "*" in scope.regions:
        return
    for code in region_codes:
        if not covers(scope.regions, code, parents or {}):
            raise error("auth.region_out_of_scope", "info.area",
                        f"{scope.department} may not issue warnings for region {code}",
                        f"{scope.department} 无权向区域 {code} 发布预警")
    if not region_codes:
        raise error("auth.region_out_of_scope", "info.area",
                    "the warning's areas match no region of this department's jurisdiction",
                    "预警区域不在本单位辖区内")


def authorize_references(scope: Scope, alert: Alert, referenced: list[Referenced],
                         parents: Mapping[str, str | None] | None = None) -> bool:
    """May this message update or cancel everything it references?

    A department changes only its own warnings. The release centre's supersede
    right reaches others' warnings inside its jurisdiction, with a reason (the
    CAP <note>). Returns True when that right was used (the caller audits it).
    """
    foreign = [r for r in referenced if r.department != scope.department]
    if not foreign:
        return False
    if not scope.supersede:
        first = foreign[0]
        raise error("auth.not_your_warning", "references",
                    f"warning {first.id} belongs to {first.department}; {scope.department} may not change it",
                    f"预警 {first.id} 属于 {first.department}，{scope.department} 无权变更")
    if not (alert.note or "").strip():
        raise error("auth.reason_required", "note",
                    "changing another department's warning needs a reason in <note>",
                    "变更其他单位的预警须在 <note> 中写明原因")
    for r in foreign:
        for code in r.regions:
            if not covers(scope.regions, code, parents or {}):
                raise error("auth.region_out_of_scope", "references",
                            f"warning {r.id} reaches region {code}, outside {scope.department}'s jurisdiction",
                            f"预警 {r.id} 涉及区域 {code}，不在 {scope.department} 辖区内")
    return True


def approval_rule(approver: Scope, submitted_by: str | None, approved_by: set[str]) -> WarndError | None:
    """签发 by people other than the author, each counted once (WarningStore.approve's rule)."""
    if approver.user is None:
        return error("auth.forbidden", "approver", "approvals are given by people (log in or use a "
                     "personal token)", "签发须由本人进行（登录或使用个人令牌）")
    if submitted_by == approver.who:
        return WarndError("approval.own_warning")
    if approver.user in approved_by:
        return WarndError("approval.already_approved")
    return None
