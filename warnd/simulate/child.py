"""`warnd serve` as a real child process of the simulation: start, wait until ready, kill -9, stop.

The child runs in its own session with stdout and stderr in a log file per life
(`warnd-1.log`, `warnd-2.log` after a restart). On Linux it also gets SIGTERM
when the simulation process dies, however it dies, so no warnd outlives it.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

READY_SECONDS = 60.0
STOP_SECONDS = 10.0
DROPPED_ENV = ("TWILIO_REGION", "TWILIO_EDGE")  # would make the SDK rewrite the simulator's host


class ChildFailed(RuntimeError):
    """warnd exited or never became ready; the message ends with its log."""


def _die_with_parent() -> None:  # in the child, before exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    def __init__(self, config_path: Path, clock_spec: str, base_url: str, workdir: Path) -> None:
        self.config_path, self.clock_spec, self.base_url, self.workdir = config_path, clock_spec, base_url, workdir
        self.lives = 0
        self.proc: subprocess.Popen | None = None
        self.ready = asyncio.Event()  # set while the API answers; cleared when killed
        self.expected_exit = False
        self.startup_seconds: list[float] = []  # real seconds from the command to /readyz, per life

    @property
    def log_path(self) -> Path:
        return self.workdir / f"warnd-{self.lives}.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start a life of warnd with the same config and clock; return when /readyz answers 200."""
        self.lives += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARND_") and k not in DROPPED_ENV}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "warnd", "serve", "--config", str(self.config_path), "--no-migrate",
                 "--simulation-clock", self.clock_spec],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                preexec_fn=_die_with_parent)
        self.expected_exit = False
        started = time.monotonic()
        deadline = started + READY_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise ChildFailed(f"warnd exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                async with session.get(self.base_url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        self.ready.set()
                        self.startup_seconds.append(time.monotonic() - started)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ChildFailed(f"warnd was not ready within {READY_SECONDS:g} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def died(self) -> bool:
        """True when warnd exited without being told to."""
        return self.proc is not None and not self.expected_exit and self.proc.poll() is not None

    async def kill9(self) -> None:
        """SIGKILL warnd alone, with no chance to clean up (the scenario's crash)."""
        assert self.proc is not None
        self.expected_exit = True
        self.ready.clear()
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await asyncio.to_thread(self.proc.wait, STOP_SECONDS)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it does not go in time (sync: also used in finally)."""
        proc, self.expected_exit = self.proc, True
        self.ready.clear()
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(STOP_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_SECONDS)
