"""What a reply means, whom it confirms, and signed links (pure).

The reply table is data: tests/data/replies.yaml, replies as people really write them
(affirmatives with 了/已/的, punctuation, emoji, full-width, mixed Chinese and English,
dialect; negations; questions; codes of this and of other warnings; garbage; backups
asked or not), each with the outcome it must have.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from factories import T0

from warnd.config import Config
from warnd.domain.confirmation import Kind, OpenItem, Role, interpret_reply, key_press_answer, short_code
from warnd.domain.errors import WarndError
from warnd.domain.signing import sign, verify

WORDS = ["1", "收到", "确认", "OK"]
ONE = [OpenItem(10, 7, "暴雨", "红色"), OpenItem(11, 7, "暴雨", "红色")]
TWO = ONE + [OpenItem(12, 40, "山洪", "橙色")]
TABLE = yaml.safe_load((Path(__file__).parent / "data" / "replies.yaml").read_text(encoding="utf-8"))


def context(name: str) -> list[OpenItem]:
    return [OpenItem(c["id"], c["warning"], c.get("event", "暴雨"), c.get("level", "红色"), Role(c["role"]),
                     c["grid"], c["grid_name"], c.get("parent", "河口村"), c.get("drill", False), "p")
            for c in TABLE["contexts"][name]]


def _row_id(row: dict) -> str:
    return f"{row['text']!r}@{row.get('items', 'one')}"


@pytest.mark.parametrize("row", TABLE["replies"], ids=_row_id)
def test_the_reply_table(row):
    items = context(row.get("items", "one"))
    d = interpret_reply(row["text"], Config().sms.confirm_words, items,
                        backups_confirm=row.get("backups_confirm", False))
    own = [i.confirmation_id for i in items if i.role is Role.RESPONSIBLE]
    expected = row.get("confirms", own) if row["kind"] == "confirmed" else []
    assert (d.kind.value, sorted(d.confirmation_ids)) == (row["kind"], sorted(expected)), d.answer_zh
    assert d.answer_zh and d.answer_en  # every reply is answered, in both languages


def test_the_table_is_large_and_covers_every_outcome():
    kinds = Counter(row["kind"] for row in TABLE["replies"])
    assert len(TABLE["replies"]) >= 150
    assert set(kinds) == {k.value for k in Kind}
    assert kinds["confirmed"] >= 100 and kinds["negative"] >= 30 and kinds["question"] >= 20
    assert kinds["ignored"] >= 20 and kinds["wrong_code"] >= 5


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
    for text, kind in (("下雨了吗", Kind.QUESTION), ("下雨了", Kind.NOT_A_CONFIRMATION), ("没收到", Kind.NEGATIVE)):
        d = interpret_reply(text, WORDS, ONE)
        assert d.kind is kind and d.confirmation_ids == () and "回复1" in d.answer_zh and "reply 1" in d.answer_en


@pytest.mark.parametrize("text", ["没收到，1", "1 没收到", "未收到 W7", "不知道，OK", "没看到 收到"])
def test_a_negation_never_confirms_whatever_else_the_reply_says(text):
    assert interpret_reply(text, WORDS, ONE).kind is Kind.NEGATIVE


def test_another_warnings_code_never_confirms_the_only_open_one_and_says_which_is_open():
    d = interpret_reply(f"收到 {short_code(40)}", WORDS, ONE)
    assert d.kind is Kind.WRONG_CODE and d.confirmation_ids == ()
    assert short_code(40) in d.answer_zh and f"请回复{short_code(7)}确认" in d.answer_zh


def test_a_configured_confirm_word_is_understood_too():
    assert interpret_reply("收到请回", WORDS + ["收到请回"], ONE).kind is Kind.CONFIRM
    assert interpret_reply("妥", WORDS, ONE).kind is Kind.CONFIRM
    assert interpret_reply("阿弥", WORDS, ONE).kind is Kind.NOT_A_CONFIRMATION
    assert interpret_reply("阿弥", WORDS + ["阿弥"], ONE).kind is Kind.CONFIRM


GRID1, GRID2 = "421126100201001", "421126100201002"


def item(cid: int, role: Role, grid: str = GRID1, name: str = "一组", *, drill: bool = False,
         warning: int = 7) -> OpenItem:
    return OpenItem(cid, warning, "暴雨", "红色", role, grid, name, "河口村", drill, "p")


def test_a_backup_confirms_only_what_a_rung_asked_or_what_they_name():
    unasked = [item(20, Role.BACKUP, GRID2, "二组")]
    d = interpret_reply("1", WORDS, unasked)
    assert d.kind is Kind.NOT_ASKED and d.confirmation_ids == ()
    assert "河口村二组" in d.answer_zh and "收到 河口村二组" in d.answer_zh  # how to confirm on their behalf
    assert interpret_reply("收到 二组", WORDS, unasked).confirmation_ids == (20,)
    assert interpret_reply(f"{GRID2} 1", WORDS, unasked).confirmation_ids == (20,)
    assert interpret_reply("1", WORDS, unasked, backups_confirm=True).confirmation_ids == (20,)
    assert interpret_reply("1", WORDS, [item(20, Role.ASKED, GRID2, "二组")]).confirmation_ids == (20,)


def test_a_confirmation_for_someone_elses_grid_says_for_which():
    d = interpret_reply("收到", WORDS, [item(10, Role.ASKED), item(20, Role.ASKED, GRID2, "二组")])
    assert d.kind is Kind.CONFIRM and d.confirmation_ids == (10, 20)
    assert "代河口村一组、河口村二组确认" in d.answer_zh and "for 河口村一组, 河口村二组" in d.answer_en
    own = interpret_reply("收到", WORDS, [item(10, Role.RESPONSIBLE)])
    assert "代" not in own.answer_zh and " for " not in own.answer_en


def test_every_answer_about_a_drill_says_so_in_both_languages():
    drill = [item(30, Role.RESPONSIBLE, drill=True, warning=9)]
    for text in ("1", "没收到", "什么预警", "哈哈", "W1Z"):
        d = interpret_reply(text, WORDS, drill)
        assert d.answer_zh.startswith("【演练】") and d.answer_en.startswith("[EXERCISE]"), (text, d)
    d = interpret_reply("1", WORDS, drill)
    assert d.kind is Kind.CONFIRM and "（演练）" in d.answer_zh and "(exercise)" in d.answer_en
    real = interpret_reply("1", WORDS, [item(10, Role.RESPONSIBLE)])
    assert "演练" not in real.answer_zh and "EXERCISE" not in real.answer_en
    # with a real warning and a drill open, the listing marks the drill alone
    both = interpret_reply("1", WORDS, [item(10, Role.RESPONSIBLE), *drill])
    assert both.kind is Kind.AMBIGUOUS and not both.answer_zh.startswith("【演练】")
    assert f"{short_code(9)} 暴雨红色预警（演练）" in both.answer_zh


def test_key_press_answers_say_drill_and_come_in_both_languages():
    for kind in (Kind.CONFIRM, Kind.NOT_ASKED, Kind.NOT_A_CONFIRMATION):
        zh, en = key_press_answer(kind, False)
        dzh, den = key_press_answer(kind, True)
        assert "演练" not in zh and "xercise" not in en and zh != en
        assert dzh.startswith("演练") and den.startswith("Exercise") and zh in dzh and en in den
    assert "已确认" in key_press_answer(Kind.CONFIRM, False)[0]


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
