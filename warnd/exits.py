"""The exit codes of every `warnd` command, in one place (the README's table is this one).

A command that fails for a reason an operator can fix prints one message, in English and
Chinese, naming the file, key or value and what to do, and exits with one of these codes;
never a stack trace. `warnd simulate` and `warnd cap validate` add their own meanings to
1 (see their --help).
"""
from __future__ import annotations

import enum

import click


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # the work failed: a bad row refused, a token not found, a database error
    CONFIG = 2  # the command line or the configuration is wrong (click's usage errors are 2 too)
    DATABASE = 3  # the database cannot be reached (down, wrong host or port, wrong password)
    PORT = 4  # the listen address cannot be bound (port in use, address not on this host)
    NOT_READY = 5  # routing and ladders can reach nobody (see the readiness check)


class Stop(click.ClickException):
    """One clear message and an exit code; click prints it as `Error: …` on stderr."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.exit_code = int(code)
