"""Clocks. The engine asks a Clock for the time, so tests can freeze or move it."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


def provider_time(clock: Clock, moment: datetime) -> datetime:
    """A moment of warnd's clock as a provider's real clock stamps it: the same, but for a
    simulation's ScaledClock (its seconds run `speed` times faster than the provider's)."""
    return clock.to_real(moment) if isinstance(clock, ScaledClock) else moment


def clock_time(clock: Clock, moment: datetime) -> datetime:
    """A provider's real moment as warnd's clock reads it (provider_time's inverse)."""
    return clock.from_real(moment) if isinstance(clock, ScaledClock) else moment


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ScaledClock:
    """Simulated time running `speed`× faster than the wall clock (simulations only).

    Several processes built from the same (speed, real_start, sim_start) agree on
    the time, so a warnd process restarted mid-simulation continues where it was.
    """

    def __init__(self, speed: float, real_start: float, sim_start: datetime) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.real_start = real_start
        self.sim_start = sim_start

    def now(self) -> datetime:
        return self.sim_start + timedelta(seconds=(time.time() - self.real_start) * self.speed)

    def to_real(self, moment: datetime) -> datetime:
        """A simulated moment as a real clock (a provider's) stamps it."""
        return datetime.fromtimestamp(self.real_start + (moment - self.sim_start).total_seconds() / self.speed,
                                      timezone.utc)

    def from_real(self, moment: datetime) -> datetime:
        """A real clock's moment (a provider's stamp) in simulated time (to_real's inverse)."""
        return self.sim_start + timedelta(seconds=(moment.timestamp() - self.real_start) * self.speed)

    def spec(self) -> str:
        """The form `parse` reads: SPEED@REAL_START@SIM_START (for a child process)."""
        return f"{self.speed}@{self.real_start}@{self.sim_start.isoformat()}"

    @classmethod
    def parse(cls, spec: str) -> "ScaledClock":
        speed, real, sim = spec.split("@")
        return cls(float(speed), float(real), datetime.fromisoformat(sim))


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> datetime:
        self._now = moment
        return moment

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now
