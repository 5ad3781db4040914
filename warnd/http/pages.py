"""The two small mobile pages people reach by signed links, without a login (zh-CN first).

- `/c/{token}`: a confirmation link. GET only shows the warning and one button
  (link scanners prefetch GETs); the POST of that button confirms.
- `/d/{token}`: a door-to-door call list. Each household has small forms, one per
  outcome (told / moved with a head count / not at home / refused / needs help,
  with an optional note); a mark redirects back to the list (303). Plain forms:
  no JavaScript needed.

These are HTML pages, not API: a forged, expired or wrong-purpose link, an
unknown list and a warning no longer in force each get a clear page with the
right status, rendered here rather than as problem+json.
"""
from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from typing import Awaitable, Callable

from aiohttp import web

from warnd.domain.errors import WarndError
from warnd.domain.households import ALARMING, COVERING, MAX_NOTE, MAX_PEOPLE, MarkError, Outcome, parse_mark
from warnd.domain.model import Level, Status
from warnd.domain.signing import verify
from warnd.engine.liaison import door_policy
from warnd.engine.node import LINK_PATHS, Node
from warnd.http.keys import NODE
from warnd.render import environment
from warnd.store.call_lists import CallListStore, Marked, WarningHead

log = logging.getLogger("warnd.http.pages")

LEVEL_COLOURS = {Level.RED: "#c8102e", Level.ORANGE: "#e86a00", Level.YELLOW: "#f2c200", Level.BLUE: "#1f5fbf"}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never hand it to another site
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
# What went wrong → (status, key of the text in TEXT[language]["errors"]).
FAILURES = {"link.invalid": 403, "link.expired": 410, "not_found": 404, "inactive": 409, "bad_mark": 400,
            "bad_people": 400}
BUTTONS = (Outcome.TOLD, Outcome.NOT_HOME, Outcome.REFUSED)  # one tap each; moved and needs help have a field
COVERING_VALUES = frozenset(o.value for o in COVERING)
ALARMING_VALUES = frozenset(o.value for o in ALARMING)

TEXT: dict[str, dict] = {
    "zh-CN": {
        "lang": "zh-CN", "other_lang": "English", "other_code": "en", "drill": "演练",
        "level": "{}预警", "confirm_title": "确认收到预警", "confirm_button": "确认收到",
        "confirm_hint": "点击按钮即表示您已收到此预警。", "confirmed": "已确认", "confirmed_body":
        "已记录您确认收到此预警，谢谢。请按预警要求做好防范。", "already": "此前已确认",
        "already_body": "此前已记录您确认收到此预警，无需再次确认。", "instruction": "防御指引",
        "not_asked": "暂不需要您确认", "not_asked_body": "您所备份的网格由网格责任人确认；如需您确认，系统会另行通知您。",
        "list_title": "入户通知清单", "grid": "网格", "assignee": "负责入户", "progress": "已落实 {}/{}",
        "progress_hint": "已通知或已转移的住户才算落实；全部落实后本网格即算已覆盖。", "marked": "已标记 {}/{}",
        "vulnerable": "重点", "no_phone": "无电话", "marked_at": "{} 已标记", "unmarked": "未标记",
        "marks": {"notified": "已通知", "moved": "已转移", "not_home": "不在家", "refused": "拒绝转移",
                  "needs_help": "需要帮助"},
        "people_label": "转移人数", "people_value": "{}人", "note_label": "需要什么帮助（选填）",
        "revisit": "待回访", "called": "已自动联系该户电话", "reported": "已报告乡镇值班人员",
        "complete": "本网格已全部入户通知", "inactive": "该预警已解除或失效，无需继续入户。",
        "summary": "已通知 {notified}　已转移 {moved}（{people}人）　不在家 {not_home}　拒绝转移 {refused}　"
                   "需要帮助 {needs_help}", "empty": "本网格没有登记住户。",
        "sms_hint": "也可以短信回复入户情况，例如：已转移12人、2户不在家。",
        "errors": {
            "link.invalid": ("链接无效", "此链接无效或已被改动，未做任何更改。请使用短信中的原始链接，或联系县预警中心。"),
            "link.expired": ("链接已过期", "此链接已过期，未做任何更改。请联系县预警中心获取新链接。"),
            "not_found": ("未找到", "未找到该清单或住户，未做任何更改。"),
            "inactive": ("预警已结束", "该预警已解除、更新或过期，未做任何更改。"),
            "bad_mark": ("操作无效", "请选择：已通知、已转移、不在家、拒绝转移或需要帮助。未做任何更改。"),
            "bad_people": ("人数无效", f"已转移须填写转移人数（1–{MAX_PEOPLE}）。未做任何更改。"),
        },
    },
    "en": {
        "lang": "en", "other_lang": "中文", "other_code": "zh-CN", "drill": "EXERCISE",
        "level": "{} warning", "confirm_title": "Confirm you received this warning",
        "confirm_button": "I have received it", "confirm_hint": "Pressing the button records that you received it.",
        "confirmed": "Confirmed", "confirmed_body": "Your confirmation is recorded. Thank you; please act on the "
        "warning.", "already": "Already confirmed", "already_body": "Your confirmation was recorded earlier; "
        "nothing more to do.", "instruction": "What to do",
        "not_asked": "No confirmation needed from you yet", "not_asked_body": "The grids you back up are "
        "confirmed by their responsible persons; you will be asked if yours is needed.",
        "list_title": "Door-to-door list", "grid": "Grid", "assignee": "Walked by", "progress": "Reached {}/{}",
        "progress_hint": "A household counts as reached when told or moved; when all are, the grid is covered.",
        "marked": "Marked {}/{}",
        "vulnerable": "Priority", "no_phone": "no phone", "marked_at": "marked {}", "unmarked": "not marked",
        "marks": {"notified": "Told", "moved": "Moved", "not_home": "Not at home", "refused": "Refused to leave",
                  "needs_help": "Needs help"},
        "people_label": "People moved", "people_value": "{} people", "note_label": "What help (optional)",
        "revisit": "Revisit", "called": "their phone contacted", "reported": "township duty officer told",
        "complete": "All households reached", "inactive": "This warning is no longer in force; no more visits "
        "are needed.", "summary": "told {notified} · moved {moved} ({people} people) · not at home {not_home} · "
        "refused {refused} · needs help {needs_help}",
        "empty": "No households are registered in this grid.",
        "sms_hint": "You can also report by SMS, e.g. \"moved 12\" or 已转移12人.",
        "errors": {
            "link.invalid": ("Invalid link", "This link is not valid or was altered; nothing was changed. Use "
                             "the link from your SMS, or call the county warning centre."),
            "link.expired": ("Link expired", "This link has expired; nothing was changed. Ask the county "
                             "warning centre for a new one."),
            "not_found": ("Not found", "No such list or household; nothing was changed."),
            "inactive": ("Warning ended", "This warning was cancelled, updated or has expired; nothing was "
                         "changed."),
            "bad_mark": ("Invalid choice", "Choose told, moved, not at home, refused or needs help; nothing was "
                         "changed."),
            "bad_people": ("Invalid head count", f"Moved needs the number of people moved (1–{MAX_PEOPLE}); "
                           "nothing was changed."),
        },
    },
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageFailure(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def language(request: web.Request) -> str:
    """`?lang=en` (or zh) wins; otherwise Accept-Language starting with en; otherwise zh-CN."""
    chosen = request.query.get("lang", "").lower()
    if chosen:
        return "en" if chosen.startswith("en") else "zh-CN"
    return "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "zh-CN"


def _render(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    lang = language(request)
    keep = "?lang=en" if request.query.get("lang", "").lower().startswith("en") else ""
    html = environment().get_template(f"pages/{template}.html.j2").render(
        t=TEXT[lang], path=request.path, keep=keep, **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def _pages(handler: Handler) -> Handler:
    """Failures become a page in the visitor's language, with the status that says what happened."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (WarndError, PageFailure) as exc:
            key = exc.code if isinstance(exc, WarndError) else exc.key
            if key not in FAILURES:
                raise
            title, body = TEXT[language(request)]["errors"][key]
            return _render(request, "error", FAILURES[key], title=title, body=body)
    return wrapped


def _verified(request: web.Request, purpose: str) -> str:
    node = request.app[NODE]
    return verify(node.secret_key, purpose, request.match_info["token"], node.clock.now())


def _shown(at: datetime | None, zone: tzinfo) -> str:
    """A time as the visitor reads it: in the configured display_timezone (Asia/Shanghai)."""
    return at.astimezone(zone).strftime("%m-%d %H:%M") if at else ""


async def _warning(node: Node, head: WarningHead, lang: str) -> dict:
    """What both pages show of a warning: level colour, event, headline, instruction, drill marking."""
    level = Level(head.level)
    info = (await node.alerts.get(head.id)).alert.info_for(lang)
    return {
        "level_name": level.zh if lang == "zh-CN" else level.label.capitalize(),
        "colour": LEVEL_COLOURS[level], "dark_text": level is Level.YELLOW,
        "event": info.event if info else "", "headline": (info.headline or info.event) if info else "",
        "instruction": (info.instruction or "").strip() if info else "",
        "drill": Status(head.status).is_drill, "active": head.active(node.clock.now()),
    }


def _confirm_value(request: web.Request) -> tuple[int, str]:
    value = _verified(request, "confirm")
    warning_id, _, person_id = value.partition("/")
    if not warning_id.isdigit() or not person_id:
        raise PageFailure("link.invalid")
    return int(warning_id), person_id


async def _confirm_head(request: web.Request, warning_id: int) -> WarningHead:
    head = await CallListStore(request.app[NODE].db).warning(warning_id)
    if head is None:
        raise PageFailure("not_found")
    return head


@_pages
async def confirm_page(request: web.Request) -> web.Response:
    """Shows the warning and the button; changes nothing."""
    node = request.app[NODE]
    warning_id, person_id = _confirm_value(request)
    head = await _confirm_head(request, warning_id)
    shown = await _warning(node, head, language(request))
    outcome = None
    if shown["active"]:  # what this person's tap would confirm (the current version's, after an Update)
        answerable = await node.answers.open_for(person_id, warning_id, unasked=True)
        mine = await node.answers.open_for(person_id, warning_id)
        outcome = None if mine else ("not_asked" if answerable else "already")
    return _render(request, "confirm", w=shown, outcome=outcome)


@_pages
async def confirm_post(request: web.Request) -> web.Response:
    node = request.app[NODE]
    warning_id, person_id = _confirm_value(request)
    head = await _confirm_head(request, warning_id)
    if not head.active(node.clock.now()):
        raise PageFailure("inactive")
    changed = await node.answers.link_confirm(warning_id, person_id)
    node.metrics.answers.labels("link", "confirmed" if changed else "repeated").inc()
    return _render(request, "confirm", w=await _warning(node, head, language(request)),
                   outcome="confirmed" if changed else "already")


def _list_id(request: web.Request) -> int:
    value = _verified(request, "call-list")
    if not value.isdigit():
        raise PageFailure("link.invalid")
    return int(value)


@_pages
async def call_list_page(request: web.Request) -> web.Response:
    node = request.app[NODE]
    store = CallListStore(node.db)
    found = await store.get(_list_id(request))
    if found is None:
        raise PageFailure("not_found")
    lang = language(request)
    head = await store.warning(found.warning_id)
    assert head is not None  # a list is never without its warning
    policy = door_policy(node.config, node.channels)
    items = [{"id": i.id, "household_id": i.household_id, "address": i.address, "phone": i.phone,
              "vulnerable": i.vulnerable, "mark": i.mark, "people": i.people, "note": i.note or "",
              "done": i.mark in COVERING_VALUES, "marked_at": _shown(i.marked_at, node.config.display_zone),
              "follow": _follow(i.mark, bool(i.phone), bool(policy.follow_up), bool(policy.alarm_to))}
             for i in found.items]
    tally = found.tally
    return _render(request, "call_list", w=await _warning(node, head, lang), items=items,
                   buttons=[b.value for b in BUTTONS], max_people=MAX_PEOPLE, max_note=MAX_NOTE,
                   grid=found.grid, grid_name=found.grid_name or found.grid, assignee=found.assignee_name or "",
                   total=tally.total, marked=tally.marked, reached=tally.reached,
                   by_mark={**tally.by_outcome, "people": tally.moved_people},
                   complete=found.completed_at is not None,
                   completed_at=_shown(found.completed_at, node.config.display_zone))


def _follow(mark: str | None, phone: bool, calls: bool, alarms: bool) -> list[str]:
    """What a mark set off, as the visitor is told (keys of TEXT): a revisit, a call, the duty officer."""
    if mark == Outcome.NOT_HOME.value:
        return ["revisit", "called"] if phone and calls else ["revisit"]
    if mark in ALARMING_VALUES and alarms:
        return ["reported"]
    return []


@_pages
async def mark_item(request: web.Request) -> web.Response:
    node = request.app[NODE]
    list_id = _list_id(request)
    item_text = request.match_info["item_id"]
    form = await request.post()
    try:
        mark = parse_mark(str(form.get("mark", "")), str(form.get("people", "")), str(form.get("note", "")))
    except MarkError as exc:
        raise PageFailure(exc.key) from None
    if not item_text.isdigit() or len(item_text) > 18:  # past a database integer: no such item
        raise PageFailure("not_found")
    result = await CallListStore(node.db).mark_household(list_id, int(item_text), mark, node.clock.now(),
                                                         door_policy(node.config, node.channels))
    if result.outcome is Marked.NOT_FOUND:
        raise PageFailure("not_found")
    if result.outcome is Marked.INACTIVE:
        raise PageFailure("inactive")
    if result.effects.alarm is not None:
        node.metrics.alarms.labels(result.effects.alarm["code"]).inc()
        log.error("operator alarm: a household refused or needs help", extra={
            "alarm": True, "alarm_id": result.alarm_id, "list_id": list_id, **result.effects.alarm})
    if result.effects.sends:
        node.dispatcher.wake()
    keep = "?lang=en" if request.query.get("lang", "").lower().startswith("en") else ""
    raise web.HTTPSeeOther(f"/{LINK_PATHS['call-list']}/{request.match_info['token']}{keep}#i{item_text}",
                           headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def routes() -> list[web.RouteDef]:
    c, d = LINK_PATHS["confirm"], LINK_PATHS["call-list"]
    return [web.get(f"/{c}/{{token}}", confirm_page), web.post(f"/{c}/{{token}}", confirm_post),
            web.get(f"/{d}/{{token}}", call_list_page), web.post(f"/{d}/{{token}}/items/{{item_id}}", mark_item)]
