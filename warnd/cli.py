"""The `warnd` command. Every subcommand has --help; errors print their code and exit non-zero."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

from warnd.commands import approvals, audit, tokens, users
from warnd.commands.common import CONFIG_OPTION, DB_OPTION, Stop, with_database
from warnd.commands.common import load as _config
from warnd.commands.common import run as _run
from warnd.config import LOG_LEVELS, Config
from warnd.sim.cli import sim

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="warnd")
def main() -> None:
    """warnd — multi-channel early-warning dissemination engine / 多渠道预警信息发布引擎."""


@main.command()
@CONFIG_OPTION
@DB_OPTION
@click.option("--host", default=None, help="Listen address / 监听地址")
@click.option("--port", type=int, default=None, help="Listen port / 监听端口")
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Upgrade the database schema before starting / 启动前升级数据库结构")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None,
              help="Overrides log_level / 日志级别")
@click.option("--simulation-clock", hidden=True, default=None,
              help="SPEED@REAL_START@SIM_START: accelerated time, set by `warnd simulate` only")
def serve(config_path: str | None, database_url: str | None, host: str | None, port: int | None,
          migrate: bool, log_level: str | None, simulation_clock: str | None) -> None:
    """Run the API, the dispatcher and the sweeps / 运行 API、分发器与定时任务.

    Exit 2: bad configuration; 3: database unreachable; 4: cannot listen; 5: routing or a
    ladder reaches nobody (see the README's exit codes).
    """
    from warnd import logs
    from warnd.clock import ScaledClock
    from warnd.commands.common import migrate as _migrate
    config = _config(config_path, database_url=database_url, host=host, port=port,
                     log_level=log_level.upper() if log_level else None)
    logs.setup(config.log_level)
    if migrate:
        _migrate(config.database_url)
    clock = ScaledClock.parse(simulation_clock) if simulation_clock else None
    asyncio.run(_serve(config, clock))


async def _serve(config: Config, clock=None) -> None:  # noqa: ANN001 - a Clock, or the system's
    from aiohttp import web

    from warnd.commands.common import announce_readiness, database_failure, listen
    from warnd.engine.node import Node
    from warnd.http.app import build_app
    node = Node(config, clock=clock)
    try:  # refused before anything starts: the port is bound before the node starts, and kept
        announce_readiness(node.readiness)
        sock = listen(config.host, config.port)
    except Stop:
        await node.stop()
        raise
    try:
        await node.start()
    except Exception as exc:
        sock.close()
        await node.stop()
        stop = database_failure(exc, config.database_url)
        if stop is None:
            raise
        raise stop from None
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("warnd.node").info("serving", extra={"url": f"http://{config.host}:{sock.getsockname()[1]}",
                                                            "node": node.incarnation})
    await stop.wait()
    await runner.cleanup()
    await node.stop()


@main.group()
def db() -> None:
    """Database schema / 数据库结构."""


@db.command("upgrade")
@CONFIG_OPTION
@DB_OPTION
def db_upgrade(config_path: str | None, database_url: str | None) -> None:
    """Create or upgrade the schema to the newest version / 创建或升级到最新结构."""
    from warnd.commands.common import migrate
    config = _config(config_path, database_url=database_url)
    click.echo(f"database at revision {migrate(config.database_url)}")


@main.group()
def directory() -> None:
    """Regions, people, households, speakers, subscribers / 名录管理."""


@directory.command("import")
@CONFIG_OPTION
@DB_OPTION
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def directory_import(config_path: str | None, database_url: str | None, files: tuple[str, ...]) -> None:
    """Import YAML/CSV files; re-importing the same files changes nothing / 导入名录（可重复导入）."""
    config = _config(config_path, database_url=database_url)
    counts = _run(_import(config, [Path(f) for f in files]))
    for kind, c in counts.items():
        click.echo(f"{kind}: {c}")


async def _import(config: Config, paths: list[Path]) -> dict:
    from warnd.clock import SystemClock
    from warnd.store.directory import DirectoryStore
    return await with_database(config, lambda db: DirectoryStore(
        db, SystemClock(), allow_private_urls=config.webhook.allow_private_urls).import_files(paths))


@main.group()
def cap() -> None:
    """CAP 1.2 tools / CAP 工具."""


@cap.command("validate")
@CONFIG_OPTION
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def cap_validate(config_path: str | None, files: tuple[str, ...]) -> None:
    """Validate CAP files exactly as the API does; exit 0 only if all are valid / 校验 CAP 文件."""
    from warnd.ingest.validate import validate_file
    config = _config(config_path)
    all_ok = True
    for name in files:
        ok, lines = validate_file(Path(name), config)
        all_ok &= ok
        click.echo(f"{name}: {'valid / 有效' if ok else 'INVALID / 无效'}")
        for line in lines:
            click.echo(f"  {line}")
    sys.exit(0 if all_ok else 1)


main.add_command(sim)


SPEED_OPTION = click.option("--speed", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
                            help="Simulated seconds per real second (default: the scenario's) / 仿真加速倍数")
REPORT_OPTION = click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
                             help="Write the JSON report here / 输出 JSON 报告")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@SPEED_OPTION
@REPORT_OPTION
@click.option("--db", "db_url", default=None,
              help="Database URL (default: SQLite in a temporary directory) / 数据库地址")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the generated config, database and warnd logs here / 保留工作目录")
def simulate(scenario: str, speed: float | None, report_path: str | None, db_url: str | None,
             workdir: str | None) -> None:
    """Rehearse SCENARIO: warnd with simulated phones, speakers, subscribers / 按场景演练.

    Exit 0: nothing lost, every grid confirmed or covered; 1: not so; 2: bad scenario; 3: the run failed.
    """
    from warnd.simulate import run_command
    sys.exit(run_command(scenario, speed=speed, report_path=report_path, db_url=db_url, workdir=workdir))


@main.command()
@SPEED_OPTION
@REPORT_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the results here (default ./warnd-demo-<YYYYmmdd-HHMMSS>/): report.json, grids.csv, "
                   "channels.csv, timeline.csv, coverage.csv, report.html / 结果目录")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None,
              help="Language of the output (default: Chinese; English when LC_ALL/LANG starts with en) / 输出语言")
@click.option("--keep-running", is_flag=True,
              help="Afterwards leave warnd up on the demo's data, print its address, a console login and a "
                   "token; Ctrl-C stops it / 演示结束后保持 warnd 运行")
def demo(speed: float | None, report_path: str | None, out_dir: str | None, lang: str | None,
         keep_running: bool) -> None:
    """A county's rainstorm night: an orange warning, raised to red, then lifted; every grid's
    responsible person asked to confirm, escalation where nobody does. No accounts or services
    needed / 一键演示：暴雨橙色预警升级为红色后解除，逐网格叫应.

    Exit 0: every grid confirmed or covered, nothing lost; 1: not so; 3: the run failed.
    """
    from warnd.simulate.demo import run_demo
    sys.exit(run_demo(speed=speed, out=out_dir, report_path=report_path, lang=lang, keep_running=keep_running))


for command in (audit.audit, tokens.token, users.user, approvals.warning):
    main.add_command(command)
