"""`warnd user`: people's accounts and their personal tokens (directly in the database)."""
from __future__ import annotations

import sys

import click

from warnd.commands.common import CONFIG_OPTION, DB_OPTION, load, run, with_database
from warnd.commands.tokens import csv_list, days_from_now, when
from warnd.config import Config
from warnd.domain.authority import PERSON_ROLES


@click.group()
def user() -> None:
    """Operator accounts (people) and their personal tokens / 人员账户与个人令牌."""


def _password(prompt: str) -> str:
    """The first line of stdin when it is not a terminal (scripts), else asked twice, hidden."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException("no password on standard input / 标准输入中没有密码")
        return line
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


async def _users(config: Config, work):  # noqa: ANN001, ANN202 - UserStore -> awaitable
    from warnd.clock import SystemClock
    from warnd.store.users import UserStore
    return await with_database(config, lambda db: work(UserStore(db, SystemClock(), config.accounts)))


@user.command("create")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([r.value for r in PERSON_ROLES]),
              help="admin 管理员, approver 签发人, operator 值班员, editor 制作, viewer 查看")
@click.option("--department", default=None, help="The person's department (editors: required) / 所属单位")
@click.option("--sender", "senders", multiple=True,
              help="CAP sender this person issues as; repeat for more, * for any / 发布身份（可多次）")
@click.option("--events", default="*", show_default=True, help="Comma-separated event types, * for any / 预警类型")
@click.option("--regions", default="*", show_default=True,
              help="Comma-separated region codes (covering their sub-regions), * for any / 区域")
@click.option("--max-level", default="red", show_default=True, help="Highest level: blue/yellow/orange/red / 最高级别")
@click.option("--supersede", is_flag=True, help="May update or cancel others' warnings in its regions / 可变更他单位预警")
@click.option("--display-name", default=None, help="Name shown in the console, e.g. 张三 / 显示名")
def user_create(config_path: str | None, database_url: str | None, name: str, role: str, department: str | None,
                senders: tuple[str, ...], events: str, regions: str, max_level: str, supersede: bool,
                display_name: str | None) -> None:
    """Create an account; the password comes from stdin (first line) or a hidden prompt / 创建账户.

    At least 10 characters; only its argon2id hash is stored. / 密码至少 10 个字符，仅保存 argon2id 哈希。
    """
    config = load(config_path, database_url=database_url)
    password = _password("Password / 密码")
    info = run(_users(config, lambda users: users.create(
        name, role, department, password, senders=senders, events=csv_list(events), regions=csv_list(regions),
        max_level=max_level, supersede=supersede, display_name=display_name)))
    click.echo(f"created {info.name} ({info.role}, {info.department or '-'}) / 已创建")


@user.command("list")
@CONFIG_OPTION
@DB_OPTION
def user_list(config_path: str | None, database_url: str | None) -> None:
    """List accounts: role, department, state, last login (never passwords) / 列出账户."""
    config = load(config_path, database_url=database_url)
    for info in run(_users(config, lambda users: users.list())):
        state = "disabled/已停用" if info.disabled_at else "active/正常"
        last = when(info.last_login_at) or "-"
        click.echo(f"{info.name}\t{info.role}\t{info.department or '-'}\t{info.display_name or '-'}\t{state}\t{last}")


@user.command("disable")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
def user_disable(config_path: str | None, database_url: str | None, name: str) -> None:
    """Disable an account: its sessions end and its personal tokens are revoked at once / 停用账户."""
    config = load(config_path, database_url=database_url)
    changed = run(_users(config, lambda users: users.disable(name)))
    click.echo(f"disabled {name} / 已停用" if changed else f"{name} was already disabled / 已是停用状态")


@user.command("password")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
def user_password(config_path: str | None, database_url: str | None, name: str) -> None:
    """Set a new password (stdin or prompt); unlocks the account, ends its sessions / 重设密码."""
    config = load(config_path, database_url=database_url)
    password = _password("New password / 新密码")
    run(_users(config, lambda users: users.set_password(name, password)))
    click.echo(f"password of {name} changed / 密码已更新")


@user.command("token")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
@click.option("--label", default=None, help="What the token is for, e.g. laptop script / 用途说明")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True, max=3650), default=None,
              help="Expire after this many days (default: never) / 有效天数")
def user_token(config_path: str | None, database_url: str | None, name: str, label: str | None,
               expires_days: float | None) -> None:
    """Print a personal API token once; it has the account's rights, and ends with it / 创建个人令牌."""
    config = load(config_path, database_url=database_url)
    click.echo(run(_users(config, lambda users: _personal_token(users, name, label, expires_days))))


async def _personal_token(users, name: str, label: str | None, expires_days: float | None) -> str:  # noqa: ANN001
    from warnd.domain.errors import error
    scope = await users.scope(name)
    if scope is None:
        raise error("request.not_found", "name", f"no active user named {name}", f"无有效用户 {name}")
    return await users.tokens.create(scope, user_name=name, label=label, expires_at=days_from_now(expires_days))
