"""`warnd sim …`: the simulators as click commands, help in English and Chinese.

Each command only reads and checks its options, then calls its simulator module's `serve(...)`
with typed arguments. The modules are imported when a command runs, so `warnd --help` stays
quick. `python -m warnd.sim.<name>` runs the same command (each module's `main`).

A bad option value is a usage error (exit 2); a simulator that cannot start (port taken,
record file not writable, broker not answering) prints one line and exits 1.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
PORT = click.IntRange(0, 65535)
NON_NEGATIVE = click.FloatRange(min=0)
POSITIVE = click.FloatRange(min=0, min_open=True)

HOST_OPTION = click.option("--host", default="127.0.0.1", show_default=True,
                           help="Address to listen on / 监听地址")
PORT_OPTION = click.option("--port", type=PORT, default=0, show_default=True,
                           help="Port to listen on, 0 for a free one / 监听端口（0 表示任选空闲端口）")
SEED_OPTION = click.option("--seed", type=int, default=None,
                           help="Random seed, for repeatable runs / 随机种子（可重复运行）")


def _record_option(what: str) -> Callable:
    return click.option("--record", type=click.Path(dir_okay=False), default=None, help=what)


def _starting(start: Callable[[], T]) -> T:
    """Run a simulator; what stops it from starting becomes one line, not a traceback."""
    try:
        return start()
    except OSError as exc:
        raise click.ClickException(f"the simulator cannot start / 模拟器无法启动: {exc}") from None


class KeyValue(click.ParamType):
    """KEY=VALUE, as a (key, value) pair."""

    name = "KEY=VALUE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, rest = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, got {value!r} / 应为 KEY=VALUE 格式", param, ctx)
        return key, rest


@click.group(name="sim", context_settings=CONTEXT)
def sim() -> None:
    """Run a simulator / 运行模拟器: providers and devices on your own machine, for tests,
    rehearsals and benchmarks / 在本机模拟服务商与设备，用于测试、演练和压测。

    Each prints its address (or "ready N") on the first line of stdout and runs until SIGINT or
    SIGTERM / 每个模拟器在标准输出第一行打印地址（或 "ready N"），运行到收到 SIGINT 或 SIGTERM 为止。

    `python -m warnd.sim.NAME` runs the same commands / 也可用 python -m warnd.sim.NAME 运行。
    """


@sim.command(context_settings=CONTEXT)
@HOST_OPTION
@PORT_OPTION
@click.option("--account-sid", required=True, envvar="TWILIO_ACCOUNT_SID", show_envvar=True,
              help="Account SID the SDK must use / SDK 须使用的账户 SID")
@click.option("--auth-token", required=True, envvar="TWILIO_AUTH_TOKEN", show_envvar=True,
              help="Auth token: checks requests, signs callbacks / 认证令牌：校验请求并签名回调")
@click.option("--behaviours", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML or JSON scenario file, see warnd.sim.twilio_behaviour / 场景文件（YAML 或 JSON）")
@_record_option("Append one JSON line per message, call, status and reply / 每条短信、呼叫、状态和回复追加一行 JSON")
@click.option("--inbound-sms-url", default=None,
              help="Where replies are POSTed (overrides the file's) / 回复短信推送地址（覆盖场景文件）")
@click.option("--speed", type=POSITIVE, default=None,
              help="Simulated seconds per real second (overrides the file's) / 仿真加速倍数（覆盖场景文件）")
@click.option("--callback-limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Concurrent webhook connections / 回调并发连接数")
@SEED_OPTION
def twilio(host: str, port: int, account_sid: str, auth_token: str, behaviours: str | None, record: str | None,
           inbound_sms_url: str | None, speed: float | None, callback_limit: int, seed: int | None) -> None:
    """Twilio Messages and Calls, and the people who answer / 模拟 Twilio 短信与语音呼叫及接听的人。

    Point the twilio SDK (or `twilio.api_base_url`) at the printed base URL /
    将 twilio SDK（或 twilio.api_base_url）指向打印出的地址。
    """
    import yaml

    from warnd.sim.twilio import serve
    from warnd.sim.twilio_behaviour import Scenario
    scenario = None
    if behaviours:
        try:
            scenario = Scenario.load(behaviours)
        except yaml.MarkedYAMLError as exc:
            where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
            raise click.BadParameter(f"{behaviours}: not YAML, {where}{exc.problem} / 不是有效的 YAML",
                                     param_hint="--behaviours") from None
        except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"{exc} / 场景文件无效", param_hint="--behaviours") from None
    _starting(lambda: serve(account_sid, auth_token, scenario, host=host, port=port, record=record,
                            inbound_sms_url=inbound_sms_url, speed=speed, callback_limit=callback_limit, seed=seed))


def _secrets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> str | dict[str, str] | None:
    from warnd.sim.webhook_sink import parse_secrets
    try:
        return parse_secrets(values)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} / 应为 whsec_… 或 PATH=whsec_…") from None


@sim.command(name="webhook-sink", context_settings=CONTEXT)
@HOST_OPTION
@PORT_OPTION
@click.option("--secret", multiple=True, callback=_secrets, metavar="[PATH=]whsec_…",
              help="Signing secret: whsec_… for every path, or PATH=whsec_… ('*' for the rest; repeatable) / "
                   "签名密钥：whsec_… 用于所有路径，或 PATH=whsec_…（可重复）")
@_record_option("Append one JSON line per unique message / 每条不重复的消息追加一行 JSON")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered 5xx / 以 5xx 应答的请求比例")
@click.option("--status", type=click.IntRange(100, 599), default=None,
              help="Answer every request with this HTTP status, e.g. 410 / 对每个请求返回此 HTTP 状态码")
@click.option("--retry-after", type=NON_NEGATIVE, default=None,
              help="Retry-After seconds sent with failures / 失败应答附带的 Retry-After 秒数")
@click.option("--latency", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="Seconds to wait before answering / 应答前等待的秒数")
@SEED_OPTION
def webhook_sink(host: str, port: int, secret: str | dict[str, str] | None, record: str | None, fail_rate: float,
                 status: int | None, retry_after: float | None, latency: float, seed: int | None) -> None:
    """A Standard Webhooks receiver that can misbehave / 可故意出错的 Standard Webhooks 接收端。

    Checks signatures (401 when bad), drops duplicate webhook-ids, records each message /
    校验签名（错误返回 401），按 webhook-id 去重，记录每条消息。
    """
    from warnd.sim.webhook_sink import Behaviour, serve
    behaviour = Behaviour(fail_rate=fail_rate, status=status, retry_after=retry_after, latency=latency)
    _starting(lambda: serve(secret, behaviour, host=host, port=port, record=record, seed=seed))


@sim.command(context_settings=CONTEXT)
@HOST_OPTION
@PORT_OPTION
@click.option("--access-key-id", required=True, help="AccessKey ID the SDK must use / SDK 须使用的 AccessKey ID")
@click.option("--access-key-secret", required=True,
              help="AccessKey secret that checks the signature / 用于校验签名的 AccessKey Secret")
@click.option("--sign-name", "sign_names", multiple=True, default=("县预警中心",), show_default=True,
              help="An approved sign name (repeatable) / 已审核的短信签名（可重复）")
@click.option("--template", "templates", type=KeyValue(), multiple=True, metavar="CODE=TEXT",
              help="An approved template, CODE=TEXT with ${variables} (repeatable) / "
                   "已审核的模板，CODE=含 ${变量} 的文本（可重复）")
@click.option("--report-url", default=None,
              help="Where SmsReport pushes go (with its ?token=) / 状态报告（SmsReport）推送地址（含 ?token=）")
@click.option("--up-url", default=None,
              help="Where SmsUp pushes (replies) go (with its ?token=) / 上行短信（SmsUp，回复）推送地址（含 ?token=）")
@click.option("--reply", "replies", type=KeyValue(), multiple=True, metavar="NUMBER=TEXT",
              help="This 11-digit number replies TEXT to every SMS (repeatable) / 该 11 位号码对每条短信回复 TEXT（可重复）")
@click.option("--report-after", type=NON_NEGATIVE, default=0.5, show_default=True,
              help="Seconds from send to report / 发送到状态报告的秒数")
def aliyun(host: str, port: int, access_key_id: str, access_key_secret: str, sign_names: tuple[str, ...],
           templates: tuple[tuple[str, str], ...], report_url: str | None, up_url: str | None,
           replies: tuple[tuple[str, str], ...], report_after: float) -> None:
    """Alibaba Cloud SMS (dysmsapi SendSms), with HTTP push of reports and replies /
    模拟阿里云短信（SendSms），以 HTTP 推送状态报告和回复。

    Prints the endpoint (host:port) for the SDK's Config(endpoint=…, protocol="http") /
    打印供 SDK 使用的 endpoint（host:port）。
    """
    from warnd.sim.aliyun import serve
    _starting(lambda: serve(access_key_id, access_key_secret, host=host, port=port, sign_names=sign_names,
                            templates=dict(templates), report_url=report_url, up_url=up_url,
                            replies=dict(replies), report_after=report_after))


@sim.command(context_settings=CONTEXT)
@HOST_OPTION
@PORT_OPTION
@click.option("--key", "keys", multiple=True, help="A robot's webhook key (repeatable) / 群机器人的 webhook key（可重复）")
@click.option("--per-minute", type=click.IntRange(min=1), default=20, show_default=True,
              help="Messages a robot takes a minute / 每个机器人每分钟接收的消息数")
@_record_option("Append one JSON line per accepted message / 每条接受的消息追加一行 JSON")
def wecom(host: str, port: int, keys: tuple[str, ...], per_minute: int, record: str | None) -> None:
    """WeCom group robots (企业微信群机器人): POST /cgi-bin/webhook/send?key=KEY /
    模拟企业微信群机器人。

    Point `wecom.base_url` at the printed base URL / 将 wecom.base_url 指向打印出的地址。
    """
    from warnd.sim.wecom import serve
    _starting(lambda: serve(keys, host=host, port=port, per_minute=per_minute, record=record))


def _broker(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from warnd_channels.mqtt_link import parse_url
    try:
        parse_url(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}, e.g. mqtt://127.0.0.1:1883 / 应为 MQTT 地址") from None
    return value


@sim.command(context_settings=CONTEXT)
@click.option("--broker", required=True, callback=_broker, metavar="mqtt://HOST:PORT",
              help="MQTT broker to connect to / 要连接的 MQTT 代理地址")
@click.option("--count", type=click.IntRange(min=1), default=10, show_default=True,
              help="Number of speakers (spk-00000 …) / 喇叭数量")
@click.option("--prefix", default="warnd/speakers", show_default=True, help="Topic prefix / 主题前缀")
@click.option("--behaviours", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON file: {\"*\": {…}, \"<speaker id>\": {…}} / 行为文件（JSON，按喇叭编号）")
@click.option("--multiplexed", is_flag=True, default=False,
              help="One MQTT client for every speaker / 所有喇叭共用一个 MQTT 客户端")
@click.option("--protocol", type=click.Choice(["4", "5"]), default="5", show_default=True,
              help="MQTT protocol: 4 is 3.1.1, 5 is 5.0 / MQTT 协议版本（4 为 3.1.1，5 为 5.0）")
@click.option("--speed", type=POSITIVE, default=1.0, show_default=True,
              help="Divides every delay / 所有延迟除以此倍数")
@click.pass_context
def speakers(ctx: click.Context, broker: str, count: int, prefix: str, behaviours: str | None, multiplexed: bool,
             protocol: str, speed: float) -> None:
    """Village loudspeakers: real MQTT clients speaking warnd's speaker protocol /
    模拟村村响喇叭：使用 warnd 喇叭协议的真实 MQTT 客户端。

    Prints "ready N" once subscribed, a JSON summary when stopped /
    订阅完成后打印 "ready N"，停止时打印 JSON 汇总。
    """
    from warnd.sim.speakers import load_behaviours, serve
    try:
        default, per_speaker = load_behaviours(behaviours)
    except (OSError, ValueError, TypeError) as exc:
        raise click.BadParameter(f"{exc} / 行为文件无效", param_hint="--behaviours") from None

    def run() -> int:
        try:
            return serve(broker, count, prefix=prefix, default=default, behaviours=per_speaker,
                         multiplexed=multiplexed, protocol=int(protocol), speed=speed)
        except TimeoutError:  # an OSError too: before _starting sees it
            raise click.ClickException(f"the broker {broker} did not answer / MQTT 代理无应答") from None

    ctx.exit(_starting(run))
