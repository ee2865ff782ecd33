import numpy as np
import pytest
from pipelines.train import tokens
from pipelines.train.tokens import ByteTokenizer, channel_streams, frame_of, num_frames, token_stream

PAD, EPAD = 3, 0
TOK = ByteTokenizer()


def w(word, start, end=None, ch=0):
    return {"word": word, "start_s": start, "end_s": end if end is not None else start + 0.3, "channel": ch}


def test_first_token_on_frame_containing_start():
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 30, 40))
    starts = starts[np.r_[True, np.diff(starts) > 0.5]]  # room for short words, nothing pushed
    words = [w("ab", float(s)) for s in starts]
    n = num_frames(31 * 24000, 24000)
    s, stats = token_stream(words, n, TOK)
    assert stats["pushed"] == 0 and stats["dropped_tokens"] == 0
    for word in words:
        f = frame_of(word["start_s"])
        assert f / 12.5 <= word["start_s"] < (f + 1) / 12.5
        assert s[f] == TOK("a")[0] and s[f + 1] == TOK("b")[0]


def test_pad_epad_layout():
    # "hi" at 0.0 s (frame 0), "yo" at 0.8 s (frame 10)
    s, _ = token_stream([w("hi", 0.0), w("yo", 0.8)], 13, TOK, pad_id=PAD, epad_id=EPAD)
    h, i, y, o = TOK("hi") + TOK("yo")
    assert s.tolist() == [h, i, PAD, PAD, PAD, PAD, PAD, PAD, PAD, EPAD, y, o, PAD]


def test_custom_ids_and_boundary_float_noise():
    # 0.56 * 12.5 = 7.000000000000001 and 0.24 * 12.5 = 3.0000000000000004: frames 7 and 3
    s, _ = token_stream([w("a", 0.24), w("b", 0.56)], 10, TOK, pad_id=-5, epad_id=-6)
    assert s.tolist() == [-5, -5, -6, TOK("a")[0], -5, -5, -6, TOK("b")[0], -5, -5]


def test_overflow_pushes_next_word_later_without_epad():
    # "abcdef" from frame 1 takes frames 1..6; "x" starts at frame 3 -> pushed to frame 7
    s, st = token_stream([w("abcdef", 0.08), w("x", 0.24)], 10, TOK)
    assert s[0] == EPAD
    assert s[1:7].tolist() == TOK("abcdef")
    assert s[7] == TOK("x")[0]
    assert st == {"words": 2, "pushed": 1, "dropped_tokens": 0}


def test_abutting_word_has_no_epad_and_end_truncates():
    s, st = token_stream([w("ab", 0.0), w("c", 0.16), w("zzzz", 0.32)], 6, TOK)
    assert s.tolist() == TOK("ab") + TOK("c") + [EPAD] + TOK("zz")
    assert st["dropped_tokens"] == 2
    s, st = token_stream([w("late", 2.0)], 5, TOK)
    assert (s == PAD).all() and st["dropped_tokens"] == 4 and st["words"] == 0


def test_channels_are_independent_and_empty_words_skipped():
    words = [w("a", 0.0, ch=0), w("b", 0.0, ch=1), w("", 0.4, ch=1)]
    s, st = channel_streams(words, 8, TOK)
    assert s.shape == (2, 8)
    assert s[0, 0] == TOK("a")[0] and s[1, 0] == TOK("b")[0]
    assert (s[:, 1:] == PAD).all()
    assert st["words"] == 2


def test_byte_tokenizer_round_trip_and_frames():
    assert TOK.decode(TOK(" olá ")) == "olá"
    assert min(TOK("\x00")) >= 4  # special ids stay free
    assert num_frames(24000, 24000) == 13  # 1 s = 12.5 frames -> 13
    assert num_frames(1920 * 5, 24000) == 5
    assert tokens.MOSHI_PAD_ID == 3 and tokens.MOSHI_EPAD_ID == 0


@pytest.mark.parametrize("fr", [12.5, 25.0])
def test_frame_rate_parameter(fr):
    s, _ = token_stream([w("a", 1.0)], int(2 * fr), TOK, frame_rate=fr)
    assert s[int(fr)] == TOK("a")[0] and s[int(fr) - 1] == EPAD
