"""`warnd warning approve|reject`: 签发 and 驳回 through the API, as yourself (a personal token)."""
from __future__ import annotations

import click

from warnd.commands.common import run


@click.group()
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
    _print_decision(run(_api_post(url, api_token, f"/api/v1/warnings/{warning_id}/approve", {})))


@warning.command("reject")
@_api_options
@click.argument("warning_id", type=int)
@click.option("--reason", required=True, help="Why (the author reads this) / 驳回原因")
def warning_reject(url: str, api_token: str, warning_id: int, reason: str) -> None:
    """驳回: reject warning ID with a reason; it is never sent / 驳回预警."""
    _print_decision(run(_api_post(url, api_token, f"/api/v1/warnings/{warning_id}/reject", {"reason": reason})))


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
