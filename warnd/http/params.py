"""Whole numbers from paths and query strings, bounded to what the database can hold.

An id past SQLite's and PostgreSQL's 64-bit INTEGER would otherwise reach the driver
and fail there (OverflowError: a 500); here it is a 400 naming the parameter.
"""
from __future__ import annotations

from warnd.domain.errors import error

MAX_INTEGER = 2**63 - 1  # BIGINT and SQLite INTEGER


def whole_number(text: str | None, name: str, *, low: int = 0, high: int = MAX_INTEGER) -> int:
    """`text` as an int in low…high; 400 request.invalid naming `name` otherwise."""
    value = None
    if text is not None and text.strip().lstrip("+-").isdigit() and len(text) <= 20:
        value = int(text)
    if value is None or not low <= value <= high:
        shown_high = "" if high == MAX_INTEGER else f" to {high}"
        raise error("request.invalid", name, f"{name} must be a whole number from {low}{shown_high}",
                    f"{name} 须为不小于 {low} 的整数" if not shown_high else f"{name} 须为 {low} 至 {high} 之间的整数")
    return value
