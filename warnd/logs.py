"""Structured logs: one JSON object per line on stderr, with the `extra=` fields of each call.

Every line has `ts`, `level`, `logger` and `msg`; an `extra=` field of the same name is
kept as `x_<name>` rather than overwriting them. What warnd logs, and when, is listed
in the README (*Logs*): the access log (warnd/http/access_log.py), every warning
accepted or rejected (warnd/engine/intake.py), every send that gives up.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_BASE = ("ts", "level", "logger", "msg")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[f"x_{key}" if key in _BASE else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str = "INFO") -> None:
    """Send every logger's records (and Python's warnings) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a DeprecationWarning is a JSON line too, not a bare text block
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # warnd.access logs each request
