"""The first-wave estimate (pure): recipients × segments ÷ rate, per channel; the slowest channel decides."""
from __future__ import annotations

import pytest

from warnd.domain.estimate import Group, estimate, first_wave_seconds, seconds


def test_two_thousand_calls_at_one_a_second_take_two_thousand_seconds():
    assert seconds(2000, 1, 1.0) == 2000  # 33 minutes: an operator must see that before sending
    voice = estimate("voice", [Group(2000)], 1.0)
    assert (voice.recipients, voice.segments, voice.messages, voice.seconds) == (2000, 1, 2000, 2000)


def test_sms_counts_segments_per_group_of_recipients():
    # 300 who must confirm get a longer text (3 parts) than the 100 others (2 parts)
    sms = estimate("sms", [Group(300, 3), Group(100, 2)], 10.0)
    assert (sms.recipients, sms.segments, sms.messages) == (400, 3, 1100)
    assert sms.seconds == pytest.approx(110.0)
    assert seconds(2000, 3, 1.0) == 6000


def test_channels_run_side_by_side():
    sms = estimate("sms", [Group(40, 2)], 1.0)  # 80 s
    voice = estimate("voice", [Group(40)], 0.5)  # 80 s
    webhook = estimate("webhook", [Group(3)], 500.0)
    speaker = estimate("speaker", [Group(0)], 2000.0)
    assert (speaker.recipients, speaker.segments, speaker.seconds) == (0, 0, 0)
    assert first_wave_seconds([sms, voice, webhook, speaker]) == 80
    assert first_wave_seconds([]) == 0


@pytest.mark.parametrize("groups, rate", [([Group(-1)], 1.0), ([Group(1, -1)], 1.0), ([Group(1)], 0.0)])
def test_nonsense_is_refused(groups, rate):
    with pytest.raises(ValueError):
        estimate("sms", groups, rate)
