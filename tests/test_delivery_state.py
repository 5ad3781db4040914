"""The delivery state machine and the retry decision, as tables."""
from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0

from warnd.domain.delivery import TRANSITIONS, State, can_move, decide
from warnd_channels.base import Outcome, SendResult

RETRY = dict(max_attempts=5, base=2.0, maximum=60.0)


@pytest.mark.parametrize("outcome,state", [(Outcome.DELIVERED, State.DELIVERED), (Outcome.SENT, State.SENT),
                                           (Outcome.FAILED, State.FAILED), (Outcome.UNCERTAIN, State.UNCERTAIN),
                                           (Outcome.RETRY, State.PENDING)])
def test_each_outcome_moves_a_sending_delivery_to_its_state(outcome, state):
    d = decide(SendResult(outcome, "x"), 0, T0, **RETRY)
    assert d.state is state
    assert can_move(State.SENDING, d.state)


def test_retry_is_scheduled_later_with_growing_backoff():
    waits = [(decide(SendResult(Outcome.RETRY, "http.503"), n, T0, **RETRY).next_attempt_at - T0).total_seconds()
             for n in range(4)]
    assert all(w > 0 for w in waits)
    assert waits[3] > waits[0]
    assert max(waits) <= RETRY["maximum"]


def test_retry_after_is_honoured_when_longer_than_the_backoff():
    d = decide(SendResult(Outcome.RETRY, "http.429", retry_after=45), 0, T0, **RETRY)
    assert d.next_attempt_at >= T0 + timedelta(seconds=45)


def test_retries_stop_after_the_last_attempt():
    d = decide(SendResult(Outcome.RETRY, "http.503"), RETRY["max_attempts"] - 1, T0, **RETRY)
    assert d.state is State.FAILED and d.code == "retries_exhausted"


def test_terminal_states_have_no_way_out_and_every_state_is_in_the_table():
    assert set(TRANSITIONS) == set(State)
    for state in (State.DELIVERED, State.FAILED, State.SUPERSEDED, State.CANCELLED, State.EXPIRED):
        assert TRANSITIONS[state] == frozenset()
    assert not can_move(State.PENDING, State.FAILED) and not can_move(State.SENT, State.SENDING)
