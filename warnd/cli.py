"""The `warnd` command. Every subcommand has --help; errors print their code and exit non-zero."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click

from warnd.config import Config, load_config
from warnd.domain.authority import PERSON_ROLES
from warnd.domain.errors import WarndError

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                             envvar="WARND_CONFIG", help="YAML configuration file / 配置文件")
DB_OPTION = click.option("--database-url", default=None, help="Overrides database_url, e.g. "
                         "postgresql://user@host/db / 数据库地址")


def _config(config_path: str | None, **overrides: object) -> Config:
    try:
        return load_config(config_path, **overrides)
    except WarndError as err:
        raise click.ClickException(str(err)) from None


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
@click.option("--simulation-clock", hidden=True, default=None,
              help="SPEED@REAL_START@SIM_START: accelerated time, set by `warnd simulate` only")
def serve(config_path: str | None, database_url: str | None, host: str | None, port: int | None,
          migrate: bool, simulation_clock: str | None) -> None:
    """Run the API, the dispatcher and the sweeps / 运行 API、分发器与定时任务."""
    from warnd import logs
    from warnd.clock import ScaledClock
    from warnd.store.migrate import upgrade
    config = _config(config_path, database_url=database_url, host=host, port=port)
    logs.setup(config.log_level)
    if migrate:
        upgrade(config.database_url)
    clock = ScaledClock.parse(simulation_clock) if simulation_clock else None
    asyncio.run(_serve(config, clock))


async def _serve(config: Config, clock=None) -> None:  # noqa: ANN001 - a Clock, or the system's
    from aiohttp import web

    from warnd.engine.node import Node
    from warnd.http.app import build_app
    node = Node(config, clock=clock)
    await node.start()
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(f"warnd serving on http://{config.host}:{config.port} (node {node.incarnation})", err=True)
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
    from warnd.store.migrate import current, upgrade
    config = _config(config_path, database_url=database_url)
    upgrade(config.database_url)
    click.echo(f"database at revision {current(config.database_url)}")


@main.group()
def audit() -> None:
    """The audit log: check its hash chain, export it / 审计日志：校验哈希链、导出."""


@audit.command("verify")
@CONFIG_OPTION
@DB_OPTION
def audit_verify(config_path: str | None, database_url: str | None) -> None:
    """Check that no entry was changed or removed; exit 1 naming the first broken one / 校验审计链."""
    from warnd.store import audit as audit_log
    config = _config(config_path, database_url=database_url)
    verdict = _run(_audit(config, audit_log.check))
    if not verdict.intact:
        e = verdict.first_broken
        at = e.at.isoformat()
        click.echo(f"audit chain BROKEN at entry {e.id} ({at}, {e.action}): it was changed, or the entry before it "
                   f"removed / 审计链在第 {e.id} 条（{at}，{e.action}）处断裂：该条被修改，或其前一条被删除")
        sys.exit(1)
    click.echo(f"audit chain intact: {verdict.entries} entries / 审计链完整：{verdict.entries} 条")
    if verdict.last is not None:  # kept elsewhere, it shows whether the newest entries were removed later
        click.echo(f"newest entry {verdict.last.id}, hash {verdict.last.hash} / 最新条目 {verdict.last.id}")


@audit.command("export")
@CONFIG_OPTION
@DB_OPTION
@click.option("--since", default=None, help="Entries at or after this ISO 8601 time (with offset) / 起始时间（含）")
@click.option("--until", default=None, help="Entries before this ISO 8601 time (with offset) / 截止时间（不含）")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="JSON lines, or CSV with the detail as JSON / 输出格式")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: standard output) / 输出文件")
def audit_export(config_path: str | None, database_url: str | None, since: str | None, until: str | None,
                 fmt: str, output: str | None) -> None:
    """Write entries oldest first, hashes included, for archives and other tools / 导出审计日志."""
    from warnd.store import audit as audit_log
    config = _config(config_path, database_url=database_url)
    where = audit_log.Filter(since=_moment(since, "since"), until=_moment(until, "until"))
    if output is None:
        _run(_audit(config, lambda db: _export(db, where, fmt, sys.stdout)))
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        n = _run(_audit(config, lambda db: _export(db, where, fmt, out, progress=True)))
    click.echo(f"{n} entries written to {output} / 已导出 {n} 条", err=True)


def _moment(text: str | None, name: str):  # noqa: ANN202 - datetime | None
    from warnd.store.audit import parse_time
    if text is None:
        return None
    try:
        return parse_time(text, name)
    except WarndError as err:
        p = err.problems[0]
        raise click.BadParameter(f"{p.detail_en} / {p.detail_zh}", param_hint=f"--{name}") from None


async def _audit(config: Config, work):  # noqa: ANN001, ANN202 - Database -> awaitable
    from warnd.store.database import Database
    database = Database(config.database_url)
    try:
        return await work(database)
    finally:
        await database.close()


async def _export(database, where, fmt: str, out, *, progress: bool = False) -> int:  # noqa: ANN001
    """Stream the entries to `out`; with `progress`, a bar on standard error (the file takes the data)."""
    import contextlib
    import csv
    import json

    from rich.console import Console
    from rich.progress import Progress

    from warnd.store import audit as audit_log
    rows = csv.writer(out) if fmt == "csv" else None
    if rows is not None:
        rows.writerow(audit_log.COLUMNS)
    n = 0
    with Progress(console=Console(stderr=True)) if progress else contextlib.nullcontext() as bar:
        task = bar.add_task("audit export / 导出审计日志", total=await audit_log.count(database, where)) if bar else None
        async for e in audit_log.walk(database, where):
            if rows is not None:
                rows.writerow(audit_log.csv_row(e))
            else:
                out.write(json.dumps(e.json(), ensure_ascii=False) + "\n")
            n += 1
            if bar:
                bar.advance(task)
    return n


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
    from warnd.ingest.directory import load_directory
    from warnd.store.database import Database
    from warnd.store.directory import DirectoryStore
    data = load_directory(paths)
    database = Database(config.database_url)
    try:
        store = DirectoryStore(database, SystemClock(), allow_private_urls=config.webhook.allow_private_urls)
        return await store.import_data(data)
    finally:
        await database.close()


@main.group()
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
    config = _config(config_path, database_url=database_url)
    try:
        level = Level.parse(max_level)
    except ValueError:
        raise click.BadParameter(f"unknown level {max_level}", param_hint="--max-level") from None
    if not admin and not senders:
        raise click.BadParameter("a department token issues as its CAP sender: give --sender / 请用 --sender 指定发送方",
                                 param_hint="--sender")
    scope = Scope(department, _csv(events), _csv(regions), level, Role.ADMIN if admin else Role.DEPARTMENT,
                  senders or ("*",), supersede)
    click.echo(_run(_tokens(config, lambda store: store.create(
        scope, label=label, expires_at=_days_from_now(expires_days)))))


@token.command("list")
@CONFIG_OPTION
@DB_OPTION
@click.option("--revoked", is_flag=True, help="Include revoked tokens / 包含已吊销的令牌")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table / 输出 JSON")
def token_list(config_path: str | None, database_url: str | None, revoked: bool, as_json: bool) -> None:
    """List tokens (never their secrets) with last use and expiry / 列出令牌（不显示密钥）."""
    import json
    config = _config(config_path, database_url=database_url)
    items = _run(_tokens(config, lambda store: store.list(include_revoked=revoked)))
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
                      t.label or "", _when(t.last_used_at), _when(t.expires_at), _when(t.revoked_at))
    Console().print(table)


@token.command("revoke")
@CONFIG_OPTION
@DB_OPTION
@click.argument("token_id", type=int)
def token_revoke(config_path: str | None, database_url: str | None, token_id: int) -> None:
    """Revoke a token at once, on every node / 立即吊销令牌（所有节点生效）."""
    config = _config(config_path, database_url=database_url)
    if not _run(_tokens(config, lambda store: store.revoke(token_id))):
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
    config = _config(config_path, database_url=database_url)
    click.echo(_run(_tokens(config, lambda store: store.rotate(token_id, expires_at=_days_from_now(expires_days)))))


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) or ("*",)


def _when(at) -> str:  # noqa: ANN001 - datetime | None
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


def _days_from_now(days: float | None):  # noqa: ANN202 - datetime | None
    from datetime import datetime, timedelta, timezone
    return None if days is None else datetime.now(timezone.utc) + timedelta(days=days)


async def _tokens(config: Config, work):  # noqa: ANN001, ANN202 - TokenStore -> awaitable
    from warnd.clock import SystemClock
    from warnd.store.database import Database
    from warnd.store.tokens import TokenStore
    database = Database(config.database_url)
    try:
        return await work(TokenStore(database, SystemClock()))
    finally:
        await database.close()


@main.group()
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
    from warnd.store.database import Database
    from warnd.store.users import UserStore
    database = Database(config.database_url)
    try:
        return await work(UserStore(database, SystemClock(), config.accounts))
    finally:
        await database.close()


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
    config = _config(config_path, database_url=database_url)
    password = _password("Password / 密码")
    info = _run(_users(config, lambda users: users.create(
        name, role, department, password, senders=senders, events=_csv(events), regions=_csv(regions),
        max_level=max_level, supersede=supersede, display_name=display_name)))
    click.echo(f"created {info.name} ({info.role}, {info.department or '-'}) / 已创建")


@user.command("list")
@CONFIG_OPTION
@DB_OPTION
def user_list(config_path: str | None, database_url: str | None) -> None:
    """List accounts: role, department, state, last login (never passwords) / 列出账户."""
    config = _config(config_path, database_url=database_url)
    for info in _run(_users(config, lambda users: users.list())):
        state = "disabled/已停用" if info.disabled_at else "active/正常"
        last = _when(info.last_login_at) or "-"
        click.echo(f"{info.name}\t{info.role}\t{info.department or '-'}\t{info.display_name or '-'}\t{state}\t{last}")


@user.command("disable")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
def user_disable(config_path: str | None, database_url: str | None, name: str) -> None:
    """Disable an account: its sessions end and its personal tokens are revoked at once / 停用账户."""
    config = _config(config_path, database_url=database_url)
    changed = _run(_users(config, lambda users: users.disable(name)))
    click.echo(f"disabled {name} / 已停用" if changed else f"{name} was already disabled / 已是停用状态")


@user.command("password")
@CONFIG_OPTION
@DB_OPTION
@click.argument("name")
def user_password(config_path: str | None, database_url: str | None, name: str) -> None:
    """Set a new password (stdin or prompt); unlocks the account, ends its sessions / 重设密码."""
    config = _config(config_path, database_url=database_url)
    password = _password("New password / 新密码")
    _run(_users(config, lambda users: users.set_password(name, password)))
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
    config = _config(config_path, database_url=database_url)
    click.echo(_run(_users(config, lambda users: _personal_token(users, name, label, expires_days))))


async def _personal_token(users, name: str, label: str | None, expires_days: float | None) -> str:  # noqa: ANN001
    from warnd.domain.errors import error
    scope = await users.scope(name)
    if scope is None:
        raise error("request.not_found", "name", f"no active user named {name}", f"无有效用户 {name}")
    return await users.tokens.create(scope, user_name=name, label=label, expires_at=_days_from_now(expires_days))


@main.group()
def warning() -> None:
    """Approve or reject warnings through the API, as yourself / 签发或驳回预警（通过 API，以本人身份）."""


API_OPTIONS = [
    click.option("--url", envvar="WARND_URL", default="http://127.0.0.1:8080", show_default=True,
                 help="warnd's base URL / warnd 地址"),
    click.option("--token", "api_token", envvar="WARND_TOKEN", required=True,
                 help="Your personal token (`warnd user token NAME`), or WARND_TOKEN / 个人令牌"),
]


def _api_options(f):  # noqa: ANN001, ANN202
    for option in reversed(API_OPTIONS):
        f = option(f)
    return f


@warning.command("approve")
@_api_options
@click.argument("warning_id", type=int)
def warning_approve(url: str, api_token: str, warning_id: int) -> None:
    """签发: approve warning ID; the last approval needed publishes it / 签发预警."""
    _print_decision(_run(_api_post(url, api_token, f"/api/v1/warnings/{warning_id}/approve", {})))


@warning.command("reject")
@_api_options
@click.argument("warning_id", type=int)
@click.option("--reason", required=True, help="Why (the author reads this) / 驳回原因")
def warning_reject(url: str, api_token: str, warning_id: int, reason: str) -> None:
    """驳回: reject warning ID with a reason; it is never sent / 驳回预警."""
    _print_decision(_run(_api_post(url, api_token, f"/api/v1/warnings/{warning_id}/reject", {"reason": reason})))


def _print_decision(body: dict) -> None:
    state = {"awaiting": "waits for more approvals / 待继续签发", "active": "published / 已发布",
             "expired": "published, already expired / 已发布（已过期）", "rejected": "rejected / 已驳回"}
    click.echo(f"warning {body['warning_id']}: {state.get(body['state'], body['state'])} "
               f"({body['approvals']}/{body['needed']})")


async def _api_post(url: str, api_token: str, path: str, body: dict) -> dict:
    import aiohttp
    headers = {"Authorization": f"Bearer {api_token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async with session.post(url.rstrip("/") + path, json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise click.ClickException(f"cannot reach warnd at {url}: {exc} / 无法连接 warnd") from None
    if resp.status >= 400:
        raise click.ClickException(f"{data.get('code', resp.status)}: {data.get('title', '')}\n"
                                   f"{data.get('detail', '')}")
    return data


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


SIMULATORS = {"twilio": "warnd.sim.twilio", "webhook-sink": "warnd.sim.webhook_sink",
              "speakers": "warnd.sim.speakers"}


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("name", type=click.Choice(sorted(SIMULATORS)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sim(name: str, args: tuple[str, ...]) -> None:
    """Run a simulator: twilio, webhook-sink, speakers (`warnd sim NAME --help`) / 运行模拟器."""
    import importlib
    importlib.import_module(SIMULATORS[name]).main(list(args))


def _run(coro):  # noqa: ANN001, ANN202
    from sqlalchemy.exc import OperationalError, ProgrammingError
    try:
        return asyncio.run(coro)
    except WarndError as err:
        raise click.ClickException(str(err)) from None
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig if exc.orig else exc).splitlines()[0]
        raise click.ClickException(f"database error: {first}\n(has `warnd db upgrade` been run? / "
                                   "是否已运行 warnd db upgrade？)") from None


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
def demo(speed: float | None, report_path: str | None) -> None:
    """A county's red rainstorm warning end to end, no accounts or services needed / 一键演示."""
    from warnd.simulate import run_command
    from warnd.simulate.demo import scenario_path
    sys.exit(run_command(scenario_path(), speed=speed, report_path=report_path))
