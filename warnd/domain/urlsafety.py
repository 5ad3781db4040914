"""SSRF guard for webhook subscriber URLs.

A subscriber URL is accepted only if it is http(s), names a host, carries no
user-info, and every address the host resolves to is global unicast. Loopback
and private addresses are allowed when `allow_private` is set (tests, demos,
a sink on the same machine); link-local (which holds the cloud metadata
services), multicast, unspecified and reserved addresses never are.

A check at registration does NOT stop DNS rebinding (the name may resolve to a
public address today and to 127.0.0.1 when we send), nor a subscriber stored
while `allow_private` was on and sent to after it was turned off. The webhook
channel therefore checks again at connect time, the address it is about to
connect to (`connect_problem`), and raises `UnsafeAddress` when none is left.
注册时的检查挡不住 DNS 重绑定；发送端在建立连接时对实际要连接的 IP 再查一次。
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from warnd.domain.errors import WarndError, error

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside 169.254.0.0/16: Alibaba Cloud (in 100.64/10) and
# AWS's IPv6 endpoint. Refused even with allow_private.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Target:
    """The parts of a URL that the guard looked at."""

    scheme: str
    host: str
    port: int
    literal: IPAddress | None  # the host when it is an IP address in any accepted notation


def _unsafe(detail_en: str, detail_zh: str) -> WarndError:
    return error("directory.unsafe_url", "url", detail_en, detail_zh)


def parse_target(url: str) -> Target:
    """Check the URL's shape (no DNS); raise directory.unsafe_url if it is not acceptable."""
    if not isinstance(url, str) or not url:
        raise _unsafe("URL is empty", "URL 为空")
    if len(url) > 2000:
        raise _unsafe("URL is longer than 2000 characters", "URL 超过 2000 个字符")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise _unsafe("URL contains whitespace, control characters or a backslash",
                      "URL 含有空白、控制字符或反斜杠")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _unsafe(f"URL cannot be parsed: {exc}", f"URL 无法解析：{exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _unsafe(f"scheme {parts.scheme or '(none)'!r} is not http or https",
                      f"协议 {parts.scheme or '(无)'!r} 不是 http 或 https")
    if "@" in parts.netloc:
        raise _unsafe("URL must not contain user information (user@host)", "URL 不得包含用户信息（user@host）")
    host = parts.hostname or ""
    if not host:
        raise _unsafe("URL has no host", "URL 缺少主机名")
    if "%" in host:
        raise _unsafe("IPv6 zone identifiers are not allowed", "不允许 IPv6 区域标识")
    if port is None:
        port = 443 if scheme == "https" else 80
    return Target(scheme, host, port, _ip_literal(host))


def _ip_literal(host: str) -> IPAddress | None:
    """The address if `host` is an IP literal, including the inet_aton forms
    (2130706433, 0x7f.1, 0177.0.0.1, 127.1) that resolvers accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    text = host[:-1] if host.endswith(".") else host
    pieces = text.split(".")
    if not 1 <= len(pieces) <= 4:
        return None
    numbers = []
    for piece in pieces:
        try:
            if piece[:2].lower() == "0x":
                numbers.append(int(piece[2:], 16) if piece[2:] else 0)
            elif len(piece) > 1 and piece.startswith("0"):
                numbers.append(int(piece, 8))
            elif piece.isdigit():
                numbers.append(int(piece, 10))
            else:
                return None
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (5 - len(numbers)) + last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why `ip` may not be a webhook destination, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "an IPv6 zone identifier"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_problem(inner, allow_private=allow_private)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata service"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local (includes cloud metadata 169.254.169.254)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return None if allow_private else "loopback"
    if ip.is_reserved:
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return None if allow_private else "site-local"
    if ip.is_private or not ip.is_global:
        return None if allow_private else "private or not globally routable"
    return None


_REASONS_ZH = {
    "an IPv6 zone identifier": "带 IPv6 区域标识",
    "a cloud metadata service": "云元数据服务地址",
    "unspecified": "未指定地址",
    "link-local (includes cloud metadata 169.254.169.254)": "链路本地地址（含云元数据 169.254.169.254）",
    "multicast": "组播地址",
    "loopback": "回环地址",
    "reserved": "保留地址",
    "site-local": "站点本地地址",
    "private or not globally routable": "内网或非全球可路由地址",
    "not an IP address": "不是 IP 地址",
}
SHOWN_ADDRESSES = 3  # an UnsafeAddress message names at most this many (it ends up in a 256-character detail)


def _check_addresses(host: str | None, addresses: list[IPAddress], allow_private: bool) -> None:
    """`host` is None when the URL named the address itself."""
    for ip in addresses:
        reason = address_problem(ip, allow_private=allow_private)
        if reason is None:
            continue
        zh = _REASONS_ZH.get(reason, reason)
        if host is None:
            raise _unsafe(f"address {ip} is {reason}", f"地址 {ip} 属于{zh}")
        raise _unsafe(f"host {host} resolves to {ip}, which is {reason}", f"主机 {host} 解析到 {ip}，属于{zh}")


def _addresses(infos: list[tuple]) -> list[IPAddress]:
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


def _cannot_resolve(host: str, exc: Exception) -> WarndError:
    return _unsafe(f"cannot resolve host {host}: {exc}", f"无法解析主机 {host}：{exc}")


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise directory.unsafe_url unless `url` is a safe webhook destination.

    Blocks on DNS for host names; IP literals are checked without any lookup.
    """
    target = parse_target(url)
    if target.literal is not None:
        _check_addresses(None, [target.literal], allow_private)
        return
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _cannot_resolve(target.host, exc) from None
    if not infos:
        raise _cannot_resolve(target.host, OSError("no addresses"))
    _check_addresses(target.host, _addresses(infos), allow_private)


async def check_url_async(url: str, *, allow_private: bool) -> None:
    """`check_url` for the event loop: the DNS lookup does not block it."""
    target = parse_target(url)
    if target.literal is not None:
        _check_addresses(None, [target.literal], allow_private)
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _cannot_resolve(target.host, exc) from None
    if not infos:
        raise _cannot_resolve(target.host, OSError("no addresses"))
    _check_addresses(target.host, _addresses(infos), allow_private)


def connect_problem(address: str, *, allow_private: bool) -> str | None:
    """Why the sender may not connect to `address` (an IP as text, as resolvers give it), or None.

    Text that is not an IP address is refused: at connect time there is nothing left to resolve.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    return address_problem(ip, allow_private=allow_private)


class UnsafeAddress(Exception):
    """Every address of a webhook host was refused by the guard at connect time.

    Deliberately not an OSError: aiohttp wraps resolver OSErrors into a DNS error,
    which the channel retries, and an unsafe address must fail for good.
    """

    def __init__(self, host: str, refused: Sequence[tuple[str, str]]) -> None:
        self.host = host
        self.refused = tuple(refused)  # (address, reason in English)
        super().__init__(self._message())

    def _message(self) -> str:
        shown, more = self.refused[:SHOWN_ADDRESSES], len(self.refused) - SHOWN_ADDRESSES
        en = "; ".join(f"{ip} is {reason}" for ip, reason in shown) + (f"; +{more} more" if more > 0 else "")
        zh = "；".join(f"{ip} 属于{_REASONS_ZH.get(reason, reason)}" for ip, reason in shown) + \
            (f"；另有 {more} 个" if more > 0 else "")
        return f"refused to connect to {self.host}: {en} / 拒绝连接 {self.host}：{zh}"
