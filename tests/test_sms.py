from hypothesis import given
from hypothesis import strategies as st

from textbackd.core import sms


def test_plain_ascii_is_one_gsm7_segment():
    """A short ASCII text travels as one GSM-7 segment counted in septets."""
    info = sms.analyze("Sorry we missed your call")
    assert info == sms.SmsInfo("gsm7", 25, 1, ("Sorry we missed your call",))


def test_extension_characters_cost_two_septets():
    """Each extension-table character (€ [ ] { } ^ ~ \\ |) counts as an escape plus a septet."""
    info = sms.analyze("€[]{}^~\\|")
    assert info.encoding == "gsm7"
    assert info.units == 18


def test_160_septets_fit_one_segment_161_need_two():
    """160 septets is the single-segment limit; one more makes two parts of at most 153."""
    assert sms.analyze("a" * 160).segments == 1
    info = sms.analyze("a" * 161)
    assert info.segments == 2
    assert [len(p) for p in info.parts] == [153, 8]


def test_400_gsm7_chars_are_three_parts():
    """A 400-character GSM-7 text is 3 linked parts (153 + 153 + 94)."""
    info = sms.analyze("x" * 400)
    assert (info.encoding, info.segments) == ("gsm7", 3)
    assert [len(p) for p in info.parts] == [153, 153, 94]


def test_escape_sequence_is_never_split():
    """An extension character that would straddle a part boundary moves whole to the next part."""
    text = "a" * 152 + "€" + "b" * 10
    info = sms.analyze(text)
    assert info.parts[0] == "a" * 152
    assert info.parts[1].startswith("€")
    assert "".join(info.parts) == text


def test_emoji_forces_ucs2_and_counts_two_units():
    """An emoji switches the whole text to UCS-2 and counts as a surrogate pair."""
    info = sms.analyze("Sorry we missed your call 😊")
    assert info.encoding == "ucs2"
    assert info.units == 26 + 2
    assert info.segments == 1


def test_ucs2_limits_70_and_67():
    """70 UCS-2 units fit one segment; 71 split into parts of at most 67 units."""
    assert sms.analyze("ж" * 70).segments == 1
    info = sms.analyze("ж" * 71)
    assert [len(p) for p in info.parts] == [67, 4]


def test_surrogate_pair_is_never_split():
    """An emoji that would straddle a UCS-2 part boundary moves whole to the next part."""
    text = "ж" * 66 + "😊" + "ж" * 10
    info = sms.analyze(text)
    assert info.parts[0] == "ж" * 66
    assert info.parts[1].startswith("😊")


def test_gsm7_round_trip_of_whole_alphabet():
    """Every basic and extension character encodes and decodes back to itself."""
    alphabet = sms.GSM7_BASIC.replace("\x1b", "") + "".join(sms.GSM7_EXTENSION)
    assert sms.decode_gsm7(sms.encode_gsm7(alphabet)) == alphabet


def test_non_gsm7_chars_lists_culprits():
    """The characters that force UCS-2 are reported once each, in order."""
    assert sms.non_gsm7_chars("café ok 😊 ¿ ç ç") == ("😊", "ç")


@given(st.text(max_size=500))
def test_parts_rejoin_and_respect_budgets(text):
    """For any text the parts rejoin to it and each fits the per-segment budget."""
    info = sms.analyze(text)
    assert "".join(info.parts) == text
    assert len(info.parts) == info.segments
    cost = (lambda c: sms.gsm7_cost(c)) if info.encoding == "gsm7" else sms.ucs2_cost
    for p in info.parts:
        assert sum(cost(c) for c in p) <= info.per_segment
