"""What every HTTP simulator does the same way: serve its app on a port, run until signalled."""
from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start `app` (no access log, no signal handling of its own); the runner and "host:port" bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0]
    return runner, f"{bound[0]}:{bound[1]}"


async def run_until_signalled(start: Callable[[], Awaitable[str]], stop: Callable[[], Awaitable[None]],
                              stats: Callable[[], Any]) -> None:
    """Serve until SIGINT or SIGTERM: the address on the first line of stdout, the counts last."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    print(await start(), flush=True)
    try:
        await stopping.wait()
    finally:
        await stop()
        print(json.dumps(asdict(stats())), flush=True)
