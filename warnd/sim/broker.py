"""The embedded MQTT broker, for when no `mqtt.url` is configured (the demo).

`start_embedded_broker(port)` spawns `mosquitto` on 127.0.0.1 with a temporary
config when the binary is installed (MQTT 5), else runs amqtt inside this
process (MQTT 3.1.1 only: warnd must then speak protocol 4). It returns
`Embedded(url, protocol, stop)`.

`Mosquitto` is also what the tests use to start, kill and restart a real broker
on a free port (see tests/mosquitto.py).

Mosquitto's per-client defaults are raised here: a multiplexed simulator (one
client for thousands of speakers) or a speaker that was away during a fan-out
can have far more than 1,000 QoS 1 messages queued (`max_queued_messages`,
beyond which mosquitto silently drops them) and 20 in flight.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("warnd.sim.broker")

READY_SECONDS = 10.0
STOP_SECONDS = 10.0


class Embedded(NamedTuple):
    url: str
    protocol: int  # 5 (mosquitto) or 4 (amqtt: MQTT 3.1.1)
    stop: Callable[[], Awaitable[None]]


class BrokerError(RuntimeError):
    """The broker did not start (exited, or its port never opened)."""


def mosquitto_path() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_config(port: int, persistence_dir: Path | None) -> str:
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true",
             f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root: do not drop to `mosquitto`
             "max_queued_messages 0",  # unlimited (default 1000, then messages are dropped)
             "max_inflight_messages 1000", "log_dest stderr", "log_type error", "log_type warning"]
    if persistence_dir is None:
        lines.append("persistence false")
    else:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 1"]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:  # in the child, before exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Mosquitto:
    """A spawned mosquitto on 127.0.0.1:`port`; `persistent` keeps sessions across restarts."""

    def __init__(self, workdir: Path, port: int | None = None, *, persistent: bool = False,
                 binary: str | None = None, die_with_parent: bool = False) -> None:
        self.binary = binary or mosquitto_path()
        if self.binary is None:
            raise BrokerError("mosquitto is not installed")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.persistent = persistent
        self.die_with_parent = die_with_parent  # Linux: the broker ends when warnd dies, even by kill -9
        self._proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        if self.persistent:
            data.mkdir(exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, data if self.persistent else None))
        with open(self.workdir / "mosquitto.log", "ab") as out:
            self._proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=out, stderr=out,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent if self.die_with_parent else None)
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while True:
            if not self.running:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if loop.time() > deadline:
                    raise BrokerError(f"mosquitto did not listen on {self.port} in {READY_SECONDS}s") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM saves the persistence file; SIGKILL does not) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.to_thread(proc.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, STOP_SECONDS)

    async def restart(self, sig: int = signal.SIGTERM) -> None:
        await self.stop(sig)
        await self.start()
        self.restarts += 1


async def start_embedded_broker(port: int, *, mosquitto: bool | None = None) -> Embedded:
    """A broker on 127.0.0.1:`port` (0: any free port): mosquitto if installed, else amqtt.

    `mosquitto=False` forces amqtt (tests of the fallback); True requires mosquitto.
    """
    if mosquitto is None:
        mosquitto = mosquitto_path() is not None
    if mosquitto:
        workdir = Path(tempfile.mkdtemp(prefix="warnd-mosquitto-"))
        broker = Mosquitto(workdir, port or None, persistent=True, die_with_parent=True)
        await broker.start()

        async def stop_mosquitto() -> None:
            await broker.stop()
            shutil.rmtree(workdir, ignore_errors=True)

        log.info("embedded mosquitto", extra={"url": broker.url})
        return Embedded(broker.url, 5, stop_mosquitto)
    return await _start_amqtt(port or free_port())


async def _start_amqtt(port: int) -> Embedded:
    from amqtt.broker import Broker  # imported only when needed: it is slow to import

    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
    broker = Broker(config)
    await broker.start()
    log.info("embedded amqtt (MQTT 3.1.1)", extra={"port": port})
    return Embedded(f"mqtt://127.0.0.1:{port}", 4, broker.shutdown)
