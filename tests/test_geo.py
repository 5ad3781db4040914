"""CAP polygons and circles resolve to the directory regions they touch."""
from __future__ import annotations

from warnd.domain.geo import area_shapes, regions_touched
from warnd.domain.model import Area, Circle


def square(lat: float, lon: float, size: float = 0.01) -> tuple[tuple[float, float], ...]:
    return ((lat, lon), (lat, lon + size), (lat + size, lon + size), (lat + size, lon), (lat, lon))


GRIDS = [("g-west", square(30.00, 115.00)), ("g-east", square(30.00, 115.05)), ("g-north", square(30.10, 115.00))]


def test_a_polygon_touches_only_the_grids_it_overlaps():
    area = Area("西部", polygons=(square(29.995, 114.995, 0.02),))
    assert regions_touched(area_shapes(area), GRIDS) == ["g-west"]


def test_a_circle_is_measured_in_kilometres_not_degrees():
    # g-east starts ~4.8 km east of g-west's centre at this latitude
    near = Area("圆", circles=(Circle(30.005, 115.005, 2.0),))
    wide = Area("圆", circles=(Circle(30.005, 115.005, 6.0),))
    assert regions_touched(area_shapes(near), GRIDS) == ["g-west"]
    assert regions_touched(area_shapes(wide), GRIDS) == ["g-west", "g-east"]


def test_a_zero_radius_circle_still_means_its_point():
    point = Area("点", circles=(Circle(30.105, 115.005, 0.0),))
    assert regions_touched(area_shapes(point), GRIDS) == ["g-north"]


def test_no_shapes_touch_nothing():
    assert regions_touched(area_shapes(Area("仅地理编码", geocodes=(("GB2260", "421126"),))), GRIDS) == []
