"""The bundled demo: a realistic invented county, built deterministically from a seed.

`generate_directory(...)` returns a directory in the import format (the mapping a
directory YAML file holds); scenarios use it as `directory: {generate: {...}}`.
Every name, address and number is invented; phones are sequential test numbers.
The same seed always gives the same county, so demo reports are comparable.

`run_demo(...)` is `warnd demo`: the bundled scenario (demo.yaml: orange, raised to
red, lifted) told in Chinese or English (demo_display), its results kept in an
output directory (report.json, demo_tables' CSVs, report_html's page) and, with
`keep_running`, warnd left up on its data (demo_serve).
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from warnd.simulate.scenario import packaged

DEMO_SCENARIO = "demo.yaml"
COUNTY_NAMES = {"421126": "蕲阳县"}
TOWNSHIPS = ["青石镇", "桐梓乡", "白云镇", "龙潭镇", "枫林乡", "石门镇", "杨柳湾乡", "松溪镇", "凤凰乡", "茶园镇",
             "竹山乡", "桃源镇", "金坪乡", "狮子口镇", "大河镇", "清水乡"]
VILLAGE_HEADS = "柳塘 枫林 石门 杨柳湾 河口 坪上 下湾 竹园 新屋 黄土岭 老鸦冲 高桥 王家畈 李家湾 陈家岗 田铺 " \
                "张家冲 大屋 塘坊 岩头 松树坪 桥头 新铺 油坊 茶山 水口 栗林 余家河 凉亭 三里畈".split()
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程魏苏吕丁任沈"
GIVEN = "建国红梅志强秀英海燕丽华德明永福春梅立新文静玉珍国庆长青桂兰大山小红卫东秀兰明亮桂芳金凤少华俊杰晓燕"
VULNERABLE_NOTES = ("独居老人", "行动不便", "留守儿童家庭", "孕妇", "残疾人家庭", "高龄老人")


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(SURNAMES) + given


def generate_directory(*, seed: int = 2026, county: str = "421126", townships: int = 10, grids: int = 200,
                       liaisons_per_grid: int = 8, households_per_grid: list[int] | tuple[int, int] = (5, 11),
                       speakers: int = 300, subscribers: int = 2) -> dict[str, Any]:
    rng = random.Random(seed)
    phone_seq = iter(range(10_000_000))

    def mobile(prefix: str = "139") -> str:
        return f"+86{prefix}{next(phone_seq):08d}"

    regions: list[dict] = [{"code": county, "name": COUNTY_NAMES.get(county, f"{county}县")}]
    people: list[dict] = []
    households: list[dict] = []
    grid_rows: list[tuple[str, str]] = []  # (grid code, village name)
    people += [{"id": f"county-duty-{i + 1}", "name": _name(rng), "region": county, "roles": ["county_duty"],
                "phone": mobile()} for i in range(5)]
    per_township = [grids // townships + (1 if t < grids % townships else 0) for t in range(townships)]
    village_names = iter(rng.sample(VILLAGE_HEADS, len(VILLAGE_HEADS)) * 100)
    for t in range(townships):
        tcode = f"{county}{100 + t:03d}"
        regions.append({"code": tcode, "name": TOWNSHIPS[t % len(TOWNSHIPS)] + ("" if t < len(TOWNSHIPS) else str(t)),
                        "parent": county})
        duty = [f"t{t:02d}-duty-{i + 1}" for i in range(3)]
        people += [{"id": pid, "name": _name(rng), "region": tcode, "roles": ["township_duty"], "phone": mobile(),
                    "backup": duty[(i + 1) % 3]} for i, pid in enumerate(duty)]
        villages = max(1, round(per_township[t] / 3))
        for v in range(villages):
            vcode = f"{tcode}{201 + v:03d}"
            vname = next(village_names) + "村"
            regions.append({"code": vcode, "name": vname, "parent": tcode})
            people.append({"id": f"v{vcode[-6:]}-head", "name": _name(rng), "region": vcode,
                           "roles": ["village_head"], "phone": mobile()})
            count = per_township[t] // villages + (1 if v < per_township[t] % villages else 0)
            for g in range(count):
                gcode = f"{vcode}{g + 1:03d}"
                regions.append({"code": gcode, "name": f"{vname}第{g + 1}网格", "parent": vcode})
                grid_rows.append((gcode, vname))
    for n, (gcode, vname) in enumerate(grid_rows):
        tag = f"g{n:04d}"
        liaisons = [f"{tag}-l{i + 1}" for i in range(liaisons_per_grid)]
        people.append({"id": f"{tag}-a", "name": _name(rng), "region": gcode, "roles": ["grid_responsible"],
                       "phone": mobile(), "backup": liaisons[0]})
        people += [{"id": pid, "name": _name(rng), "region": gcode, "roles": ["liaison"], "phone": mobile()}
                   for pid in liaisons]
        low, high = households_per_grid
        group = int(gcode[-3:])
        for h in range(rng.randint(low, high)):
            row: dict[str, Any] = {"id": f"{tag}-h{h + 1:02d}", "grid": gcode,
                                   "address": f"{vname}{group}组{h * 2 + 1}号"}
            if rng.random() < 0.15:
                row["vulnerable"] = True
                row["address"] += f"（{rng.choice(VULNERABLE_NOTES)}）"
            if rng.random() < 0.75:
                row["phone"] = mobile("137")
            households.append(row)
    speaker_rows = [{"id": f"spk-{i:04d}", "grid": grid_rows[i][0] if i < len(grid_rows)
                     else rng.choice(grid_rows)[0]} for i in range(speakers)]
    outlets = [("county-tv-playout", "cap", {}), ("wechat-bridge", "json", {"levels": ["orange", "red"]}),
               ("county-website", "json", {}), ("radio-playout", "cap", {"levels": ["red"]})]
    subscriber_rows = []
    for i in range(subscribers):
        sid, fmt, extra = outlets[i % len(outlets)]
        sid = sid if i < len(outlets) else f"{sid}-{i}"
        secret = "whsec_" + base64.b64encode(rng.randbytes(24)).decode()
        subscriber_rows.append({"id": sid, "url": f"http://127.0.0.1:9/{sid}", "secret": secret, "format": fmt,
                                "regions": [county], **extra})
    return {"regions": regions, "people": people, "households": households, "speakers": speaker_rows,
            "subscribers": subscriber_rows}


def scenario_path() -> str:
    return str(packaged(DEMO_SCENARIO))


def default_out_dir(now: datetime | None = None) -> Path:
    return Path.cwd() / f"warnd-demo-{(now or datetime.now()):%Y%m%d-%H%M%S}"


def run_demo(*, speed: float | None = None, out: str | None = None, report_path: str | None = None,
             lang: str | None = None, keep_running: bool = False) -> int:
    """`warnd demo`: the bundled scenario, told in `lang`, its results kept in `out` (default
    ./warnd-demo-<YYYYmmdd-HHMMSS>/): report.json, CSV tables, report.html. Exit codes as
    `warnd simulate` (0 ok, 1 not every grid reached or something lost, 2 bad scenario, 3 run
    failed, 130 interrupted)."""
    from warnd.simulate import EXIT_BAD_SCENARIO, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
    from warnd.simulate.demo_display import DemoDisplay, Words
    from warnd.simulate.demo_tables import write_tables
    from warnd.simulate.demo_text import T, choose
    from warnd.simulate.demo_view import View
    from warnd.simulate.report_html import write_html
    from warnd.simulate.runner import Options, SimulationFailed, simulate
    from warnd.simulate.scenario import ScenarioError, load

    lang = choose(lang)
    t = T(lang)
    try:
        scenario = load(scenario_path())
    except ScenarioError as err:
        print(f"invalid scenario / 场景文件无效:\n{err}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    out_dir = Path(out) if out else default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = out_dir / "work"  # warnd's config, database and logs: what --keep-running serves
    display = DemoDisplay(scenario, lang, out_dir)
    display.intro()
    try:
        result = asyncio.run(simulate(scenario, Options(speed, None, None, workdir), display))
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
    text = json.dumps(result, ensure_ascii=False, indent=2)
    (out_dir / "report.json").write_text(text, encoding="utf-8")
    write_tables(out_dir, result, View(result, scenario, lang), Words(scenario, lang))
    html = write_html(out_dir, result, scenario, lang)
    display.say("")
    display.say(t("files", out=out_dir))
    display.say(t("files_html", path=html))
    display.say(t("files_other"))
    if report_path:
        Path(report_path).write_text(text, encoding="utf-8")
        display.say(t("report_legacy", path=report_path))
    code = EXIT_OK if result["verdict"]["ok"] else EXIT_FAILED
    if keep_running:
        from warnd.simulate.demo_serve import keep_running as serve
        display.say("")
        served = serve(workdir, result, display.token, lang, display.say)
        code = code or served
    return code
