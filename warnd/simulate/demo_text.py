"""The words `warnd demo` prints and writes, in Chinese (first) and English.

`choose(lang)` picks the language: `--lang` if given, else the locale (LC_ALL, then
LANG: a value starting with "en" means English), else Chinese. `T(lang)` returns
a lookup: `t("key", n=3)` formats the string of that language. Every symbol or
term the demo shows is in `LEGEND`, printed before the run.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Mapping

LANGS = ("zh", "en")


def choose(lang: str | None, environ: Mapping[str, str] | None = None) -> str:
    if lang:
        return "en" if lang.lower().startswith("en") else "zh"
    env = os.environ if environ is None else environ
    locale = env.get("LC_ALL") or env.get("LANG") or ""
    return "en" if locale.lower().startswith("en") else "zh"


LEVEL = {"red": ("红色", "red"), "orange": ("橙色", "orange"), "yellow": ("黄色", "yellow"), "blue": ("蓝色", "blue")}
EVENT_EN = {"暴雨": "rainstorm", "山洪灾害": "flash flood", "地质灾害": "geohazard", "台风": "typhoon",
            "雷电": "thunderstorm"}
CHANNEL = {"sms": ("短信", "SMS"), "voice": ("语音电话", "voice calls"), "speaker": ("大喇叭", "loudspeakers"),
           "webhook": ("下游平台", "outlets")}
GRID_STATE = {"confirmed": ("已叫应", "confirmed"), "covered": ("已入户", "covered door to door"),
              "open": ("未落实", "open"), "closed": ("已结束未落实", "ended unconfirmed")}
HOW = {"sms": ("短信回复", "SMS reply"), "voice": ("电话按键", "keypress on the call"),
       "carried": ("沿用前一版本", "carried from the earlier version"), "door": ("逐户敲门", "door to door")}
# escalation rung (ladder:action) in plain words
RUNG = {"notify": ("通知备用人和乡镇值班员", "backup and township duty told"),
        "door_to_door": ("派发入户名单", "door-to-door list sent"),
        "alarm": ("向值班台告警", "operator alarm raised")}
LADDER = {"uncovered": ("喇叭未播出：", "loudspeaker silent: ")}

STRINGS: dict[str, tuple[str, str]] = {
    "title": ("蕲阳县暴雨预警演示（虚构县，全部数据为模拟）", "Qiyang county rainstorm warning demo (invented county, "
                                                       "all data simulated)"),
    "story": ("演示内容：先发布暴雨橙色预警（1 人签发），3 分钟后升级为红色预警（2 人审核签发），"
              "26 分钟后解除。网格责任人收到短信、电话后回复\"1\"确认（叫应）；无人叫应的网格逐级升级，直到有人上门敲门。",
              "What happens: an orange rainstorm warning (signed off by one), raised to red 3 minutes later "
              "(reviewed and signed off by two), lifted after 26 minutes. Each grid's responsible person "
              "confirms by replying \"1\" to the SMS or pressing 1 on the call; where nobody confirms, warnd "
              "escalates until someone knocks on doors."),
    "legend_head": ("说明：", "Legend:"),
    "api": ("warnd API: {api}（查看：curl -H 'Authorization: Bearer {token}' {api}/api/v1/warnings）",
            "warnd API: {api}  (read with: curl -H 'Authorization: Bearer {token}' {api}/api/v1/warnings)"),
    "speed": ("模拟时间以 {speed:g} 倍速运行；结果保存在 {out}", "simulated time runs {speed:g}× real time; "
                                                             "results go to {out}"),
    "starting": ("正在启动 warnd …", "starting warnd …"),
    "submitted": ("提交 {what} → {where}，待签发 0/{n}", "submitted {what} → {where}, awaiting approval 0/{n}"),
    "published": ("发布 {what} → {where}（计划发送 {planned} 条）", "issued {what} → {where} ({planned} messages "
                                                                   "planned)"),
    "raised": ("升级为{level}预警：{what} → {where}（计划发送 {planned} 条）",
               "raised to {level}: {what} → {where} ({planned} messages planned)"),
    "changed": ("更新 {what} → {where}（计划发送 {planned} 条）", "updated {what} → {where} ({planned} messages "
                                                                 "planned)"),
    "lifted": ("解除 {what}（通知 {planned} 条）", "lifted {what} ({planned} messages planned)"),
    "signed": ("{by} 签发 {a}/{n}", "{by} signed off {a}/{n}"),
    "signed_last": ("{by} 签发 {a}/{n}，签发完成（提交后 {took}）", "{by} signed off {a}/{n}: approved "
                                                                  "({took} after submission)"),
    "rejected": ("{by} 驳回：{reason}", "{by} rejected it: {reason}"),
    "crash": ("warnd 被强制终止（kill -9），恢复测试", "warnd killed (kill -9) to test recovery"),
    "restart": ("warnd 已重启", "warnd restarted"),
    "down": ("warnd 暂停（重启中）", "warnd DOWN (restarting)"),
    "nothing_sent": ("待签发，尚未发送", "awaiting approval, nothing sent"),
    "warning_col": ("预警", "warning"),
    "state_col": ("状态", "state"),
    "sent_col": ("送达/已发/计划", "delivered/sent/planned"),
    "grids_col": ("网格", "grids"),
    "rungs_col": ("升级次数", "escalations"),
    "lists_col": ("入户名单", "door lists"),
    "grid_text": ("已叫应 {confirmed}，已入户 {covered}，未落实 {open}{closed} / 共 {grids}",
                  "{confirmed} confirmed, {covered} covered, {open} open{closed} / {grids}"),
    "closed_part": ("，已结束未落实 {n}", ", {n} ended unconfirmed"),
    "door": ("上门：{walking} 人在走访，已标记 {marked} 户", "door to door: {walking} walking, {marked} households "
                                                          "marked"),
    "outside": ("外部实际收到：短信 {sms}，电话 {calls}，回复 {replies}，喇叭播放 {plays}，下游平台 {webhooks}",
                "received outside: {sms} SMS, {calls} calls, {replies} replies, {plays} loudspeaker plays, "
                "{webhooks} outlet messages"),
    "state_awaiting": ("待签发 {a}/{n}", "awaiting approval {a}/{n}"),
    "state_active": ("生效中", "in force"), "state_superseded": ("已被新版本取代", "replaced by a newer version"),
    "state_cancelled": ("已解除", "lifted"), "state_expired": ("已过期", "expired"),
    "state_rejected": ("已驳回", "rejected"),
    "summary_head": ("结果：", "Result:"),
    "summary_warning": ("{what}：{grids} 个网格，已叫应 {confirmed}，已入户 {covered}，未落实 {open}；"
                        "发布后 {p50} 达到 50%，{p90} 达到 90%，{p100} 全部落实",
                        "{what}: {grids} grids, {confirmed} confirmed, {covered} covered door to door, "
                        "{open} open; 50 % at {p50}, 90 % at {p90}, 100 % at {p100} after issue"),
    "summary_approval": ("审批用时 {took}（提交 → 签发）", "approval took {took} (submitted → signed off)"),
    "summary_not_woken": ("未叫醒（5 分钟内网格责任人没有确认）：{n} 个网格，之后均已由他人确认或入户",
                          "not woken (the grid's responsible person did not confirm within 5 min): {n} grids, "
                          "all confirmed by others or covered afterwards"),
    "summary_not_woken_open": ("未叫醒：{n} 个网格，其中 {left} 个至今未落实",
                               "not woken: {n} grids, {left} of them still open"),
    "summary_rungs": ("升级步骤触发 {n} 次：{parts}", "escalation steps fired {n} times: {parts}"),
    "summary_agree": ("warnd 记录的送达数与模拟器实际收到的一致：{totals}",
                      "what warnd recorded as delivered matches what the simulators received: {totals}"),
    "summary_disagree": ("注意：warnd 记录与实际收到不一致：{totals}",
                         "warning: warnd's record and what was received differ: {totals}"),
    "verdict_ok": ("结论：通过（verdict: OK）— 没有丢失消息，每个网格都已叫应或入户",
                   "verdict: OK — nothing lost, every grid confirmed or covered door to door"),
    "verdict_failed": ("结论：未通过（verdict: FAILED）— {reasons}", "verdict: FAILED — {reasons}"),
    "files": ("结果文件：{out}", "results: {out}"),
    "files_html": ("  报告（用浏览器打开）：{path}", "  report (open in a browser): {path}"),
    "files_other": ("  数据：report.json、grids.csv（每个网格）、channels.csv（每个渠道）、timeline.csv（时间线）",
                    "  data: report.json, grids.csv (per grid), channels.csv (per channel), timeline.csv"),
    "report_legacy": ("JSON 报告另存于 {path}", "JSON report also written to {path}"),
    "minutes": ("{m} 分 {s:02d} 秒", "{m}:{s:02d}"),
    "never": ("未达到", "not reached"),
    "all_county": ("{name}全县 {townships} 个乡镇、{villages} 个村（{grids} 个网格）",
                   "all of {name}: {townships} townships, {villages} villages ({grids} grids)"),
    "some_areas": ("{first}等 {n} 个地区（{grids} 个网格）", "{first} and {more} more ({grids} grids)"),
    "one_area": ("{first}（{grids} 个网格）", "{first} ({grids} grids)"),
    "warning_name": ("{event}{level}预警", "{level} {event} warning"),
}

# every symbol and term the demo prints, explained before the run
LEGEND: tuple[tuple[str, str], ...] = (
    ("叫应：网格责任人回复短信\"1\"或在电话里按 1，表示\"收到，已在处置\"。",
     "confirmed (叫应): the grid's responsible person replied \"1\" to the SMS or pressed 1 on the call."),
    ("已入户：没人叫应时，备用人或信息员拿到入户名单逐户敲门，全部住户标记后该网格算落实。",
     "covered door to door: nobody confirmed, so a backup or liaison got the household list and knocked on "
     "every door."),
    ("未落实：既没叫应也没入户完成。未叫醒：5 分钟内网格责任人本人没有确认。",
     "open: neither confirmed nor covered yet. not woken: the responsible person did not confirm within 5 min."),
    ("升级步骤：无人叫应时依次自动执行——5 分钟通知备用人（B角）和乡镇值班员，10 分钟派发入户名单，15 分钟向值班台告警。",
     "escalation steps: where nobody confirms, warnd in turn tells the backup and the township duty officer "
     "(5 min), sends a door-to-door list (10 min), raises an operator alarm (15 min)."),
    ("送达/已发/计划：例如 短信 300/310/320 表示计划 320 条，已发出 310 条，确认送达 300 条。",
     "delivered/sent/planned: e.g. SMS 300/310/320 means 320 planned, 310 sent, 300 confirmed delivered."),
    ("签发：预警须经审核、签发（制作 → 审核 → 签发 → 发布），签发前不发送任何消息。解除：预警结束，通知各方。",
     "approval: a warning is reviewed and signed off before anything is sent. lifted: the warning is over; "
     "everyone is told."),
    ("T+00:03:00：演练开始后的模拟时间；时刻为模拟时钟（加速运行）。",
     "T+00:03:00: simulated time since the start; clock times are the (accelerated) simulated clock."),
)


def T(lang: str) -> Callable[..., str]:  # noqa: N802 - reads like gettext's _
    i = 0 if lang == "zh" else 1

    def t(key: str, **values: object) -> str:
        return STRINGS[key][i].format(**values)
    return t


def word(table: Mapping[str, tuple[str, str]], key: str | None, lang: str) -> str:
    if key not in table:
        return str(key or "")
    return table[key][0 if lang == "zh" else 1]


def duration(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return T(lang)("never")
    s = int(round(seconds))
    return T(lang)("minutes", m=s // 60, s=s % 60)


REASONS = ((r"^(\d+) deliveries lost$", "{0} 条消息丢失"),
           (r"^(\d+) grids neither confirmed nor covered$", "{0} 个网格既未叫应也未入户"),
           (r"^(\d+) warnings never published.*$", "{0} 条预警始终未签发发布"))


def reasons(items: list[str], lang: str) -> str:
    """The verdict's reasons (report.build writes them in English), said in `lang`."""
    if lang != "zh":
        return "; ".join(items)
    out = []
    for item in items:
        for pattern, zh in REASONS:
            if m := re.match(pattern, item):
                item = zh.format(*m.groups())
                break
        out.append(item)
    return "；".join(out)


def legend_lines(lang: str) -> list[str]:
    i = 0 if lang == "zh" else 1
    return [T(lang)("legend_head")] + [f"  · {row[i]}" for row in LEGEND]
