"""Which directory regions a CAP polygon or circle touches (pure, shapely-backed).

CAP writes points as "lat,lon"; shapely wants (x=lon, y=lat). A circle is
approximated by a 64-gon in degrees, scaled for the latitude: plenty for
village-sized regions, and far cheaper than geodesic buffers.
"""
from __future__ import annotations

import math

from shapely import affinity
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from warnd.domain.model import Area, Circle

KM_PER_DEGREE = 111.32


def ring_to_polygon(ring: tuple[tuple[float, float], ...]) -> Polygon:
    return Polygon([(lon, lat) for lat, lon in ring])


def circle_to_polygon(circle: Circle) -> BaseGeometry:
    radius = max(circle.radius_km, 0.01)  # a zero radius still means "this point"
    dlat = radius / KM_PER_DEGREE
    dlon = radius / (KM_PER_DEGREE * max(math.cos(math.radians(circle.lat)), 0.01))
    unit = Point(circle.lon, circle.lat).buffer(1.0, quad_segs=16)
    return affinity.scale(unit, xfact=dlon, yfact=dlat, origin=(circle.lon, circle.lat))


# Repairing a self-crossing ring grows with the square of its points (1,000 random
# points: 1.5 s, 5,000: half a minute). Small rings are repaired; larger invalid ones
# are replaced by their convex hull — it covers every point given, so a warning still
# reaches every region its issuer drew, and perhaps a few more, in microseconds.
REPAIR_POINTS = 200


def area_shapes(area: Area) -> list[BaseGeometry]:
    shapes: list[BaseGeometry] = [ring_to_polygon(r) for r in area.polygons if len(r) >= 4]
    shapes += [circle_to_polygon(c) for c in area.circles]
    return [_valid(s) for s in shapes]


def _valid(shape: BaseGeometry) -> BaseGeometry:
    if shape.is_valid:
        return shape
    if len(getattr(shape, "exterior", shape).coords) <= REPAIR_POINTS:
        return shape.buffer(0)
    return shape.convex_hull


def regions_touched(shapes: list[BaseGeometry],
                    region_rings: list[tuple[str, tuple[tuple[float, float], ...]]]) -> list[str]:
    """Codes of regions whose polygon intersects any of the shapes."""
    if not shapes:
        return []
    hits = []
    for code, ring in region_rings:
        region = ring_to_polygon(ring)
        if not region.is_valid:
            region = region.buffer(0)
        if any(region.intersects(s) for s in shapes):
            hits.append(code)
    return hits


# About 50 m: a drawn boundary that follows the county line may stray by a pixel.
INSIDE_TOLERANCE_DEGREES = 0.0005


def outside_of(shapes: list[BaseGeometry], rings: list[tuple[tuple[float, float], ...]]) -> BaseGeometry | None:
    """The first shape not inside the union of the rings (within a small tolerance), or None."""
    from shapely.ops import unary_union
    polygons = [ring_to_polygon(r) for r in rings if len(r) >= 4]
    if not polygons:
        return shapes[0] if shapes else None
    area = unary_union([p if p.is_valid else p.buffer(0) for p in polygons]).buffer(INSIDE_TOLERANCE_DEGREES)
    for shape in shapes:
        if not area.covers(shape):
            return shape
    return None
