"""Bounds on what one message may ask of warnd, checked before any expensive work.

A 20 KB polygon of self-crossing points once held the event loop for half a
minute; 200,000 empty JSON objects made a 200 MB error answer. Each bound has
its own stable problem code (`cap.limit`, naming the field and the bound), and
the counts are taken on the raw document (XML elements, JSON values) before
schema validation, models or geometry are built.
"""
from __future__ import annotations

import math

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from warnd.domain.errors import error

# (XML local name, JSON key) of the elements that are counted
COUNTED = {"info": "info", "area": "area", "polygon": "polygon", "circle": "circle", "geocode": "geocode",
           "parameter": "parameter", "resource": "resource"}


class Limits(BaseModel):
    """Generous for real warnings (drawn areas are ≈ 100 points), small enough to bound the work.

    The configuration's `limits` section; every key is optional.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    infos: int = Field(16, ge=1)  # one per language, a few per event
    areas: int = Field(100, ge=1)
    polygons: int = Field(500, ge=1)
    polygon_points: int = Field(1_000, ge=4)  # per polygon
    points: int = Field(10_000, ge=4)  # all polygons of the message together
    circles: int = Field(100, ge=1)
    geocodes: int = Field(2_000, ge=1)  # a province's counties, named one by one
    parameters: int = Field(200, ge=1)
    resources: int = Field(32, ge=1)
    elements: int = Field(50_000, ge=100)  # XML elements in all
    json_depth: int = Field(16, ge=4)  # CAP JSON is 4 deep
    json_items: int = Field(10_000, ge=16)  # the longest JSON array

    def bound(self, name: str) -> int:
        return {"info": self.infos, "area": self.areas, "polygon": self.polygons, "circle": self.circles,
                "geocode": self.geocodes, "parameter": self.parameters, "resource": self.resources}[name]


def check_xml(root: etree._Element, limits: Limits) -> None:
    """Count elements and polygon points of a parsed document; raise `cap.limit` past a bound."""
    counts = dict.fromkeys(COUNTED, 0)
    total, points = 0, 0
    for element in root.iter(tag=etree.Element):
        total += 1
        if total > limits.elements:
            _refuse("/alert", f"more than {limits.elements} elements", f"元素超过 {limits.elements} 个")
        name = etree.QName(element).localname
        if name in counts:
            counts[name] += 1
            if counts[name] > limits.bound(name):
                _refuse(f"/alert//{name}", f"more than {limits.bound(name)} <{name}> elements",
                        f"<{name}> 超过 {limits.bound(name)} 个")
            if name == "polygon":
                points += _points(element.text or "", limits, f"/alert//polygon[{counts[name]}]")
                _check_total(points, limits)


def check_json(data: object, limits: Limits) -> None:
    """Depth, array lengths, element counts and polygon points of decoded JSON, iteratively."""
    counts = dict.fromkeys(COUNTED, 0)
    points = 0
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limits.json_depth:
            _refuse(path or "body", f"nested deeper than {limits.json_depth}", f"嵌套超过 {limits.json_depth} 层")
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if key in counts and isinstance(item, list):
                    counts[key] += len(item)
                    if counts[key] > limits.bound(key):
                        _refuse(child, f"more than {limits.bound(key)} {key} entries",
                                f"{key} 超过 {limits.bound(key)} 项")
                if key == "polygon" and isinstance(item, list):
                    for i, ring in enumerate(item):
                        if isinstance(ring, str):
                            points += _points(ring, limits, f"{child}[{i}]")
                            _check_total(points, limits)
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            if len(value) > limits.json_items:
                _refuse(path or "body", f"a list of {len(value)} items; at most {limits.json_items}",
                        f"列表有 {len(value)} 项，最多 {limits.json_items} 项")
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            _refuse(path or "body", "numbers must be finite", "数值必须有限")


def _points(text: str, limits: Limits, field: str) -> int:
    n = len(text.split())
    if n > limits.polygon_points:
        _refuse(field, f"polygon of {n} points; at most {limits.polygon_points}",
                f"多边形有 {n} 个点，最多 {limits.polygon_points} 个")
    return n


def _check_total(points: int, limits: Limits) -> None:
    if points > limits.points:
        _refuse("/alert//polygon", f"more than {limits.points} polygon points in one message",
                f"一条消息的多边形点数超过 {limits.points}")


def _refuse(field: str, en: str, zh: str) -> None:
    raise error("cap.limit", field, en, zh)
