"""`warnd demo --keep-running`: warnd left up on the demo's data until Ctrl-C.

The run's own warnd and simulators are stopped by the runner; this starts a new
`warnd serve` on the same database (the demo's work directory), on a free port,
its clock going on at real speed from where the demo's simulated clock ended (so
the console shows the night's times in order). The loudspeakers' MQTT broker is
gone, so the speaker channel is off; SMS and calls still point at the stopped
simulator (a new warning's sends fail and are retried: nothing leaves the machine).
A console account with the admin role is created through the account store, with
a random password printed once, beside the API token the demo used.
"""
from __future__ import annotations

import asyncio
import secrets
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import yaml

from warnd.clock import ScaledClock, SystemClock
from warnd.config import load_config
from warnd.domain.authority import Role
from warnd.simulate.child import Child
from warnd.simulate.runner import free_port

ACCOUNT = "demo-admin"
LINES = {
    "up": ("warnd 仍在运行（演示数据）：{base}", "warnd keeps running on the demo's data: {base}"),
    "console": ("  控制台：{base}/console/  用户名 {name}  密码 {password}（只显示这一次）",
                "  console: {base}/console/  user {name}  password {password} (shown only this once)"),
    "token": ("  API 令牌：{token}（例：curl -H 'Authorization: Bearer {token}' {base}/api/v1/warnings）",
              "  API token: {token} (e.g. curl -H 'Authorization: Bearer {token}' {base}/api/v1/warnings)"),
    "note": ("  模拟器已停止：新发的短信和电话不会真正发出，喇叭渠道已关闭。按 Ctrl-C 停止。",
             "  the simulators are stopped: new SMS and calls go nowhere, loudspeakers are off. Ctrl-C stops it."),
    "stopped": ("warnd 已停止", "warnd stopped"),
    "died": ("warnd 意外退出，日志：{log}", "warnd exited on its own; log: {log}"),
}


@dataclass(frozen=True)
class Login:
    base: str
    name: str
    password: str
    token: str


def kept_config(workdir: Path, port: int) -> Path:
    """The run's configuration on a new port, with the speaker channel off (its broker is gone)."""
    config = yaml.safe_load((workdir / "warnd.yaml").read_text(encoding="utf-8"))
    base = f"http://127.0.0.1:{port}"
    config.update(port=port, public_base_url=base, node_id=f"{config.get('node_id', 'demo')}-kept")
    config["speaker"] = {**config.get("speaker", {}), "enabled": False}
    config.pop("mqtt", None)
    path = workdir / "warnd-kept.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def create_admin(config_path: Path) -> tuple[str, str]:
    """A console account with the admin role and a random password (a fresh name if taken)."""
    from warnd.store.database import Database
    from warnd.store.users import UserStore
    config = load_config(config_path)
    password = secrets.token_urlsafe(12)
    database = Database(config.database_url)
    try:
        users = UserStore(database, SystemClock(), config.accounts)
        names = {u.name for u in await users.list()}
        name = ACCOUNT if ACCOUNT not in names else f"{ACCOUNT}-{secrets.token_hex(2)}"
        await users.create(name, Role.ADMIN, "demo", password, display_name="演示管理员", actor="warnd demo")
    finally:
        await database.close()
    return name, password


async def serve_until_stopped(workdir: Path, result: dict, token: str, lang: str, say) -> int:  # noqa: ANN001
    lines = {k: v[0 if lang == "zh" else 1] for k, v in LINES.items()}
    port = free_port()
    config_path = kept_config(workdir, port)
    name, password = await create_admin(config_path)
    ended = datetime.fromisoformat(result["run"]["sim_start"]) + timedelta(seconds=result["run"]["simulated_seconds"])
    clock = ScaledClock(1.0, time.time(), ended)
    base = f"http://127.0.0.1:{port}"
    keep = workdir / "kept"
    keep.mkdir(exist_ok=True)
    child = Child(config_path, clock.spec(), base, keep)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with aiohttp.ClientSession() as session:
            await child.start(session)
        login = Login(base, name, password, token)
        for key in ("up", "console", "token", "note"):
            say(lines[key].format(**vars(login)))
        while not stop.is_set():
            if child.died():
                say(lines["died"].format(log=child.log_path))
                return 3
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(child.stop)
    say(lines["stopped"])
    return 0


def keep_running(workdir: Path, result: dict, token: str, lang: str, say) -> int:  # noqa: ANN001 - print-like
    """Serve the demo's data until SIGINT/SIGTERM; 0 when stopped so, 3 when warnd failed."""
    from warnd.simulate.child import ChildFailed
    try:
        return asyncio.run(serve_until_stopped(workdir, result, token, lang, say))
    except ChildFailed as err:
        say(("warnd 未能启动：" if lang == "zh" else "warnd did not start: ") + str(err))
        return 3
