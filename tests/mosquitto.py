"""A real Mosquitto for tests: start, kill and restart one on a free port.

    async with running_mosquitto(tmp_path, persistent=True) as broker:
        broker.url …; await broker.restart()  # same port, sessions kept

Each broker gets its own temporary config (`listener PORT 127.0.0.1`,
`allow_anonymous true`, persistence in the test's temp directory when
`persistent`). Without mosquitto the test skips locally and fails under
CI=true (CI installs it).
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from warnd.sim.broker import Mosquitto, mosquitto_path


def require_mosquitto() -> str:
    path = mosquitto_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed")
    return path


@asynccontextmanager
async def running_mosquitto(tmp_path: Path, *, persistent: bool = False) -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto", binary=require_mosquitto(), persistent=persistent)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
