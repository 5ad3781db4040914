"""The live view's and the report's figures (pure, no I/O): grid states, the coverage curve,
times to 50 / 90 / 100 %, and a drill's evaluation met and missed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from warnd.domain.coverage import GridState
from warnd.domain.report import (DrillGrid, Targets, counts, curve, evaluate_drill, live_state, percent,
                                 time_to)

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_live_state_puts_not_woken_before_uncovered_and_reached_before_both():
    assert live_state("confirmed", True, True) == "confirmed"
    assert live_state("covered", True, False) == "covered"
    assert live_state("open", True, True) == "not_woken"
    assert live_state("open", False, True) == "uncovered"
    assert live_state("open", False, False) == "open"
    assert live_state("closed", False, False) == "open"  # ended unreached: not reached
    assert counts(["open", "confirmed", "confirmed", "not_woken"]) == {
        "confirmed": 2, "covered": 0, "open": 1, "not_woken": 1, "uncovered": 0, "total": 4}
    assert percent(2, 3) == 66.7 and percent(0, 0) == 0.0


def test_curve_rises_step_by_step_to_the_share_reached():
    grids = [GridState("1", "confirmed", at(2)), GridState("2", "covered", at(5)),
             GridState("3", "confirmed", at(5)), GridState("4", "open", None),
             GridState("5", "closed", at(1))]  # a closed requirement is not reached
    assert curve(grids, T0) == [{"seconds": 0.0, "percent": 0.0}, {"seconds": 120.0, "percent": 20.0},
                                {"seconds": 300.0, "percent": 60.0}]
    assert time_to(grids, T0) == {"50": 300.0, "90": None, "100": None}
    everything = [GridState(str(n), "confirmed", at(n)) for n in range(1, 5)]
    points = curve(everything, T0)
    assert points[-1] == {"seconds": 240.0, "percent": 100.0}
    assert time_to(everything, T0) == {"50": 120.0, "90": 240.0, "100": 240.0}
    assert curve([], T0) == [{"seconds": 0.0, "percent": 0.0}]
    assert curve([GridState("1", "confirmed", at(0))], T0) == [{"seconds": 0.0, "percent": 100.0}]


def test_a_long_curve_is_thinned_but_stays_monotone_and_ends_where_coverage_stands():
    grids = [GridState(str(n), "confirmed", T0 + timedelta(seconds=n)) for n in range(1, 2001)]
    grids.append(GridState("x", "open", None))
    points = curve(grids, T0, max_points=50)
    assert len(points) == 50 and points[0] == {"seconds": 0.0, "percent": 0.0}
    assert all(a["seconds"] < b["seconds"] and a["percent"] <= b["percent"] for a, b in zip(points, points[1:]))
    assert points[-1] == {"seconds": 2000.0, "percent": percent(2000, 2001)}


TARGETS = Targets(reach_minutes=10, complete_minutes=60)


def test_a_drill_that_met_every_target():
    grids = [DrillGrid("1", at(1), at(4), at(15)), DrillGrid("2", at(9.5), at(30), at(45)),
             DrillGrid("3", at(2), at(20), None)]  # no ladder: reached at all is in time
    found = evaluate_drill(grids, T0, 30 * 60, TARGETS)
    assert found["met"] is True
    reach, rung, complete = found["targets"]
    assert (reach["key"], reach["actual"], reach["met"]) == ("reach", 9.5, True)
    assert reach["name_zh"] == "全部责任人 10 分钟内收到预警" and "10 minutes" in reach["name_en"]
    assert (rung["key"], rung["target"], rung["actual"], rung["met"]) == ("before_last_rung", 3, 3, True)
    assert (complete["key"], complete["target"], complete["actual"], complete["met"]) == ("complete", 60, 30.0, True)


def test_a_drill_that_missed_each_target_says_by_how_much():
    grids = [DrillGrid("1", at(12), at(14), at(15)),  # reached late
             DrillGrid("2", None, at(50), at(45)),  # never sent to; confirmed after its last rung
             DrillGrid("3", at(1), None, at(45))]  # never reached
    found = evaluate_drill(grids, T0, None, TARGETS)
    reach, rung, complete = found["targets"]
    assert found["met"] is False
    assert (reach["actual"], reach["detail"], reach["met"]) == (
        None, {"reached_in_time": 1, "never_reached": 1, "grids": 3}, False)
    assert (rung["actual"], rung["detail"]["late_or_never"], rung["met"]) == (1, 2, False)
    assert (complete["actual"], complete["met"]) == (None, False)
    slow = evaluate_drill([DrillGrid("1", at(11), at(70), None)], T0, 70 * 60, TARGETS)
    assert [(r["actual"], r["met"]) for r in slow["targets"]] == [(11.0, False), (1, True), (70.0, False)]
    assert evaluate_drill([], T0, None, TARGETS)["met"] is False  # nothing to evaluate meets nothing
