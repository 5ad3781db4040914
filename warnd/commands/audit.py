"""`warnd audit`: check the audit log's hash chain, export it."""
from __future__ import annotations

import sys

import click

from warnd.commands.common import CONFIG_OPTION, DB_OPTION, load, run, with_database
from warnd.domain.errors import WarndError


@click.group()
def audit() -> None:
    """The audit log: check its hash chain, export it / 审计日志：校验哈希链、导出."""


@audit.command("verify")
@CONFIG_OPTION
@DB_OPTION
def audit_verify(config_path: str | None, database_url: str | None) -> None:
    """Check that no entry was changed or removed; exit 1 naming the first broken one / 校验审计链."""
    from warnd.store import audit as audit_log
    config = load(config_path, database_url=database_url)
    verdict = run(with_database(config, audit_log.check))
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
    config = load(config_path, database_url=database_url)
    where = audit_log.Filter(since=_moment(since, "since"), until=_moment(until, "until"))
    if output is None:
        run(with_database(config, lambda db: _export(db, where, fmt, sys.stdout)))
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        n = run(with_database(config, lambda db: _export(db, where, fmt, out, progress=True)))
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
