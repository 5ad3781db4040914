"""`decide()` as a table: one row per case, the randomness fixed, the decision exact.

The backoff's jitter comes from the `rand` given (a float in [0, 1)), so a decision is a
function of its arguments: base·2^(attempt−1) + base·rand(), at most `maximum`; a
provider's Retry-After lengthens it (up to 4 × maximum); a refusal inside the channel's
refused-free window is no attempt and waits for Retry-After (or REFUSED_RETRY_SECONDS).
"""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from factories import T0

from warnd.domain import delivery
from warnd.domain.delivery import REFUSED_RETRY_SECONDS, State, backoff_seconds, decide
from warnd.domain.sending import Outcome, SendResult

RETRY = dict(max_attempts=5, base=2.0, maximum=60.0)
HALF = 0.5  # the fixed jitter of the table: base · 0.5 = 1 s
S = timedelta(seconds=1)
NONE = object()  # next_attempt_at: None

# (id, attempts before, outcome, code, retry_after, (planned_at, refused_free_seconds), now,
#  expected state, expected seconds from now to the next attempt (NONE: none), counted, expected code)
ROWS = [
    ("delivered", 0, Outcome.DELIVERED, "http.200", None, (None, 0), T0, State.DELIVERED, NONE, True, "http.200"),
    ("sent", 0, Outcome.SENT, "twilio.queued", None, (None, 0), T0, State.SENT, NONE, True, "twilio.queued"),
    ("failed", 2, Outcome.FAILED, "twilio.21211", None, (None, 0), T0, State.FAILED, NONE, True, "twilio.21211"),
    ("uncertain", 0, Outcome.UNCERTAIN, "timeout", None, (None, 0), T0, State.UNCERTAIN, NONE, True, "timeout"),
    # backoff: 2·2^(n−1) + 2·0.5
    ("retry 1", 0, Outcome.RETRY, "connect", None, (None, 0), T0, State.PENDING, 3.0, True, "connect"),
    ("retry 2", 1, Outcome.RETRY, "connect", None, (None, 0), T0, State.PENDING, 5.0, True, "connect"),
    ("retry 3", 2, Outcome.RETRY, "http.503", None, (None, 0), T0, State.PENDING, 9.0, True, "http.503"),
    ("retry 4", 3, Outcome.RETRY, "http.503", None, (None, 0), T0, State.PENDING, 17.0, True, "http.503"),
    ("last attempt", 4, Outcome.RETRY, "http.503", None, (None, 0), T0, State.FAILED, NONE, True,
     "retries_exhausted"),
    # Retry-After: honoured when longer than the backoff, up to 4 × maximum
    ("retry-after longer", 0, Outcome.RETRY, "http.429", 45.0, (None, 0), T0, State.PENDING, 45.0, True, "http.429"),
    ("retry-after shorter", 3, Outcome.RETRY, "http.429", 1.0, (None, 0), T0, State.PENDING, 17.0, True, "http.429"),
    ("retry-after capped", 0, Outcome.RETRY, "http.429", 1000.0, (None, 0), T0, State.PENDING, 240.0, True,
     "http.429"),
    # refusals inside the refused-free window: no attempt, Retry-After (or the default) exactly
    ("refused, free", 0, Outcome.RETRY, "http.503", None, (T0, 3600), T0 + 10 * S, State.PENDING,
     REFUSED_RETRY_SECONDS, False, "http.503"),
    ("refused, free, retry-after", 4, Outcome.RETRY, "twilio.20503", 7.0, (T0, 3600), T0 + 10 * S, State.PENDING,
     7.0, False, "twilio.20503"),
    ("refused, plan time unknown", 2, Outcome.RETRY, "twilio.20429", 30.0, (None, 3600), T0, State.PENDING, 30.0,
     False, "twilio.20429"),
    # …and outside it, or for a channel without one: counted like any retry
    ("refused, window over", 0, Outcome.RETRY, "http.503", None, (T0, 3600), T0 + 3601 * S, State.PENDING, 3.0,
     True, "http.503"),
    ("refused, window over, last", 4, Outcome.RETRY, "http.503", None, (T0, 3600), T0 + 3601 * S, State.FAILED,
     NONE, True, "retries_exhausted"),
    ("refused, no window", 0, Outcome.RETRY, "http.429", 45.0, (T0, 0), T0, State.PENDING, 45.0, True, "http.429"),
    ("not a refusal, in window", 1, Outcome.RETRY, "timeout", None, (T0, 3600), T0, State.PENDING, 5.0, True,
     "timeout"),
    ("not a refusal, last", 4, Outcome.RETRY, "connect", None, (T0, 3600), T0, State.FAILED, NONE, True,
     "retries_exhausted"),
]


@pytest.mark.parametrize(("attempts_before", "outcome", "code", "retry_after", "window", "now", "state", "wait",
                          "counted", "result_code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decide_table(attempts_before, outcome, code, retry_after, window, now, state, wait, counted, result_code):
    planned_at, free = window
    d = decide(SendResult(outcome, code, retry_after=retry_after, detail="d"), attempts_before, now, **RETRY,
               planned_at=planned_at, refused_free_seconds=free, rand=lambda: HALF)
    assert (d.state, d.counted, d.code) == (state, counted, result_code)
    assert d.next_attempt_at == (None if wait is NONE else now + timedelta(seconds=wait))
    if result_code == "retries_exhausted":
        assert d.detail == f"gave up after {attempts_before + 1} attempts; last: {code} d"


# (attempt, rand, base, maximum, expected seconds)
BACKOFF = [(1, 0.0, 2.0, 60.0, 2.0), (1, 0.999, 2.0, 60.0, 3.998), (3, 0.25, 2.0, 60.0, 8.5),
           (6, 0.0, 2.0, 60.0, 60.0), (10_000, 0.5, 2.0, 60.0, 60.0),  # 2^9999 overflows: the maximum
           (2, 0.5, 0.0, 60.0, 0.0), (1, 0.5, 10.0, 12.0, 12.0)]


@pytest.mark.parametrize(("attempt", "u", "base", "maximum", "seconds"), BACKOFF)
def test_backoff_table(attempt, u, base, maximum, seconds):
    assert backoff_seconds(attempt, base, maximum, lambda: u) == pytest.approx(seconds)


def test_a_fixed_source_gives_the_same_decision_and_the_module_source_is_left_alone():
    state = delivery.RANDOM.getstate()
    retry = SendResult(Outcome.RETRY, "http.503")
    seeded = random.Random(7)
    first = [decide(retry, n, T0, **RETRY, rand=seeded.random) for n in range(4)]
    seeded.seed(7)
    assert [decide(retry, n, T0, **RETRY, rand=seeded.random) for n in range(4)] == first
    assert delivery.RANDOM.getstate() == state  # an injected source is the only one used


def test_without_a_source_the_module_one_jitters_within_the_bounds():
    retry = SendResult(Outcome.RETRY, "http.503")
    delivery.RANDOM.seed(1)
    once = [decide(retry, 1, T0, **RETRY).next_attempt_at for _ in range(20)]
    delivery.RANDOM.seed(1)
    assert [decide(retry, 1, T0, **RETRY).next_attempt_at for _ in range(20)] == once
    assert len(set(once)) > 1  # jittered
    assert all(T0 + 4 * S <= at < T0 + 6 * S for at in once)  # 2·2 + [0, 2)
