"""Real subprocesses for end-to-end tests: start, wait for, kill, and show what they said.

Every process runs in its own session (process group), with stdout and stderr going to
files, so a killed process loses nothing of its output and a test can read it while the
process runs. `Procs.close()` kills every group still alive; use it from a fixture
finalizer so nothing outlives a failing test.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A port nobody listens on right now (bind to port 0, read it back, let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05,
          alive: Sequence[Proc] = ()) -> T:
    """Poll until `predicate()` is truthy; fail loudly on timeout or when a needed process died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in alive:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.name} exited with {proc.returncode} while waiting for {what}\n"
                                     f"{proc.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        time.sleep(interval)


def warnd_command() -> list[str]:
    """The `warnd` console script next to this interpreter, or the same entry point via -c."""
    script = Path(sys.executable).parent / "warnd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from warnd.cli import main; main()"]


def clean_env() -> dict[str, str]:
    """The test's environment without WARND_* overrides, which would beat the config file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WARND_")}


def run(args: Sequence[str], *, timeout: float = 120) -> str:
    """Run a command to completion; return its stdout, or fail showing stderr."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=clean_env())
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited with {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Proc:
    def __init__(self, name: str, args: Sequence[str], logdir: Path) -> None:
        self.name = name
        self.args = list(args)
        self.stdout_path = logdir / f"{name}.stdout"
        self.stderr_path = logdir / f"{name}.stderr"
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=clean_env())
        self.pid = self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def first_line(self, timeout: float = 20) -> str:
        """The first complete line the process wrote to stdout."""
        def line() -> str | None:
            text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
            return text.split("\n", 1)[0].strip() if "\n" in text else None
        return until(line, timeout, f"{self.name} to print its first line", alive=[self])

    def kill9(self) -> None:
        """SIGKILL the process alone (no chance to clean up), and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, then SIGKILL it if it does not go in time."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)  # any child left behind in the group
        if self.popen.poll() is None:
            self.popen.wait(timeout=timeout)

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)  # the group id is the pid: start_new_session=True
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                out.append(f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(out) or f"--- {self.name}: no output ---"


class Procs:
    """The processes of one test; `close()` stops them all, `tails()` shows what they said."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Proc] = []

    def start(self, name: str, args: Sequence[str]) -> Proc:
        proc = Proc(name, args, self.logdir)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.started):
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {proc.name} (pid {proc.pid}) failed: {exc}", file=sys.stderr)

    def tails(self) -> str:
        return "\n".join(f"===== {p.name} (pid {p.pid}, exit {p.returncode}) =====\n{p.tail()}"
                         for p in self.started)


# -- tiny HTTP client (the standard library's, so the test process needs no event loop) --

class Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):  # noqa: ANN201
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> Response:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback test URLs
            return Response(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), dict(err.headers))


def http_ok(url: str, timeout: float = 2) -> bool:
    """True when GET url answers 200; False when it answers otherwise or not at all."""
    try:
        return http("GET", url, timeout=timeout).status == 200
    except (OSError, urllib.error.URLError):
        return False
