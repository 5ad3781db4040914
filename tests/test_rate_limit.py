"""Provider limits as arithmetic (warnd/domain/rate_limit.py): cells of a shared rate,
caps per called number. Pure: times are plain numbers, no clock, no database."""
from __future__ import annotations

import pytest

from warnd.domain.rate_limit import (CAP_MARGIN_SECONDS, Cells, admit, batch_cells, burst_seconds, cap_windows,
                                     decode, encode, next_allowed, release, reserve_seconds, send_cost, trim)

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
M = CAP_MARGIN_SECONDS


@pytest.mark.parametrize(("content_type", "cost"), [
    ("text/plain; charset=utf-8; segments=3; encoding=UCS-2", 3),
    ("text/plain; charset=utf-8; segments=1; encoding=GSM-7", 1),
    ("text/plain; segments=12", 12),
    ("text/plain; charset=utf-8; segments=0", 1),  # never free
    ("text/plain; charset=utf-8; language=cmn-CN; voice=Polly.Zhiyu; repeat=2; confirm=yes", 1),  # a call
    ("application/cap+xml", 1),
    ("text/plain; xsegments=5", 1),
])
def test_a_send_costs_its_segments(content_type, cost):
    assert send_cost(content_type) == cost


def test_batches_and_bursts_follow_the_rate():
    assert (batch_cells(1.0), batch_cells(20.0), batch_cells(1_000_000.0)) == (1, 5, 250_000)
    assert burst_seconds(1.0) == 1.0 and burst_seconds(100.0) == pytest.approx(0.1)
    # a slow database (reserving takes `latency`): longer runs, the next reserved earlier, at most 2 s
    assert reserve_seconds(0.0) == (0.25, 0.125)
    assert reserve_seconds(0.4) == pytest.approx((1.2, 0.6))
    assert reserve_seconds(5.0) == (2.0, 2.0)


class Database:
    """What LimitStore.reserve does in SQL: the end of every node's cells, one number."""

    def __init__(self) -> None:
        self.tat = 0.0

    def reserve(self, cells: int, rate: float, now: float, burst: float) -> float:
        start = max(self.tat, now - burst)
        self.tat = start + cells / rate
        return start


def run(nodes: int, rate: float, cost: int, seconds: float, step: float = 0.001) -> list[float]:
    """Every node sends as fast as its cells allow, each send costing `cost`; the send times."""
    db = Database()
    shares = [Cells(rate, burst_seconds(rate)) for _ in range(nodes)]
    sent: list[tuple[float, int]] = []
    now = 1000.0
    while now < 1000.0 + seconds:
        for cells in shares:
            wait = cells.wait(now)
            if wait is None:
                wanted = cells.wanted()
                cells.add(db.reserve(wanted, rate, now, cells.burst), wanted)
                wait = cells.wait(now)
            elif cells.following is None and cells.left(now) < batch_cells(rate) / 2:  # as SharedRate does
                wanted = cells.wanted()
                cells.ahead(db.reserve(wanted, rate, now, cells.burst), wanted)
            if wait == 0:
                cells.spend(1, now)
                cells.spend(cost - 1, now)  # the rest of its segments, owed
                sent.append((now, cost))
        now += step
    return [t for t, c in sent for _ in range(c)]  # one entry per cell


@pytest.mark.parametrize(("nodes", "cost"), [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_nodes_sharing_a_rate_keep_to_it_together(nodes, cost):
    rate = 20.0
    cells = run(nodes, rate, cost, seconds=10.0)
    assert len(cells) <= rate * 10 + rate * burst_seconds(rate) + nodes * cost
    assert len(cells) >= rate * 10 * 0.95  # and they use it
    for start in range(1000, 1009):  # every one-second window, not only the whole run
        in_window = sum(1 for t in cells if start <= t < start + 1)
        assert in_window <= rate + rate * burst_seconds(rate) + nodes * cost, (start, in_window)


def test_a_node_alone_does_not_go_to_the_database_per_send():
    db = Database()
    calls = 0
    real = db.reserve

    def counted(*args):  # noqa: ANN002, ANN202
        nonlocal calls
        calls += 1
        return real(*args)

    db.reserve = counted
    cells = Cells(1000.0, burst_seconds(1000.0))
    now, sends = 0.0, 0
    while now < 2.0:
        wait = cells.wait(now)
        if wait is None:
            wanted = cells.wanted()
            cells.add(db.reserve(wanted, 1000.0, now, cells.burst), wanted)
            continue
        if wait == 0:
            cells.spend(1, now)
            sends += 1
        else:
            now += wait
    assert sends >= 1900 and calls <= 2 / 0.25 + 2  # a quarter second of the rate per reservation


def test_owed_segments_are_paid_before_the_next_send():
    cells = Cells(1.0, burst_seconds(1.0))
    cells.add(0.0, 1)  # one cell, from 0 (the burst before now)
    assert cells.wait(1.0) == 0
    cells.spend(1, 1.0)
    cells.spend(2, 1.0)  # a three-segment SMS
    assert cells.wait(1.0) is None and cells.wanted() == 1 + 2
    cells.add(1.0, 3)  # right after our own: the owed cells are the first of the new ones
    assert cells.wait(1.0) == pytest.approx(2.0)  # the next send waits for the two owed segments


def test_a_run_reserved_ahead_is_taken_up_when_this_one_is_spent():
    cells = Cells(10.0, burst_seconds(10.0))
    cells.add(5.0, 2)
    cells.ahead(5.2, 2)  # right after ours: one run of four
    assert cells.left(5.0) == pytest.approx(4)
    for _ in range(4):
        assert cells.wait(5.0) is not None
        cells.spend(1, 5.0)
    assert cells.wait(5.0) is None and cells.following is None
    cells.ahead(9.0, 1)  # another node reserved in between: ours starts later
    assert cells.wait(5.0) == pytest.approx(4.0)


def test_cells_given_back_are_spent_again():
    cells = Cells(10.0, burst_seconds(10.0))
    cells.add(5.0, 2)
    cells.spend(1, 5.0)
    cells.give_back(1)
    cells.spend(1, 5.0)
    cells.spend(1, 5.0)
    assert cells.wait(5.0) is None


# --- caps per called number ------------------------------------------------------------------------

CAPS = cap_windows(minute=1, hour=3, day=None)


def test_cap_windows_leave_out_what_is_not_capped():
    assert cap_windows(5, 20, 50) == ((MINUTE, 5), (HOUR, 20), (DAY, 50))
    assert cap_windows(None, None, None) == ()


def test_next_allowed_is_when_the_oldest_send_leaves_the_fullest_window():
    assert next_allowed([], CAPS, 100.0) == 100.0
    assert next_allowed([90.0], CAPS, 100.0) == 90.0 + MINUTE + M
    assert next_allowed([0.0, 1000.0, 2000.0], CAPS, 2100.0) == 0.0 + HOUR + M  # the hour is full
    assert next_allowed([0.0, 1000.0, 2000.0], CAPS, 3700.0) == 3700.0


def test_a_batch_admits_one_send_per_number_and_spreads_the_rest_over_the_minutes():
    rows = [(1, "+86a"), (2, "+86b"), (3, "+86a"), (4, "+86a")]
    admission = admit(rows, {}, CAPS, 100.0)
    assert admission.admitted == {1, 2} and admission.at == 100.0
    assert [(d.delivery_id, d.until) for d in admission.deferred] == [(3, 100.0 + MINUTE + M),
                                                                       (4, 100.0 + 2 * (MINUTE + M))]
    assert all(d.detail.startswith("per-number cap 1 per minute") for d in admission.deferred)
    assert admission.history == {"+86a": [100.0], "+86b": [100.0]}


def test_a_send_the_history_already_fills_waits_and_nothing_is_recorded_for_it():
    admission = admit([(7, "+86a")], {"+86a": [50.0]}, CAPS, 100.0)
    assert not admission.admitted and admission.history == {}
    assert [d.until for d in admission.deferred] == [50.0 + MINUTE + M]


def test_history_keeps_what_can_still_matter_and_a_refused_send_is_released():
    assert trim([1.0, 5000.0, 5001.0, 5002.0, 5003.0], 5100.0, HOUR + M, 3) == [5001.0, 5002.0, 5003.0]
    assert release([10.0, 20.0, 20.0], 20.0) == [10.0, 20.0]
    assert release([10.0], 99.0) == [10.0]
    assert decode(encode([1782345678.1234, 5.0])) == [1782345678.123, 5.0] and decode("") == []
