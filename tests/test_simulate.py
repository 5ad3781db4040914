"""`warnd simulate` and `warnd demo` end to end, as a user runs them: real processes, no mocks.

Each run starts `warnd simulate` as a subprocess, which runs `warnd serve` as its own
child, the Twilio simulator, an MQTT broker with simulated speakers and a webhook
sink, at high speed. The tests read the JSON report: nothing lost, every grid
confirmed or covered, and warnd's delivered counts equal what the simulators
received, channel by channel. Every run is bounded by a subprocess timeout.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from procs import clean_env, warnd_command

pytestmark = pytest.mark.slow

COUNTY, TOWNSHIP, VILLAGE = "421126", "421126100", "421126100201"
GRIDS = [f"{VILLAGE}{i:03d}" for i in range(1, 6)]


def small_directory() -> dict:
    """1 township, 5 grids, 10 people, 10 speakers, 6 households, 1 subscriber."""
    people = [{"id": f"g{i}", "name": f"网格员{i}", "region": grid, "roles": ["grid_responsible"],
               "phone": f"+86138000010{i:02d}", "backup": "head" if i > 2 else f"l{i}"}
              for i, grid in enumerate(GRIDS, 1)]
    people += [{"id": "l1", "name": "信息员1", "region": GRIDS[0], "roles": ["liaison"], "phone": "+8613800002001"},
               {"id": "l2", "name": "信息员2", "region": GRIDS[1], "roles": ["liaison"], "phone": "+8613800002002"},
               {"id": "l5", "name": "信息员5", "region": GRIDS[4], "roles": ["liaison"], "phone": "+8613800002005"},
               {"id": "head", "name": "村主任", "region": VILLAGE, "roles": ["village_head"], "phone": "+8613800000101"},
               {"id": "duty", "name": "镇值班员", "region": TOWNSHIP, "roles": ["township_duty"],
                "phone": "+8613800000011"}]
    return {
        "regions": [{"code": COUNTY, "name": "蕲阳县"}, {"code": TOWNSHIP, "name": "青石镇"},
                    {"code": VILLAGE, "name": "柳塘村"}] + [{"code": g, "name": f"第{i}网格"}
                                                            for i, g in enumerate(GRIDS, 1)],
        "people": people,
        "households": [{"id": f"h{i}", "grid": GRIDS[i % 5], "address": f"{i}号", "vulnerable": i == 3,
                        **({"phone": f"+86137000000{i:02d}"} if i % 2 else {})} for i in range(6)],
        "speakers": [{"id": f"spk-{i:02d}", "grid": GRIDS[i // 2]} for i in range(10)],
        "subscribers": [{"id": "tv", "url": "http://127.0.0.1:9/tv",
                         "secret": "whsec_ZXhhbXBsZS1vbmx5OiB0di1wbGF5b3V0IDAwMDE="}],
    }


def scenario(**extra: object) -> dict:
    """Most reply "1"; g4 and its backup never answer, so g4's grid is covered door to door."""
    return {
        "seed": 11, "speed": 30, "directory": small_directory(),
        "behaviours": {"people": {"default": {"reply_after": [10, 60]},
                                  "g4": {"never": True}, "head": {"never": True},
                                  "duty": {"never": True}}},  # asked at 5 min, a duty officer's 1 confirms
        "door_to_door": {"start_after": 30, "visit_after": 20},
        "timeline": [{"at": "00:00:05", "name": "rain",
                      "issue": {"template": "red-rainstorm", "areas": [TOWNSHIP], "expires_after": "03:00:00"}}],
        "end": {"max": "00:45:00"},
        **extra,
    }


def simulate(tmp_path: Path, data: dict | str, *args: str, timeout: float = 240) -> tuple[int, dict | None, str]:
    """Run `warnd simulate` on a scenario; (exit code, report or None, stderr)."""
    path = tmp_path / "scenario.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    report = tmp_path / "report.json"
    done = subprocess.run([*warnd_command(), "simulate", str(path), "--report", str(report),
                           "--workdir", str(tmp_path / "work"), *args],
                          capture_output=True, text=True, timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)
    if done.returncode not in (0, 1, 2):
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted((tmp_path / "work").glob("*.log")))
        raise AssertionError(f"simulate exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}")
    return done.returncode, json.loads(report.read_text()) if report.exists() else None, done.stderr


def assert_nothing_lost_and_all_reached(report: dict) -> None:
    assert report["lost"] == [], report["lost"]
    assert report["unreached_grids"] == [], report["unreached_grids"]
    (rain,) = [w for w in report["warnings"] if w["name"] == "rain"]
    states = {g["grid"]: g["state"] for g in rain["grids"]}
    assert set(states) == set(GRIDS) and set(states.values()) <= {"confirmed", "covered"}, states
    assert report["verdict"] == {"ok": True, "reasons": []}


def assert_inside_equals_outside(report: dict) -> None:
    for w in report["warnings"]:
        for channel, section in w["channels"].items():
            assert section["agree"], (w["name"], channel, section)
            assert section["inside_delivered"] == section["outside"]["delivered"], (w["name"], channel, section)
    for channel, totals in report["totals"].items():
        assert totals["inside_delivered"] == totals["outside_delivered"], (channel, totals)
    assert report["inside_outside_agree"]


def test_a_small_red_warning_reaches_every_grid_and_inside_equals_outside(tmp_path):
    code, report, stderr = simulate(tmp_path, scenario())
    assert code == 0, stderr
    assert_nothing_lost_and_all_reached(report)
    assert_inside_equals_outside(report)
    (rain,) = report["warnings"]
    grids = {g["grid"]: g for g in rain["grids"]}
    assert grids[GRIDS[3]]["state"] == "covered"  # g4 and head never answer: walked door to door
    assert grids[GRIDS[3]]["door_to_door"]["marked"] == grids[GRIDS[3]]["door_to_door"]["households"] > 0
    assert any(g["how"].startswith("confirmed by g") for g in grids.values())
    assert {"sms", "voice", "speaker", "webhook"} <= set(rain["channels"])
    sms = rain["channels"]["sms"]["outside"]
    assert sms["duplicates"] == 0 and sms["unique"] == sms["received"] > 0
    assert rain["timing"]["first_send_seconds"] is not None and rain["timing"]["coverage_100_seconds"] is not None


def test_a_crash_in_the_middle_loses_nothing_repeats_nothing_and_inside_equals_outside(tmp_path):
    # Killed while the first rung (5 min after the warning) is due; dead for 40 simulated seconds.
    code, report, stderr = simulate(tmp_path, scenario(crash={"at": "00:04:50", "restart_after": 40}))
    assert report is not None, stderr
    assert report["run"]["warnd_lives"] == 2 and report["crash"]["at_seconds"] >= 290
    assert_nothing_lost_and_all_reached(report)
    assert_inside_equals_outside(report)
    assert code == 0, stderr
    (rain,) = report["warnings"]
    for grid in rain["grids"]:  # each rung fired once, the one due while warnd was down included
        assert len(grid["rungs_fired"]) == len({r.split("@")[0] for r in grid["rungs_fired"]}), grid
    assert any(r.startswith("red:notify") for g in rain["grids"] for r in g["rungs_fired"])
    assert rain["channels"]["sms"]["outside"]["duplicates"] == 0


def test_a_crash_mid_fan_out_loses_nothing_and_only_sends_in_flight_may_disagree(tmp_path):
    # Killed a simulated second after the warning was accepted, while its sends are in flight.
    code, report, stderr = simulate(tmp_path, scenario(crash={"at": "00:00:06", "restart_after": 20}))
    assert report is not None, stderr
    assert report["run"]["warnd_lives"] == 2 and report["crash"] is not None
    assert_nothing_lost_and_all_reached(report)
    assert code == 0, stderr
    # SMS are never blindly re-sent: at most the sends in flight at the kill arrive twice.
    (rain,) = report["warnings"]
    assert rain["channels"]["sms"]["outside"]["duplicates"] <= report["crash"]["in_flight"]
    # Where the views differ, it is a send that was in flight at the kill (its receipt came while
    # warnd was down); the report lists each one.
    assert all(d["in_flight_at_crash"] for d in report["disagreements"]), report["disagreements"]


def test_a_bad_scenario_names_the_path_and_exits_2_without_a_traceback(tmp_path):
    data = scenario()
    data["timeline"][0]["at"] = "half past nine"
    data["behaviours"]["people"]["nobody"] = {"reply_after": 5}
    data["speed"] = -1
    code, report, stderr = simulate(tmp_path, data, timeout=60)
    assert code == 2 and report is None
    assert "timeline[0].at" in stderr and "speed" in stderr
    assert "Traceback" not in stderr
    # meaning, once the shape is right: an unknown person and an update of nothing
    data = scenario()
    data["behaviours"]["people"]["nobody"] = {"reply_after": 5}
    data["timeline"].append({"at": 60, "update": "drizzle", "with": {"template": "orange-rainstorm"}})
    code, _, stderr = simulate(tmp_path, data, timeout=60)
    assert code == 2, stderr
    assert "behaviours.people.nobody" in stderr and "timeline[1].update" in stderr and "Traceback" not in stderr
    code, _, stderr = simulate(tmp_path, "timeline: [\n  - at: 1\n    issue: {template: red-rainstorm\n", timeout=60)
    assert code == 2 and "not valid YAML" in stderr and "Traceback" not in stderr


def test_visitors_mark_any_household_outcome_and_a_wrong_one_is_named(tmp_path):
    from warnd.simulate.scenario import ScenarioError, load
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario(door_to_door={"start_after": 30, "visit_after": 20, "mark": "moved",
                                                      "people": 3})), encoding="utf-8")
    door = load(path).door_to_door
    assert (door.mark, door.people) == ("moved", 3)
    path.write_text(json.dumps(scenario(door_to_door={"mark": "gone"})), encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load(path)
    assert "door_to_door" in str(raised.value.problems)


def test_a_red_warning_waits_for_its_second_approver_and_is_sent_only_then(tmp_path):
    # warnd's defaults: red needs two approvals. Nothing may leave before the second one.
    data = scenario()
    data["timeline"][0]["approve"] = [{"by": "王签发", "after": "01:30"}, {"by": "李签发", "after": "02:10"}]
    code, report, stderr = simulate(tmp_path, data)
    assert code == 0, stderr
    assert_nothing_lost_and_all_reached(report)
    assert_inside_equals_outside(report)
    (rain,) = report["warnings"]
    a = rain["approval"]
    assert a["needed"] == 2 and [(d["by"], d["decision"]) for d in a["decisions"]] == [("王签发", "approved"),
                                                                                      ("李签发", "approved")]
    first, second = (d["at_seconds"] for d in a["decisions"])
    assert first >= a["submitted_at_seconds"] + 90 and second >= a["submitted_at_seconds"] + 130  # after the issue
    assert a["first_sent_at_seconds"] >= a["published_at_seconds"] >= second
    assert a["delay_seconds"] == round(a["published_at_seconds"] - a["submitted_at_seconds"], 1) >= 130
    # every send, and the coverage, counts from publication: nothing before it
    assert rain["timing"]["first_send_seconds"] >= 0 and rain["timing"]["coverage_100_seconds"] > 0
    assert any("待签发 1/2" in e["event"] for e in report["events"])


def test_a_red_warning_with_one_approver_is_a_scenario_error_before_the_run(tmp_path):
    data = scenario()
    data["timeline"][0]["approve"] = [{"by": "王签发", "after": "01:30"}]
    code, report, stderr = simulate(tmp_path, data, timeout=60)
    assert code == 2 and report is None
    assert "timeline[0].approve" in stderr and "needs 2 approvals" in stderr and "Traceback" not in stderr


def test_the_shipped_scenarios_are_valid_and_the_demo_cap_file_passes_cap_validate():
    from warnd.simulate.scenario import load, packaged
    for name in ("example.yaml", "demo.yaml"):
        assert load(packaged(name)).timeline
    done = subprocess.run([*warnd_command(), "cap", "validate", str(packaged("demo-red-rainstorm.xml"))],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_demo_completes_with_every_grid_confirmed_or_covered(tmp_path):
    report_path = tmp_path / "demo.json"
    done = subprocess.run([*warnd_command(), "demo", "--speed", "30", "--out", str(tmp_path / "demo"),
                           "--report", str(report_path)],
                          capture_output=True, text=True, timeout=300, env=clean_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["verdict"]["ok"] and report["lost"] == [] and report["unreached_grids"] == []
    judged = [w for w in report["warnings"] if w["judged"]]
    assert len(judged) == 1 and judged[0]["level"] == "red" and judged[0]["coverage"]["grids"] == 200
    approval = judged[0]["approval"]  # reviewed, then signed off: sent only after the second
    assert len(approval["decisions"]) == 2
    assert approval["first_sent_at_seconds"] >= approval["published_at_seconds"] \
        >= approval["decisions"][1]["at_seconds"]
    assert "审批用时" in done.stdout
    assert "warnd API: http://127.0.0.1:" in done.stdout and "verdict: OK" in done.stdout
    assert "\x1b[" not in done.stdout  # not a terminal: plain lines, no control sequences


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
