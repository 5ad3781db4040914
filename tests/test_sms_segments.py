"""SMS segment counting: GSM-7 160/153, UCS-2 70/67, escapes and surrogate pairs."""
from __future__ import annotations

import pytest

from warnd.domain.sms_segments import SegmentInfo, segment_info

HAN = "预"  # one UTF-16 unit
EMOJI = "🌧"  # U+1F327: a surrogate pair, two units

CASES = [
    ("empty", "", SegmentInfo("GSM-7", 0, 0)),
    ("one-gsm", "a", SegmentInfo("GSM-7", 1, 1)),
    ("gsm-160", "a" * 160, SegmentInfo("GSM-7", 160, 1)),
    ("gsm-161", "a" * 161, SegmentInfo("GSM-7", 161, 2)),
    ("gsm-306", "a" * 306, SegmentInfo("GSM-7", 306, 2)),
    ("gsm-307", "a" * 307, SegmentInfo("GSM-7", 307, 3)),
    ("gsm-specials", "@£$¥èé\nÆß¡¿§Ñü", SegmentInfo("GSM-7", 14, 1)),
    ("euro-counts-2", "€", SegmentInfo("GSM-7", 2, 1)),
    ("extension-table", "^{}\\[~]|€", SegmentInfo("GSM-7", 18, 1)),
    ("gsm-159-plus-euro", "a" * 159 + "€", SegmentInfo("GSM-7", 161, 2)),
    ("gsm-80-euros", "€" * 80, SegmentInfo("GSM-7", 160, 1)),
    # 152 septets then an escape pair: the pair is not split, so it opens part 2
    ("escape-not-split", "a" * 152 + "€" + "a" * 10, SegmentInfo("GSM-7", 164, 2)),
    ("escape-pushes-part-3", "a" * 152 + "€" + "a" * 152 + "€", SegmentInfo("GSM-7", 308, 3)),
    ("han-70", HAN * 70, SegmentInfo("UCS-2", 70, 1)),
    ("han-71", HAN * 71, SegmentInfo("UCS-2", 71, 2)),
    ("han-134", HAN * 134, SegmentInfo("UCS-2", 134, 2)),
    ("han-135", HAN * 135, SegmentInfo("UCS-2", 135, 3)),
    ("one-han-makes-all-ucs2", "a" * 69 + HAN, SegmentInfo("UCS-2", 70, 1)),
    ("euro-in-ucs2-is-1", "€" + HAN, SegmentInfo("UCS-2", 2, 1)),
    ("emoji-is-2", EMOJI, SegmentInfo("UCS-2", 2, 1)),
    ("emoji-35", EMOJI * 35, SegmentInfo("UCS-2", 70, 1)),
    ("emoji-36", EMOJI * 36, SegmentInfo("UCS-2", 72, 2)),
    # 66 units then a pair: the pair is not split, so it opens part 2
    ("surrogate-not-split", HAN * 66 + EMOJI + HAN * 5, SegmentInfo("UCS-2", 73, 2)),
    ("fullwidth-brackets", "【县预警中心】", SegmentInfo("UCS-2", 7, 1)),
    ("backtick-not-gsm", "`", SegmentInfo("UCS-2", 1, 1)),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_segment_info(text, expected):
    assert segment_info(text) == expected
