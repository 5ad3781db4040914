"""The simulation report and its verdict (pure: plain facts in, a JSON-able dict out).

Two views of every send are set side by side, joined by warnd's delivery id,
which the outside sees too: in the signed StatusCallback URL of an SMS or a call
(`?d=<id>.<expiry>.<mac>`), in a speaker command's and a webhook's message id
(`msg_warnd_<id>`).

  inside   warnd's deliveries by channel and state (from its API)
  outside  what each simulator received: messages, unique deliveries, duplicates,
           and how many reached the person / speaker / subscriber

Per channel: `lost` = warnd says delivered, the outside never got it (an error);
`unrecorded` = the outside got it (before warnd's view was read) but warnd does not
record it as delivered (missed receipts), leaving out speakers whose scenario
behaviour loses acks; `agree` = neither. Deliveries still pending or sending at
the end are lost too, except a retry scheduled after the end; those, and sent or
uncertain ones, are listed as unsettled.

Approval (制作 → 审核 → 签发 → 发布): per warning, when it was submitted, each
approval or rejection (who, when), when it was published, when its first send
left, and the approval delay (published − submitted). A held warning reaches
nobody, so every send and coverage time counts from its publication, not from
its submission (as warnd's coverage summary does).

Verdict: ok unless something was lost, a grid of a chain's final version (the
newest that is neither a Cancel nor rejected) ended neither confirmed nor covered,
or that version was never published (still awaiting approval at the end), or a
crash the scenario put at an event (`crash.at_event`) never happened.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from warnd.domain.signing import shown_value

CALLBACK_TOKEN = re.compile(r"[?&]d=([^&]+)")
MESSAGE_ID = re.compile(r"^msg_warnd_([0-9]+)$")
LINK_TOKEN = re.compile(r"/([cd])/([^./\s]+)\.[0-9]+\.[A-Za-z0-9_-]+")
CHANNELS = ("sms", "voice", "speaker", "webhook")
REACHED = ("confirmed", "covered")
STUCK = ("pending", "sending")
UNSETTLED = ("sent", "uncertain")
READ_MARGIN = 1.0  # real seconds: outside events this close to warnd's read may not be in it yet


@dataclass
class Facts:
    scenario: dict
    run: dict
    warnings: list[dict]  # per issued step: warning (with deliveries), coverage, call_lists, planned, final …
    sms: list[dict]
    calls: list[dict]
    plays: list[dict]
    webhooks: list[dict]
    outside_stats: dict = field(default_factory=dict)
    crash: dict | None = None
    events: list[dict] = field(default_factory=list)
    walks: list[dict] = field(default_factory=list)
    silent_speakers: list[str] = field(default_factory=list)
    approvers: dict[str, str] = field(default_factory=dict)  # account → the name the scenario gave


def _id(pattern: re.Pattern, text: str | None) -> int | None:
    found = pattern.search(text or "")
    return int(found.group(1)) if found else None


def _callback_id(url: str | None) -> int | None:
    """The delivery id a callback URL names ("<id>" or "<id>.<attempt>", signed)."""
    found = CALLBACK_TOKEN.search(url or "")
    value = shown_value(found.group(1)) if found else None
    head = (value or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def normal_text(body: str) -> str:
    """An SMS as its reader sees it, without the parts of signed links that change per send."""
    return LINK_TOKEN.sub(r"/\1/\2", body)


def outside_by_delivery(f: Facts) -> tuple[dict[str, dict[int, list[dict]]], dict[str, int]]:
    """channel → delivery id → what the outside received for it; and per channel, what had no id."""
    out: dict[str, dict[int, list[dict]]] = {c: {} for c in CHANNELS}
    orphans: Counter[str] = Counter()

    def add(channel: str, did: int | None, record: dict) -> None:
        if did is None:
            orphans[channel] += 1
        else:
            out[channel].setdefault(did, []).append(record)

    for m in f.sms:
        add("sms", _callback_id(m.get("callback")), {"delivered": m["status"] == "delivered",
                                                       "at": m.get("finished_at"), "to": m["to"],
                                                       "text": normal_text(m["body"])})
    for c in f.calls:
        add("voice", _callback_id(c.get("callback")), {"delivered": c["status"] == "completed" and c["answered"],
                                                         "at": c.get("finished_at"), "to": c["to"]})
    for p in f.plays:
        add("speaker", _id(MESSAGE_ID, p["message_id"]), {"delivered": p["played"], "at": p["at"], "to": p["speaker"]})
    for w in f.webhooks:
        add("webhook", _id(MESSAGE_ID, w["id"]), {"delivered": True, "at": w["at"], "to": w["path"]})
    return out, dict(orphans)


def _seconds(at: str | None, since: datetime) -> float | None:
    return None if not at else round((datetime.fromisoformat(at) - since).total_seconds(), 1)


def _channel(rows: list[dict], outside: dict[int, list[dict]], read_at: float, silent: set[str],
             channel: str, cancel: bool, since: datetime, at: Any) -> dict:
    """One channel of one warning; `at(epoch)` turns an outside moment into simulated seconds since `since`."""
    ids = {d["id"] for d in rows}
    got = {did: outside[did] for did in ids if did in outside}
    if cancel and channel == "speaker":  # a stop command is delivered when the speaker received it
        got = {did: [{**r, "delivered": True, "at": r["at"] or 0.0} for r in v] for did, v in got.items()}
    received = sum(len(v) for v in got.values())
    if channel == "voice":  # several calls to one delivery are redials; a second answered one is a duplicate
        duplicates = sum(max(sum(r["delivered"] for r in v) - 1, 0) for v in got.values())
    else:
        duplicates = received - len(got)
    out_delivered = {did for did, v in got.items() if any(r["delivered"] for r in v)}
    in_delivered = {d["id"] for d in rows if d["state"] == "delivered"}
    recipient = {d["id"]: d["recipient_id"] for d in rows}
    settled_before_read = {did for did in out_delivered
                           if min((r["at"] or 0) for r in got[did] if r["delivered"]) < read_at - READ_MARGIN}
    unrecorded = sorted(did for did in settled_before_read - in_delivered
                        if not (channel == "speaker" and recipient.get(did) in silent))
    lost = sorted(in_delivered - out_delivered)
    lag = {"outside_last_seconds": max((at(r["at"]) for v in got.values() for r in v if r["delivered"] and r["at"]),
                                       default=None),
           "inside_last_seconds": max((_seconds(d.get("done_at"), since) for d in rows
                                       if d["state"] == "delivered" and d.get("done_at")), default=None)}
    section = {"inside": dict(Counter(d["state"] for d in rows)),
               "outside": {"received": received, "unique": len(got), "duplicates": duplicates,
                           "delivered": len(out_delivered)},
               "inside_delivered": len(in_delivered), "last_delivery": lag, "lost": lost, "unrecorded": unrecorded,
               "agree": not lost and not unrecorded}
    if channel == "sms":
        texts = Counter((r["to"], r["text"]) for v in got.values() for r in v)
        section["outside"]["same_text_twice"] = sum(n - 1 for n in texts.values() if n > 1)
    return section


def _grid(g: dict, since: datetime) -> dict:
    how = None
    if g["state"] == "confirmed":
        how = "carried from the earlier version" if g.get("channel") == "carried" else \
            f"confirmed by {g.get('confirmed_by')} via {g.get('channel')}" + (" (late)" if g.get("late") else "")
    elif g["state"] == "covered":
        how = "door to door: every household marked"
    door = g.get("door_to_door")
    return {"grid": g["grid"], "state": g["state"], "how": how,
            "confirmed_at_seconds": _seconds(g.get("confirmed_at"), since),
            "covered_at_seconds": _seconds(g.get("covered_at"), since),
            "not_woken_at_seconds": _seconds(g.get("not_woken_at"), since),
            "uncovered_reason": g.get("uncovered_reason"),
            "rungs_fired": [f"{r['ladder']}:{r['action']}@{_seconds(r['fired_at'], since)}"
                            for r in g.get("rungs", []) if r["state"] == "fired"],
            "door_to_door": None if not door else {
                "list_id": door["list_id"], "assignee": door["assignee_id"], "households": door["total"],
                "marked": door["marked"], "completed_at_seconds": _seconds(door.get("completed_at"), since)}}


def _approval(w: dict, sim_start: datetime, names: dict[str, str]) -> dict:
    """Submitted, each decision, published, first sent: simulated seconds from T+0; the delay between."""
    submitted, published = _seconds(w["created_at"], sim_start), _seconds(w.get("published_at"), sim_start)
    return {"needed": w.get("approvals_needed") or 0, "submitted_at_seconds": submitted,
            "decisions": [{"by": names.get(a["approver"], a["approver"]), "account": a["approver"],
                           "decision": a["decision"], "at_seconds": _seconds(a["at"], sim_start),
                           **({"reason": a["reason"]} if a.get("reason") else {})} for a in w.get("approvals", [])],
            "published_at_seconds": published,
            "first_sent_at_seconds": _seconds(w.get("first_sent_at"), sim_start),
            "delay_seconds": None if published is None else round(published - submitted, 1),
            "rejected_reason": w.get("rejected_reason")}


def _timing(w: dict, planned: list[int], coverage: dict, since: datetime) -> dict:
    rows = w.get("deliveries", [])
    moments = [d.get("sent_at") or d.get("done_at") for d in rows
               if d["state"] not in ("superseded", "cancelled", "expired", "pending")]
    moments = [m for m in moments if m]
    wanted = set(planned)
    first_wave = [d for d in rows if d["id"] in wanted and d["state"] not in ("superseded", "cancelled", "expired")]
    all_sent = None
    if first_wave and not any(d["state"] in STUCK for d in first_wave):
        done = [d.get("sent_at") or d.get("done_at") for d in first_wave]
        all_sent = max((_seconds(m, since) for m in done if m), default=None)
    summary = coverage.get("summary", {})
    return {"first_send_seconds": min((_seconds(m, since) for m in moments), default=None),
            "all_sent_seconds": all_sent,
            **{f"coverage_{p}_seconds": summary.get(f"p{p}_seconds") for p in (50, 90, 100)}}


def build(f: Facts) -> dict:
    outside, orphans = outside_by_delivery(f)
    read_at = f.run.get("read_at", float("inf"))
    silent = set(f.silent_speakers)
    sim_start = datetime.fromisoformat(f.run["sim_start"])
    real_start, speed = f.run.get("real_start", 0.0), f.scenario.get("speed", 1.0)
    ended_at = sim_start + timedelta(seconds=f.run["simulated_seconds"])  # a retry due later is not stuck
    warnings, lost, unsettled, unreached, unpublished = [], [], [], [], []
    totals: dict[str, dict[str, int]] = {}
    for item in f.warnings:
        w, coverage = item["warning"], item["coverage"] or {}
        # sends and coverage count from publication: a warning held for approval reaches nobody
        since = datetime.fromisoformat(w.get("published_at") or w["created_at"])
        rows = w.get("deliveries", [])
        channels = {}
        for channel in sorted({d["channel"] for d in rows}):
            section = _channel([d for d in rows if d["channel"] == channel], outside.get(channel, {}), read_at,
                               silent, channel, w["msg_type"] == "Cancel", since,
                               lambda epoch, c=since: round(((sim_start - c).total_seconds()
                                                               + (epoch - real_start) * speed), 1))
            channels[channel] = section
            t = totals.setdefault(channel, Counter())
            t.update({"inside_delivered": section["inside_delivered"], "lost": len(section["lost"]),
                      "unrecorded": len(section["unrecorded"]), **{f"outside_{k}": v for k, v in
                                                                   section["outside"].items()}})
            lost += [{"warning": item["name"], "delivery_id": did, "channel": channel,
                      "why": "warnd recorded it delivered; the outside never received it"} for did in section["lost"]]
        for d in rows:
            retrying = d["state"] == "pending" and d.get("attempts") and d.get("next_attempt_at") \
                and datetime.fromisoformat(d["next_attempt_at"]) > ended_at
            if d["state"] in STUCK and not retrying:
                lost.append({"warning": item["name"], "delivery_id": d["id"], "channel": d["channel"],
                             "recipient": d["recipient_id"], "why": f"still {d['state']} at the end"})
            elif d["state"] in UNSETTLED or retrying:
                unsettled.append({"warning": item["name"], "delivery_id": d["id"], "channel": d["channel"],
                                  "recipient": d["recipient_id"], "state": d["state"], "last_code": d.get("last_code")})
        grids = [_grid(g, since) for g in coverage.get("grids", [])]
        if item["final"] and w["state"] == "awaiting":
            unpublished.append({"warning": item["name"], "id": w["id"], "approvals": len(w.get("approvals", [])),
                                "needed": w.get("approvals_needed")})
        if item["final"]:
            unreached += [{"warning": item["name"], "grid": g["grid"], "state": g["state"]}
                          for g in grids if g["state"] not in REACHED]
        lists = item.get("call_lists", [])
        warnings.append({
            "name": item["name"], "action": item["action"], "chain": item["chain"], "id": w["id"],
            "msg_type": w["msg_type"], "level": w.get("level"), "state": w["state"], "department": item["department"],
            "identifier": w.get("identifier"), "issued_at_seconds": item["issued_at_seconds"],
            "expires": w.get("expires"), "judged": item["final"],
            "approval": _approval(w, sim_start, f.approvers),
            "channels": channels, "timing": _timing(w, item["planned"], coverage, since),
            "coverage": coverage.get("summary"),
            "door_to_door": {"lists": len(lists), "completed": sum(1 for cl in lists if cl.get("completed_at")),
                             "households": sum(cl.get("total", 0) for cl in lists),
                             "marked": sum(cl.get("marked", 0) for cl in lists)},
            "grids": grids})
    agree = all(s["agree"] for w in warnings for s in w["channels"].values())
    in_flight = set((f.crash or {}).get("in_flight_ids", ()))
    disagreements = [{"warning": w["name"], "channel": c, "delivery_id": did,
                      "in_flight_at_crash": did in in_flight}
                     for w in warnings for c, s in w["channels"].items() for did in s["unrecorded"]]
    reasons = []
    if lost:
        reasons.append(f"{len(lost)} deliveries lost")
    if unreached:
        reasons.append(f"{len(unreached)} grids neither confirmed nor covered")
    if unpublished:
        reasons.append(f"{len(unpublished)} warnings never published (still awaiting approval)")
    if f.crash is not None and f.crash.get("happened") is False:
        reasons.append(f"the crash at {f.crash['at_event']} did not happen: that event never came")
    return {
        "scenario": f.scenario,
        "run": {k: v for k, v in f.run.items() if k not in ("read_at", "real_start")},
        "crash": f.crash,
        "events": f.events,
        "warnings": warnings,
        "totals": {c: dict(v) for c, v in totals.items()},
        "outside": {"unattributed": orphans, **f.outside_stats},
        "door_to_door_walks": f.walks,
        "lost": lost,
        "unsettled": unsettled,
        "unreached_grids": unreached,
        "unpublished": unpublished,
        "inside_outside_agree": agree,
        "disagreements": disagreements,  # received outside, not recorded as delivered inside
        "verdict": {"ok": not reasons, "reasons": reasons},
        "simulated_from": sim_start.isoformat(),
    }


def approval_line(w: dict) -> str | None:
    """One warning's way through approval, in simulated time; None if it needed none."""
    a = w["approval"]
    if not a["needed"] and not a["decisions"]:
        return None
    parts = [f"{w['name']} (warning {w['id']}, {w['level']}): submitted 提交 {clock(a['submitted_at_seconds'])}"]
    for d in a["decisions"]:
        verb = "签发" if d["decision"] == "approved" else "驳回 rejected"
        parts.append(f"{d['by']} {verb} {clock(d['at_seconds'])}" + (f" ({d['reason']})" if d.get("reason") else ""))
    if a["published_at_seconds"] is not None:
        parts.append(f"published 发布 {clock(a['published_at_seconds'])} "
                     f"(approval took 审批用时 {_fmt(a['delay_seconds'])})")
        parts.append(f"first sent 首发 {clock(a['first_sent_at_seconds'])}" if a["first_sent_at_seconds"] is not None
                     else "nothing sent 未发送")
    elif w["state"] == "awaiting":
        approved = sum(1 for d in a["decisions"] if d["decision"] == "approved")
        parts.append(f"never published: still awaiting approval 仍待签发 {approved}/{a['needed']}")
    else:
        parts.append("never published 未发布")
    return " · ".join(parts)


def coverage_lines(result: dict) -> list[str]:
    """The closing summary: each warning's approval, one line per judged warning, plus the verdict."""
    lines = [line for w in result["warnings"] if (line := approval_line(w))]
    for w in result["warnings"]:
        if not w["judged"] or not w["coverage"] or w["approval"]["published_at_seconds"] is None:
            continue
        c, t = w["coverage"], w["timing"]
        lines.append(f"{w['name']} (warning {w['id']}, {w['level']}, {w['state']}): {c['grids']} grids — "
                     f"{c['confirmed']} confirmed, {c['covered']} covered door to door, {c['open']} open, "
                     f"{c['closed']} closed; 50/90/100 % at {_fmt(t['coverage_50_seconds'])} / "
                     f"{_fmt(t['coverage_90_seconds'])} / {_fmt(t['coverage_100_seconds'])} after publication")
    totals = ", ".join(f"{c} {v.get('inside_delivered', 0)}/{v.get('outside_delivered', 0)}"
                       for c, v in sorted(result["totals"].items()))
    lines.append(f"delivered inside/outside: {totals}; inside and outside "
                 f"{'agree' if result['inside_outside_agree'] else 'DISAGREE'}")
    v = result["verdict"]
    lines.append("verdict: OK — nothing lost, every grid confirmed or covered" if v["ok"]
                 else "verdict: FAILED — " + "; ".join(v["reasons"]))
    return lines


def clock(seconds: float | None) -> str:
    """Simulated seconds from the start → T+00:03:00."""
    if seconds is None:
        return "—"
    s = int(abs(seconds))
    return f"T{'-' if seconds < 0 else '+'}{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"
