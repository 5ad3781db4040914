"""What every `warnd` subcommand shares: the config and database options, running a coroutine
with errors as clear messages (never a stack trace)."""
from __future__ import annotations

import asyncio

import click

from warnd.config import Config, load_config
from warnd.domain.errors import WarndError

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                             envvar="WARND_CONFIG", help="YAML configuration file / 配置文件")
DB_OPTION = click.option("--database-url", default=None, help="Overrides database_url, e.g. "
                         "postgresql://user@host/db / 数据库地址")


def load(config_path: str | None, **overrides: object) -> Config:
    try:
        return load_config(config_path, **overrides)
    except WarndError as err:
        raise click.ClickException(str(err)) from None


def run(coro):  # noqa: ANN001, ANN202
    from sqlalchemy.exc import OperationalError, ProgrammingError
    try:
        return asyncio.run(coro)
    except WarndError as err:
        raise click.ClickException(str(err)) from None
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig if exc.orig else exc).splitlines()[0]
        raise click.ClickException(f"database error: {first}\n(has `warnd db upgrade` been run? / "
                                   "是否已运行 warnd db upgrade？)") from None


async def with_database(config: Config, work):  # noqa: ANN001, ANN201 - Database -> awaitable
    """Open the configured database for one command's work, and always close it."""
    from warnd.store.database import Database
    database = Database(config.database_url)
    try:
        return await work(database)
    finally:
        await database.close()
