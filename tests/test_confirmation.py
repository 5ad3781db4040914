"""What a reply means, and signed links (pure)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0

from warnd.domain.confirmation import Kind, OpenItem, interpret_reply, short_code
from warnd.domain.errors import WarndError
from warnd.domain.signing import sign, verify

WORDS = ["1", "收到", "确认", "OK"]
ONE = [OpenItem(10, 7, "暴雨", "红色"), OpenItem(11, 7, "暴雨", "红色")]
TWO = ONE + [OpenItem(12, 40, "山洪", "橙色")]


@pytest.mark.parametrize("text", ["1", " 1 ", "１", "收到", "确认。", "ok", "OK!", "收到，谢谢"])
def test_a_confirm_word_confirms_every_requirement_of_the_one_open_warning(text):
    d = interpret_reply(text, WORDS, ONE)
    assert d.kind is Kind.CONFIRM and d.confirmation_ids == (10, 11)
    assert "已确认" in d.answer_zh


def test_with_two_open_warnings_a_bare_1_asks_for_the_code():
    d = interpret_reply("1", WORDS, TWO)
    assert d.kind is Kind.AMBIGUOUS and d.confirmation_ids == ()
    assert short_code(7) in d.answer_zh and short_code(40) in d.answer_zh


def test_the_short_code_picks_the_warning():
    d = interpret_reply(short_code(40).lower(), WORDS, TWO)
    assert d.kind is Kind.CONFIRM and d.confirmation_ids == (12,)


def test_nothing_open_and_chatter_get_helpful_answers():
    assert interpret_reply("1", WORDS, []).kind is Kind.NOTHING_OPEN
    d = interpret_reply("下雨了吗", WORDS, ONE)
    assert d.kind is Kind.NOT_A_CONFIRMATION and "回复1" in d.answer_zh


def test_short_codes_are_short_and_distinct():
    codes = {short_code(i) for i in range(1, 5000)}
    assert len(codes) == 4999 and max(len(c) for c in codes) <= 4


KEY = b"k" * 32


def test_a_signed_token_verifies_for_its_purpose_only():
    token = sign(KEY, "voice-gather", "42", T0 + timedelta(days=1))
    assert verify(KEY, "voice-gather", token, T0) == "42"
    for purpose, key, tok in (("sms-status", KEY, token), ("voice-gather", b"x" * 32, token),
                              ("voice-gather", KEY, token.replace("42", "43", 1)), ("voice-gather", KEY, "junk")):
        with pytest.raises(WarndError) as err:
            verify(key, purpose, tok, T0)
        assert err.value.code == "link.invalid"


def test_an_expired_token_is_refused():
    token = sign(KEY, "ack", "7", T0)
    with pytest.raises(WarndError) as err:
        verify(KEY, "ack", token, T0 + timedelta(seconds=1))
    assert err.value.code == "link.expired"
