"""`warnd token`: create, list, revoke and rotate API tokens (directly in the database)."""
from __future__ import annotations

import click

from warnd.commands.common import CONFIG_OPTION, DB_OPTION, load, run, with_database
from warnd.config import Config


@click.group()
def token() -> None:
    """API tokens: create, list, revoke, rotate / API 令牌：创建、列出、吊销、轮换."""


@token.command("create")
@CONFIG_OPTION
@DB_OPTION
@click.option("--department", required=True, help="Issuing department, e.g. 县气象局 / 所属单位")
@click.option("--sender", "senders", multiple=True,
              help="CAP <sender> this token issues as (repeatable; required unless --admin) / CAP 发送方")
@click.option("--events", default="*", show_default=True, help="Comma-separated event types, * for any")
@click.option("--regions", default="*", show_default=True,
              help="Comma-separated region codes (covering their sub-regions), * for any")
@click.option("--max-level", default="red", show_default=True, help="Highest level: blue/yellow/orange/red")
@click.option("--admin", is_flag=True, help="Every right, any sender (the release centre's system) / 管理员令牌")
@click.option("--supersede", is_flag=True,
              help="May update/cancel other departments' warnings in its regions, with a reason / 可变更他单位预警")
@click.option("--label", default=None, help="What the token is for, shown by `token list` / 用途说明")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True, max=3650), default=None,
              help="Expire after this many days / 有效天数")
def token_create(config_path: str | None, database_url: str | None, department: str, senders: tuple[str, ...],
                 events: str, regions: str, max_level: str, admin: bool, supersede: bool, label: str | None,
                 expires_days: float | None) -> None:
    """Create a token and print it once; only its hash is stored / 创建令牌（仅显示一次）."""
    from warnd.domain.authority import Role, Scope
    from warnd.domain.model import Level
    config = load(config_path, database_url=database_url)
    try:
        level = Level.parse(max_level)
    except ValueError:
        raise click.BadParameter(f"unknown level {max_level}", param_hint="--max-level") from None
    if not admin and not senders:
        raise click.BadParameter("a department token issues as its CAP sender: give --sender / 请用 --sender 指定发送方",
                                 param_hint="--sender")
    scope = Scope(department, csv_list(events), region_codes(regions), level, Role.ADMIN if admin else Role.DEPARTMENT,
                  senders or ("*",), supersede)
    click.echo(run(_tokens(config, lambda store: store.create(
        scope, label=label, expires_at=days_from_now(expires_days)))))


@token.command("list")
@CONFIG_OPTION
@DB_OPTION
@click.option("--revoked", is_flag=True, help="Include revoked tokens / 包含已吊销的令牌")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table / 输出 JSON")
def token_list(config_path: str | None, database_url: str | None, revoked: bool, as_json: bool) -> None:
    """List tokens (never their secrets) with last use and expiry / 列出令牌（不显示密钥）."""
    import json
    config = load(config_path, database_url=database_url)
    items = run(_tokens(config, lambda store: store.list(include_revoked=revoked)))
    if as_json:
        for t in items:
            click.echo(json.dumps(t.json(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("id", "department / 单位", "role / 角色", "senders", "max", "user", "label", "last used / 最近使用",
                  "expires / 过期", "revoked / 吊销")
    for t in items:
        table.add_row(str(t.id), t.department, t.role, ",".join(t.senders), t.max_level, t.user_name or "",
                      t.label or "", when(t.last_used_at), when(t.expires_at), when(t.revoked_at))
    Console().print(table)


@token.command("revoke")
@CONFIG_OPTION
@DB_OPTION
@click.argument("token_id", type=int)
def token_revoke(config_path: str | None, database_url: str | None, token_id: int) -> None:
    """Revoke a token at once, on every node / 立即吊销令牌（所有节点生效）."""
    config = load(config_path, database_url=database_url)
    if not run(_tokens(config, lambda store: store.revoke(token_id))):
        raise click.ClickException(f"no active token {token_id} / 无有效令牌 {token_id}")
    click.echo(f"token {token_id} revoked / 已吊销")


@token.command("rotate")
@CONFIG_OPTION
@DB_OPTION
@click.argument("token_id", type=int)
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True, max=3650), default=None,
              help="The new token expires after this many days / 新令牌有效天数")
def token_rotate(config_path: str | None, database_url: str | None, token_id: int,
                 expires_days: float | None) -> None:
    """Replace a token by a new one with the same rights; the old one stops at once / 轮换令牌."""
    config = load(config_path, database_url=database_url)
    click.echo(run(_tokens(config, lambda store: store.rotate(token_id, expires_at=days_from_now(expires_days)))))


def region_codes(text: str) -> tuple[str, ...]:
    """--regions: `*`, or region codes as the directory writes them (warnd/domain/directory.py)."""
    from warnd.domain.directory import region_kind
    codes = csv_list(text)
    bad = [c for c in codes if c != "*" and region_kind(c) is None]
    if bad:
        raise click.BadParameter(
            f"{', '.join(bad)}: not a region code; codes are digits: 2 (province), 4 (prefecture), 6 (county), "
            "9 (township), 12 (village) or more (a grid, prefixed by its village code), or * for any / "
            f"{'、'.join(bad)} 不是区划代码：须为数字，2 位（省）、4 位（市）、6 位（县）、9 位（乡镇）、12 位（村）"
            "或更长（网格，以村代码开头），或用 * 表示任意", param_hint="--regions")
    return codes


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) or ("*",)


def when(at) -> str:  # noqa: ANN001 - datetime | None
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


def days_from_now(days: float | None):  # noqa: ANN202 - datetime | None
    from datetime import datetime, timedelta, timezone
    return None if days is None else datetime.now(timezone.utc) + timedelta(days=days)


async def _tokens(config: Config, work):  # noqa: ANN001, ANN202 - TokenStore -> awaitable
    from warnd.clock import SystemClock
    from warnd.store.tokens import TokenStore
    return await with_database(config, lambda db: work(TokenStore(db, SystemClock())))
