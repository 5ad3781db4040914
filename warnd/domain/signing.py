"""Signed, expiring, single-purpose tokens for URLs (callbacks, confirmation links).

A token is `<value>.<expiry>.<mac>` (the value base64url-encoded unless it is digits): the MAC covers the purpose too, so a token
made for one purpose (a call's status callback) is useless for another (a
confirmation link). Pure: the key and the time are passed in.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from warnd.domain.errors import error


def _mac(key: bytes, purpose: str, value: str, expiry: int) -> str:
    digest = hmac.new(key, f"{purpose}\n{value}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def sign(key: bytes, purpose: str, value: str, expires: datetime | None = None) -> str:
    """Digits are kept as they are (short callback URLs); anything else is base64url-encoded."""
    expiry = int(expires.timestamp()) if expires else 0
    shown = value if value.isdigit() else "~" + _b64(value)
    return f"{shown}.{expiry}.{_mac(key, purpose, value, expiry)}"


def shown_value(token: str) -> str | None:
    """The value a token carries, unverified: for reading logs of what was sent, never to trust."""
    shown = token.split(".", 1)[0]
    try:
        return _unb64(shown[1:]) if shown.startswith("~") else shown
    except (ValueError, UnicodeDecodeError):
        return None


def verify(key: bytes, purpose: str, token: str, now: datetime) -> str:
    """The signed value; raises link.invalid (forged, other purpose) or link.expired."""
    try:
        shown, expiry_text, mac = token.split(".")
        expiry = int(expiry_text)
        value = _unb64(shown[1:]) if shown.startswith("~") else shown
    except (ValueError, UnicodeDecodeError):
        raise error("link.invalid", "token", "malformed link", "链接格式错误") from None
    if not hmac.compare_digest(mac, _mac(key, purpose, value, expiry)):
        raise error("link.invalid", "token", "this link is not valid", "链接无效")
    if expiry and now.timestamp() > expiry:
        raise error("link.expired", "token", "this link has expired", "链接已过期")
    return value
