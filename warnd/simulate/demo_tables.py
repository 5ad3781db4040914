"""The demo's CSV tables: UTF-8 with a BOM (so Excel reads the Chinese), headers "中文 English".

  grids.csv     per grid of the judged warning: township, village, responsible person,
                outcome, how, when confirmed / covered / not woken, escalation steps
  channels.csv  per warning and channel: planned, sent, delivered, received outside, lost
  timeline.csv  what happened when (clock time, T+, the event in the chosen language)
  coverage.csv  the coverage curve: minutes after issue → % of grids confirmed or covered
"""
from __future__ import annotations

import csv
from pathlib import Path

from warnd.simulate.demo_display import Words
from warnd.simulate.demo_text import CHANNEL, GRID_STATE, word
from warnd.simulate.demo_view import View
from warnd.simulate.progress import sent_count
from warnd.simulate.report import clock

GRIDS = ("乡镇 township", "村 village", "网格编码 grid code", "网格 grid", "网格责任人 responsible person",
         "电话 phone", "结果 outcome", "状态码 state", "落实方式 how", "叫应时间 confirmed at",
         "入户完成时间 covered at", "未叫醒时间 not woken at", "发布后分钟 minutes after issue",
         "升级步骤 escalation steps")
CHANNELS = ("预警 warning", "预警编号 warning id", "渠道 channel", "计划 planned", "已发出 sent", "送达 delivered",
            "外部收到 received outside", "外部重复 duplicates outside", "丢失 lost", "记录与实际一致 agree")
TIMELINE = ("时刻 clock", "开始后 since start", "秒 seconds", "事件 event", "原始记录 raw")
COVERAGE = ("发布后分钟 minutes after issue", "覆盖率 % coverage %")


def _write(path: Path, header: tuple[str, ...], rows: list[list]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def write_tables(out_dir: Path, result: dict, view: View, words: Words) -> list[Path]:
    lang = view.lang
    grid_rows = []
    for r in view.grid_rows():
        reached = min((x for x in (r["confirmed"], r["covered"]) if x is not None), default=None)
        grid_rows.append([r["township"], r["village"], r["grid"], r["grid_name"], r["person"], r["phone"],
                          word(GRID_STATE, r["state"], lang), r["state"], r["how"],
                          view.at(r["confirmed"], True) if r["confirmed"] is not None else "",
                          view.at(r["covered"], True) if r["covered"] is not None else "",
                          view.at(r["not_woken"], True) if r["not_woken"] is not None else "",
                          _minutes(reached if r["state"] in ("confirmed", "covered") else None),
                          "；".join(r["rungs"])])
    channel_rows = []
    for w in result["warnings"]:
        for c, s in sorted(w["channels"].items()):
            channel_rows.append([words.name({"name": w["name"], "id": w["id"], "level": w["level"]}), w["id"],
                                 word(CHANNEL, c, lang), sum(s["inside"].values()), sent_count(s["inside"]),
                                 s["inside_delivered"], s["outside"]["delivered"], s["outside"]["duplicates"],
                                 len(s["lost"]), "yes" if s["agree"] else "NO"])
    timeline_rows = [[view.at(e["at_seconds"]), clock(e["at_seconds"]), e["at_seconds"], words.event(e["event"]),
                      e["event"]] for e in result["events"]]
    coverage_rows = [[_minutes(t), p] for t, p in view.curve()]
    files = {"grids.csv": (GRIDS, grid_rows), "channels.csv": (CHANNELS, channel_rows),
             "timeline.csv": (TIMELINE, timeline_rows), "coverage.csv": (COVERAGE, coverage_rows)}
    for name, (header, rows) in files.items():
        _write(out_dir / name, header, rows)
    return [out_dir / name for name in files]
