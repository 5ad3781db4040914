"""What every `warnd` subcommand shares: the config and database options, running a coroutine
with errors as clear messages (never a stack trace) and the exit codes of warnd/exits.py."""
from __future__ import annotations

import asyncio
import sys

import click

from warnd.config import Config, load_config
from warnd.domain.errors import WarndError
from warnd.exits import Exit, Stop

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                             envvar="WARND_CONFIG", help="YAML configuration file / 配置文件")
DB_OPTION = click.option("--database-url", default=None, help="Overrides database_url, e.g. "
                         "postgresql://user@host/db / 数据库地址")

# A schema not (yet) created: the database answered, the table was not there.
_NO_SCHEMA = ("no such table", "does not exist", "undefinedtable")


def load(config_path: str | None, **overrides: object) -> Config:
    try:
        return load_config(config_path, **overrides)
    except WarndError as err:
        raise Stop(str(err), Exit.CONFIG) from None


def run(coro):  # noqa: ANN001, ANN202
    try:
        return asyncio.run(coro)
    except WarndError as err:
        raise Stop(str(err), Exit.CONFIG if err.code.startswith("config.") else Exit.FAILED) from None
    except Exception as exc:
        stop = database_failure(exc)
        if stop is None:
            raise
        raise stop from None


def database_failure(exc: BaseException, url: str | None = None) -> Stop | None:
    """A database error as one message: unreachable (exit 3) or without warnd's schema (exit 1);
    None for anything that is not a database error."""
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
    if not isinstance(exc, DBAPIError):
        return None
    first = str(getattr(exc, "orig", None) or exc).splitlines()[0].strip()
    where = f" ({hide_password(url)})" if url else ""
    if isinstance(exc, (OperationalError, ProgrammingError)) and any(s in first.lower() for s in _NO_SCHEMA):
        return Stop(f"database{where} has no warnd schema yet: {first}\n"
                    "  run `warnd db upgrade` first / 数据库尚未建立 warnd 的表结构：请先运行 warnd db upgrade",
                    Exit.FAILED)
    if isinstance(exc, OperationalError):
        return Stop(f"database unreachable{where}: {first}\n"
                    "  is the database server running, and are database_url (or WARND_DATABASE_URL, "
                    "--database-url) host, port and password right? / 无法连接数据库：请确认数据库服务已启动，"
                    "并检查 database_url（或 WARND_DATABASE_URL、--database-url）中的主机、端口和密码",
                    Exit.DATABASE)
    return Stop(f"database error{where}: {first} / 数据库错误：{first}", Exit.FAILED)


def hide_password(url: str) -> str:
    from warnd.config import _hide_password
    return _hide_password(url)


async def with_database(config: Config, work):  # noqa: ANN001, ANN201 - Database -> awaitable
    """Open the configured database for one command's work, and always close it."""
    from warnd.store.database import Database
    database = Database(config.database_url)
    try:
        return await work(database)
    except Exception as exc:
        stop = database_failure(exc, config.database_url)
        if stop is None:
            raise
        raise stop from None
    finally:
        await database.close()


def migrate(url: str) -> str | None:
    """Upgrade the schema to the newest version; return it. A database error stops the command."""
    from warnd.store.migrate import current, upgrade
    try:
        upgrade(url)
        return current(url)
    except Exception as exc:
        stop = database_failure(exc, url)
        if stop is None:
            raise
        raise stop from None


def listen(host: str, port: int):  # noqa: ANN201 - socket.socket
    """Bind and listen before anything else starts: a port in use stops `warnd serve` (exit 4)
    before the node recovers, beats or logs that it started."""
    import socket
    sock = None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
        return sock
    except OSError as exc:
        if sock is not None:
            sock.close()
        import errno
        if exc.errno == errno.EADDRINUSE:
            why_en = (f"port {port} on {host} is already in use (another warnd, or another program): stop it, "
                      "or choose another port with --port or port: in the configuration")
            why_zh = f"{host} 的端口 {port} 已被占用（另一个 warnd 或其他程序）：请停止它，或用 --port 或配置中的 port: 换一个端口"
        else:
            why_en = (f"cannot listen on {host}:{port}: {exc.strerror or exc}; check host: and port: "
                      "(or --host, --port)")
            why_zh = f"无法在 {host}:{port} 上监听：{exc.strerror or exc}；请检查 host: 与 port:（或 --host、--port）"
        raise Stop(f"{why_en}\n  {why_zh}", Exit.PORT) from None


def announce_readiness(findings) -> None:  # noqa: ANN001 - tuple[readiness.Finding, ...]
    """Print what routing and ladders cannot do (both languages); refuse to go on if any is an error."""
    from warnd.domain import readiness
    if not findings:
        return
    lines = ["readiness / 就绪检查:"] + [f"  {f.line()}" for f in findings]
    if not readiness.ok(findings):
        raise Stop("\n".join(lines), Exit.NOT_READY)
    if sys.stderr.isatty():  # a person at a terminal; the node logs each finding as JSON for everyone else
        click.echo("\n".join(lines), err=True)
