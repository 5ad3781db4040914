"""The delivery state machine (its table is in warnd.domain.states), and the retry decision.

    pending ──claim──▶ sending ──▶ delivered | sent | failed | uncertain
       │                  └──retry──▶ pending (attempts+1, next_attempt_at later)
       └──▶ superseded | cancelled | expired      sent/uncertain ──receipt──▶ delivered | failed | pending (redial)
                                                  uncertain ──asked at the provider──▶ sent | pending

A provider that refused a send (HTTP 429 or 5xx) took nothing: for channels whose
`retry.refused_free_minutes` allows it, that is not an attempt. It is tried again when
the provider's Retry-After says, and a call's redials are left for calls that rang.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from warnd.domain.sending import Outcome, SendResult
from warnd.domain.states import DELIVERY, DeliveryState as State

__all__ = ["State", "TRANSITIONS", "REACHED", "OPEN", "Decision", "can_move", "backoff_seconds", "refused",
           "decide", "REFUSED_CODES", "REFUSED_RETRY_SECONDS", "RANDOM"]

# The table lives with the other machines (warnd.domain.states); the store's SQL is derived from it.
TRANSITIONS: Mapping[State, frozenset[State]] = DELIVERY.allowed

# States in which the recipient has (or may have) the message: they get updates and cancels.
REACHED = (State.SENDING, State.SENT, State.DELIVERED, State.UNCERTAIN)
OPEN = (State.PENDING,)


def can_move(old: State, new: State) -> bool:
    return new in TRANSITIONS[old]


@dataclass(frozen=True)
class Decision:
    """What to write after one attempt."""

    state: State
    next_attempt_at: datetime | None
    code: str
    detail: str
    counted: bool = True  # False: the attempt is given back (the provider refused it, nothing was sent)


RANDOM = random.Random()  # the jitter's source unless a caller gives its own (a test, a simulation)


def backoff_seconds(attempt: int, base: float, maximum: float, rand: Callable[[], float] = RANDOM.random) -> float:
    """Exponential backoff with jitter: `base`·2^(attempt−1) plus up to `base` more (`rand()`,
    in [0, 1), says how much), at most `maximum`, never below 0. (The bounds and meaning of
    tenacity's `wait_exponential_jitter(multiplier=base, max=maximum, jitter=base)`, which
    this used to borrow.)"""
    try:
        delay = base * 2.0 ** (attempt - 1) + base * rand()
    except OverflowError:
        delay = maximum
    return max(0.0, min(delay, maximum))


# Codes of a provider that refused a request before doing anything with it: HTTP 429 and
# 5xx, and the error codes Twilio sends with them (20429 Too Many Requests, 205xx).
REFUSED_CODES = re.compile(r"http\.(?:429|5\d\d)|twilio\.(?:20429|205\d\d)")
REFUSED_RETRY_SECONDS = 5.0  # a refusal without Retry-After is tried again after this


def refused(result: SendResult) -> bool:
    """Did the provider refuse the request (overloaded, rate-limited), so nothing was sent?"""
    return result.outcome is Outcome.RETRY and REFUSED_CODES.fullmatch(result.code) is not None


def decide(result: SendResult, attempts_before: int, now: datetime, *,
           max_attempts: int, base: float, maximum: float,
           planned_at: datetime | None = None, refused_free_seconds: float = 0.0,
           rand: Callable[[], float] = RANDOM.random) -> Decision:
    """Apply one send result: which state next, and when to try again.

    Pure but for `rand` (the backoff's jitter, a float in [0, 1)): give a fixed one and
    the decision is a function of its arguments.

    A refusal within `refused_free_seconds` of `planned_at` (unknown: always) is not counted
    and is tried again after the provider's Retry-After; later ones count like any retry,
    so a provider down for good still ends in `retries_exhausted`.
    """
    attempt = attempts_before + 1
    if result.outcome is Outcome.DELIVERED:
        return Decision(State.DELIVERED, None, result.code, result.detail)
    if result.outcome is Outcome.SENT:
        return Decision(State.SENT, None, result.code, result.detail)
    if result.outcome is Outcome.FAILED:
        return Decision(State.FAILED, None, result.code, result.detail)
    if result.outcome is Outcome.UNCERTAIN:
        return Decision(State.UNCERTAIN, None, result.code, result.detail)
    if refused_free_seconds > 0 and refused(result) and (
            planned_at is None or (now - planned_at).total_seconds() < refused_free_seconds):
        wait = REFUSED_RETRY_SECONDS if result.retry_after is None else result.retry_after
        return Decision(State.PENDING, now + timedelta(seconds=wait), result.code, result.detail, counted=False)
    if attempt >= max_attempts:
        return Decision(State.FAILED, None, "retries_exhausted",
                        f"gave up after {attempt} attempts; last: {result.code} {result.detail}".strip())
    delay = backoff_seconds(attempt, base, maximum, rand)
    if result.retry_after is not None:
        delay = max(delay, min(result.retry_after, maximum * 4))
    return Decision(State.PENDING, now + timedelta(seconds=delay), result.code, result.detail)
