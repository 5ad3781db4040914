"""Apprise as a second baseline for the webhook fan-out (issue 16: "≥ 5× Apprise on the same job").

Apprise (https://github.com/caronc/Apprise) is the library many would pick
instead of warnd to send a warning to N webhooks. It is optional here: when it
is not importable, `AVAILABLE` is False and the benchmark says "apprise not
installed: baseline skipped" instead of failing.

What is sent: one `json://127.0.0.1:{port}{prefix}s{i}` notification per
subscriber, title the warning's headline, message the CAP XML text, through
the public API (`Apprise()`, `.add(url)`, `.notify(body=…, title=…)`). Apprise
builds the body itself (`{"version", "title", "message", "attachments", "type"}`)
and POSTs it with `requests` (a new connection per message, no retries). The
sink checks Standard Webhooks signatures, so each URL carries the three
signature headers as Apprise's `+header=value` arguments; the signature is
computed over the body Apprise will send (`expected_body`, the plugin's
`json.dumps` of that dict). If Apprise ever serialises differently, the sink
rejects every message and the benchmark fails on correctness, not silently.

Concurrency: Apprise's own. The fan-out is done the way Apprise is meant to
be used: one `Apprise` with every subscriber's URL added, one `async_notify`.
Apprise runs each service's blocking `send()` in its shared
`ThreadPoolExecutor()`, min(32, CPUs + 4) workers: 6 on this 2-core machine,
not the 64 connections of the raw baseline. More did not help: one
`notify()` per subscriber from 6 / 16 / 64 threads of our own gave 349 / 405 /
322 messages/s against 471/s for `async_notify` (2,000 messages, loaded
machine). Apprise's client is CPU-bound (≈ 2 ms per message under the GIL), so
its default is its best case here. Signing and `add(url)` (parsing each signed
URL: the headers differ per message) are inside the timed window, as the raw
baseline's signing is; they run before the first send.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from standardwebhooks import Webhook

try:
    import apprise
except ImportError:  # optional: the benchmark skips this baseline
    apprise = None

AVAILABLE = apprise is not None
VERSION = getattr(apprise, "__version__", None) if apprise is not None else None
SKIPPED = "apprise not installed: baseline skipped"


def message_text(body: bytes) -> str:
    """The CAP XML as the notification's message. Apprise strips surrounding white space from
    the message before it sends it, so it is stripped here, and the signed body is the sent one."""
    return body.decode("utf-8").strip()


def expected_body(title: str, message: str) -> str:
    """The body Apprise's json:// plugin POSTs for a text notification without attachments."""
    return json.dumps({"version": "1.0", "title": title, "message": message, "attachments": [], "type": "info"})


def post_all(sink_url: str, prefix: str, title: str, message: str, secret: str, count: int,
             timeout: float) -> tuple[int, float]:
    """Send `count` signed JSON notifications with Apprise to `{sink}{prefix}s{i}`: one `Apprise`
    with every subscriber's URL added, one `async_notify`. Returns the number not reported as
    sent (failed, timed out, or not added) and the CPU seconds of building the notifier (signing,
    `add(url)` for every subscriber), which happens before the first send."""
    if apprise is None:
        raise RuntimeError(SKIPPED)
    where = urlsplit(sink_url)
    signer = Webhook(secret)
    payload = expected_body(title, message)
    c0 = time.process_time()
    notifier = apprise.Apprise()
    added = 0
    for i in range(count):
        msg_id = f"msg_apprise_{i}"
        stamp = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
        query = urlencode({"+webhook-id": msg_id, "+webhook-timestamp": str(int(stamp.timestamp())),
                           "+webhook-signature": signer.sign(msg_id, stamp, payload)})
        added += bool(notifier.add(f"json://{where.hostname}:{where.port}{prefix}s{i}?{query}"))
    building = time.process_time() - c0

    async def send() -> int:
        outcome = await asyncio.wait_for(notifier.async_notify(body=message, title=title), timeout)
        return outcome.success_count

    try:
        sent = asyncio.run(send())
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - counted as not sent, the sink tells the rest
        sent = 0
    return count - min(sent, added), building
