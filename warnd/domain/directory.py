"""The directory: regions, people, households, speakers, webhook subscribers.

Region codes: 6 digits county (GB/T 2260), 9 township, 12 village; anything
longer and prefixed by its village code is a warnd grid (网格).
"""
from __future__ import annotations

from dataclasses import dataclass, field

REGION_KINDS = ("province", "prefecture", "county", "township", "village", "grid")
ROLES = ("grid_responsible", "liaison", "village_head", "township_duty", "county_duty")


def region_kind(code: str) -> str | None:
    """Kind from the code's shape, or None if the code is malformed."""
    if not code.isdigit():
        return None
    n = len(code)
    if n == 2:
        return "province"
    if n == 4:
        return "prefecture"
    if n == 6:
        return "county"
    if n == 9:
        return "township"
    if n == 12:
        return "village"
    if n > 12:
        return "grid"
    return None


def region_parent(code: str) -> str | None:
    """The enclosing region implied by the code (grid → village → township → county)."""
    n = len(code)
    if n > 12:
        return code[:12]
    return {12: code[:9], 9: code[:6], 6: code[:4], 4: code[:2]}.get(n)


def with_ancestors(codes) -> set[str]:  # noqa: ANN001 - any iterable of codes
    """The codes and every region enclosing them."""
    out = set(codes)
    for code in list(out):
        parent = region_parent(code)
        while parent and parent not in out:  # one already in: its own ancestors are (or will be) added
            out.add(parent)
            parent = region_parent(parent)
    return out


def finest(codes) -> set[str]:  # noqa: ANN001 - any iterable of codes
    """The codes without those that enclose another of them.

    A drawn shape touches the outline of every region around the place it is drawn
    on (village, township, county); warning the county would warn all of it. Where
    the shape touches a region inside one, the inner region is what it means."""
    found = set(codes)
    return {c for c in found if not any(o != c and within(o, c) for o in found)}


def within(code: str, scope: str) -> bool:
    """True if region `code` lies in (or is) region `scope`; "*" is everywhere."""
    return scope == "*" or code.startswith(scope)


# Slots: an import holds every entry of a province at once (a million households).
@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str
    kind: str
    parent: str | None = None
    polygon: tuple[tuple[float, float], ...] | None = None  # (lat, lon) closed ring
    # The region's group chats: channel name → the group's address on it (a WeCom group
    # robot's webhook key). A secret: whoever has it can post to the group; shown redacted.
    groups: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    region: str  # the region this person answers for
    roles: tuple[str, ...]
    phone: str | None = None
    language: str = "zh-CN"
    backup: str | None = None  # person id (AB角)


@dataclass(frozen=True, slots=True)
class Household:
    id: str
    grid: str
    address: str
    phone: str | None = None
    vulnerable: bool = False


@dataclass(frozen=True, slots=True)
class Speaker:
    id: str
    grid: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A downstream system; empty filter lists match everything."""

    id: str
    url: str
    secret: str
    format: str = "cap"  # cap | json
    regions: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    public: bool = True
    active: bool = True
    restricted: bool = False  # may receive CAP scope Restricted warnings (authorised recipients)


def redact(address: str) -> str:
    """A group address (a secret) as it may be shown or logged: its last four characters."""
    return "…" + address[-4:] if len(address) > 8 else "…"


def redacted_groups(groups: dict[str, str]) -> dict[str, str]:
    return {channel: redact(address) for channel, address in groups.items()}
