"""The delivery state machine and the retry decision, as tables."""
from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0

from warnd.domain.delivery import REFUSED_RETRY_SECONDS, TRANSITIONS, State, can_move, decide, refused
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


# --- refusals: the provider took nothing, so they are no attempt ---------------------------------

FREE = dict(RETRY, planned_at=T0, refused_free_seconds=3600)
REFUSALS = [("http.429", True), ("twilio.20429", True), ("http.500", True), ("http.503", True),
            ("twilio.20500", True), ("twilio.20503", True), ("http.408", False), ("connect", False),
            ("timeout", False), ("twilio.21211", False), ("http.4290", False)]


@pytest.mark.parametrize(("code", "is_refusal"), REFUSALS, ids=[c for c, _ in REFUSALS])
def test_which_results_are_refusals(code, is_refusal):
    assert refused(SendResult(Outcome.RETRY, code)) is is_refusal
    assert not refused(SendResult(Outcome.FAILED, code))


def test_a_refusal_waits_for_retry_after_and_gives_its_attempt_back_even_after_the_last():
    for attempts_before in (0, RETRY["max_attempts"] - 1):  # the last redial is not used up by a 503
        d = decide(SendResult(Outcome.RETRY, "twilio.20503", retry_after=7), attempts_before, T0, **FREE)
        assert (d.state, d.counted, d.code) == (State.PENDING, False, "twilio.20503")
        assert d.next_attempt_at == T0 + timedelta(seconds=7)  # not the backoff (a call's redial schedule)


def test_a_refusal_without_retry_after_is_tried_again_soon():
    d = decide(SendResult(Outcome.RETRY, "http.429"), 2, T0, **FREE)
    assert not d.counted and d.next_attempt_at == T0 + timedelta(seconds=REFUSED_RETRY_SECONDS)


def test_refusals_count_again_once_the_free_time_is_over_or_when_the_channel_has_none():
    late = T0 + timedelta(seconds=3601)
    assert decide(SendResult(Outcome.RETRY, "http.503"), 0, late, **FREE).counted
    gave_up = decide(SendResult(Outcome.RETRY, "http.503"), RETRY["max_attempts"] - 1, late, **FREE)
    assert (gave_up.state, gave_up.code) == (State.FAILED, "retries_exhausted")
    assert decide(SendResult(Outcome.RETRY, "http.429", retry_after=45), 0, T0, **RETRY).counted  # webhooks


def test_other_retries_still_count():
    d = decide(SendResult(Outcome.RETRY, "connect"), RETRY["max_attempts"] - 1, T0, **FREE)
    assert (d.state, d.counted, d.code) == (State.FAILED, True, "retries_exhausted")
