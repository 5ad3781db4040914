"""The SSRF guard for webhook subscriber URLs."""
from __future__ import annotations

import ipaddress

import pytest

from warnd.domain.errors import WarndError
from warnd.domain.urlsafety import UnsafeAddress, address_problem, check_url, check_url_async, connect_problem

REFUSED_ALWAYS = [
    "ftp://93.184.216.34/feed",
    "file:///etc/passwd",
    "gopher://93.184.216.34/",
    "http://user@93.184.216.34/",
    "http://user:pw@93.184.216.34/",
    "http://93.184.216.34\\@127.0.0.1/",
    "http:///path-only",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
    "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://224.0.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://240.0.0.1/",
    "http://host.invalid/",  # cannot resolve
    "http://93.184.216.34:99999/",  # bad port
]

REFUSED_UNLESS_PRIVATE = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[fd00::1]/",
    "http://2130706433/",  # 127.0.0.1 in decimal
    "http://0x7f000001/",
    "http://0177.0.0.1/",  # octal
    "http://127.1/",
    "http://localhost/",  # a name resolving to loopback
    "HTTP://LOCALHOST:9/",
]

ALLOWED = [
    "http://93.184.216.34/",
    "https://93.184.216.34:8443/hooks/warnd?x=1",
    "http://[2606:4700:4700::1111]/",
    "http://1.1.1.1./",
]


def _problem(url: str, allow_private: bool) -> str | None:
    try:
        check_url(url, allow_private=allow_private)
    except WarndError as exc:
        assert exc.code == "directory.unsafe_url"
        assert exc.status == 400
        [p] = exc.problems
        assert p.field == "url" and p.detail_en and p.detail_zh
        return p.detail_en
    return None


@pytest.mark.parametrize("url", REFUSED_ALWAYS)
def test_refused_even_with_allow_private(url):
    assert _problem(url, False) is not None
    assert _problem(url, True) is not None


@pytest.mark.parametrize("url", REFUSED_UNLESS_PRIVATE)
def test_private_refused_unless_allowed(url):
    assert _problem(url, False) is not None
    assert _problem(url, True) is None


@pytest.mark.parametrize("url", ALLOWED)
def test_public_literals_allowed(url):
    assert _problem(url, False) is None


def test_messages_say_why():
    assert "cannot resolve" in _problem("http://host.invalid/", False)
    assert "loopback" in _problem("http://localhost/", False)
    assert "link-local" in _problem("http://169.254.169.254/", True)
    assert "user information" in _problem("http://a@b.example/", False)


def test_ip_literals_need_no_dns(monkeypatch):
    """The sender re-checks before every send; literals must not hit the resolver."""
    import socket

    def boom(*_a, **_k):
        raise AssertionError("getaddrinfo called for an IP literal")

    monkeypatch.setattr(socket, "getaddrinfo", boom)
    check_url("http://93.184.216.34/", allow_private=False)
    with pytest.raises(WarndError):
        check_url("http://2130706433/", allow_private=False)


def test_every_resolved_address_must_pass(monkeypatch):
    """A name with one public and one private address is refused (no partial trust)."""
    import socket

    def fake(host, port, *a, **k):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert "10.0.0.5" in _problem("https://mixed.example/", False)


async def test_async_variant():
    await check_url_async("http://93.184.216.34/", allow_private=False)
    await check_url_async("http://localhost:9/", allow_private=True)
    with pytest.raises(WarndError):
        await check_url_async("http://localhost:9/", allow_private=False)
    with pytest.raises(WarndError):
        await check_url_async("http://host.invalid/", allow_private=True)


def test_address_problem_for_resolvers():
    assert address_problem(ipaddress.ip_address("8.8.8.8"), allow_private=False) is None
    assert address_problem(ipaddress.ip_address("192.168.0.1"), allow_private=False)
    assert address_problem(ipaddress.ip_address("192.168.0.1"), allow_private=True) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "10.0.0.5",
                                     "fd00::1"])
def test_connect_problem_private_unless_allowed(address):
    """What a resolver hands the connector is judged like a URL's host (mapped IPv6 included)."""
    assert connect_problem(address, allow_private=False)
    assert connect_problem(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "::ffff:169.254.169.254", "100.100.100.200", "0.0.0.0",
                                     "fe80::1%eth0", "localhost", ""])
def test_connect_problem_refused_always(address):
    """Metadata, link-local, zone ids and anything that is not an IP address are never connected to."""
    assert connect_problem(address, allow_private=True)


def test_connect_problem_public():
    assert connect_problem("93.184.216.34", allow_private=False) is None
    assert connect_problem("2606:4700:4700::1111", allow_private=False) is None


def test_unsafe_address_says_why_in_both_languages():
    exc = UnsafeAddress("rebind.example", [(f"127.0.0.{i}", "loopback") for i in range(1, 6)])
    text = str(exc)
    assert "rebind.example" in text and "127.0.0.1 is loopback" in text and "+2 more" in text
    assert "回环地址" in text and "另有 2 个" in text and "127.0.0.4" not in text
    assert not isinstance(exc, OSError)  # aiohttp would turn an OSError into a retried DNS error
