"""How long the first wave of a warning takes to leave, channel by channel (pure).

Each channel sends at its configured rate, shared by every node: SMS counts
segments (a three-part text costs three sends), every other channel one send per
recipient. So a channel's first wave takes recipients × segments ÷ rate seconds
(2,000 calls at Twilio's default 1 call/s: 2,000 s, 33 minutes), and the warning's
first wave is done when its slowest channel is. Channels run side by side.

What this leaves out, on purpose: other warnings already queued (a higher level
goes first), retries, per-number caps (they do not bite a first wave: one send
per number), and how long a call rings.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """Recipients who get the same text: how many, and how many segments it costs each (1 off SMS)."""

    recipients: int
    segments: int = 1


@dataclass(frozen=True)
class ChannelEstimate:
    channel: str
    recipients: int
    segments: int  # per recipient; the largest where recipients get texts of different length
    messages: int  # sends the rate counts: Σ recipients × segments
    rate_per_second: float
    seconds: float


def estimate(channel: str, groups: Iterable[Group], rate_per_second: float) -> ChannelEstimate:
    """One channel's first wave: Σ recipients × segments ÷ rate_per_second."""
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    groups = list(groups)
    if any(g.recipients < 0 or g.segments < 0 for g in groups):
        raise ValueError("recipients and segments are counts")
    groups = [g for g in groups if g.recipients > 0]
    recipients = sum(g.recipients for g in groups)
    messages = sum(g.recipients * g.segments for g in groups)
    segments = max((g.segments for g in groups), default=0)
    return ChannelEstimate(channel, recipients, segments, messages, rate_per_second, messages / rate_per_second)


def seconds(recipients: int, segments: int, rate_per_second: float) -> float:
    """recipients × segments ÷ rate: the one-group case."""
    return estimate("", [Group(recipients, segments)], rate_per_second).seconds


def first_wave_seconds(estimates: Iterable[ChannelEstimate]) -> float:
    """The channels send side by side: the first wave is done when the slowest one is."""
    return max((e.seconds for e in estimates), default=0.0)
