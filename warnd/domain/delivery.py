"""The delivery state machine: one transition table, and the retry decision.

    pending ──claim──▶ sending ──▶ delivered | sent | failed | uncertain
       │                  └──retry──▶ pending (attempts+1, next_attempt_at later)
       └──▶ superseded | cancelled | expired      sent/uncertain ──receipt──▶ delivered | failed | pending (redial)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from tenacity import RetryCallState, wait_exponential_jitter

from warnd_channels.base import Outcome, SendResult


class State(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNCERTAIN = "uncertain"


TRANSITIONS: dict[State, frozenset[State]] = {
    # A receipt may overtake a re-queued row (a played-ack after a recovery): it was delivered.
    State.PENDING: frozenset({State.SENDING, State.SUPERSEDED, State.CANCELLED, State.EXPIRED, State.DELIVERED}),
    State.SENDING: frozenset({State.SENT, State.DELIVERED, State.FAILED, State.PENDING, State.UNCERTAIN}),
    # A call that was not answered is redialled: its receipt puts it back in the queue.
    State.SENT: frozenset({State.DELIVERED, State.FAILED, State.PENDING}),
    State.UNCERTAIN: frozenset({State.DELIVERED, State.FAILED, State.PENDING}),
    State.DELIVERED: frozenset(),
    State.FAILED: frozenset(),
    State.SUPERSEDED: frozenset(),
    State.CANCELLED: frozenset(),
    State.EXPIRED: frozenset(),
}

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


def backoff_seconds(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff with jitter, computed by tenacity's own wait strategy."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return wait_exponential_jitter(multiplier=base, max=maximum, jitter=base)(state)


def decide(result: SendResult, attempts_before: int, now: datetime, *,
           max_attempts: int, base: float, maximum: float) -> Decision:
    """Apply one send result: which state next, and when to try again."""
    attempt = attempts_before + 1
    if result.outcome is Outcome.DELIVERED:
        return Decision(State.DELIVERED, None, result.code, result.detail)
    if result.outcome is Outcome.SENT:
        return Decision(State.SENT, None, result.code, result.detail)
    if result.outcome is Outcome.FAILED:
        return Decision(State.FAILED, None, result.code, result.detail)
    if result.outcome is Outcome.UNCERTAIN:
        return Decision(State.UNCERTAIN, None, result.code, result.detail)
    if attempt >= max_attempts:
        return Decision(State.FAILED, None, "retries_exhausted",
                        f"gave up after {attempt} attempts; last: {result.code} {result.detail}".strip())
    delay = backoff_seconds(attempt, base, maximum)
    if result.retry_after is not None:
        delay = max(delay, min(result.retry_after, maximum * 4))
    return Decision(State.PENDING, now + timedelta(seconds=delay), result.code, result.detail)
