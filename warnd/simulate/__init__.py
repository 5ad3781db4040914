"""`warnd simulate` and `warnd demo`: warnd rehearsed against its own simulators from a scenario.

`run_command` is what both commands do: load the scenario (exit 2 naming every
problem), run it (exit 3 when the run itself fails), write the JSON report, and
exit 0 only when nothing was lost and every judged grid was confirmed or covered.
See docs/scenarios.md for the scenario format.
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_SCENARIO, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def run_command(scenario_path: str | Path, *, speed: float | None = None, report_path: str | None = None,
                db_url: str | None = None, workdir: str | None = None) -> int:
    from warnd.simulate.progress import Display
    from warnd.simulate.runner import Options, SimulationFailed, simulate
    from warnd.simulate.scenario import ScenarioError, load

    try:
        scenario = load(scenario_path)
    except ScenarioError as err:
        print(f"invalid scenario / 场景文件无效:\n{err}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    options = Options(speed, Path(report_path) if report_path else None, db_url, Path(workdir) if workdir else None)
    display = Display()
    try:
        result = asyncio.run(simulate(scenario, options, display))
    except ScenarioError as err:
        display.stop()
        print(f"invalid scenario / 场景文件无效:\n{err}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    except SimulationFailed as err:
        display.stop()
        print(f"simulation failed / 演练中断: {err}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        display.stop()
        print("interrupted; warnd and the simulators were stopped / 已中断", file=sys.stderr)
        return EXIT_INTERRUPTED
    if options.report_path is not None:
        options.report_path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"report written to {options.report_path}")
    return EXIT_OK if result["verdict"]["ok"] else EXIT_FAILED
