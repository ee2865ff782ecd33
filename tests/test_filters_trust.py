"""Transcript trust: Whisper hallucination signals, text features, word times, round-trip CER."""

import numpy as np
import pytest
from filters.trust import TrustFilter, cer
from pipelines.core.config import load_config

from tandem.testing import filters as T

AUDIO = np.zeros((2, 24000 * 5), np.float32)


@pytest.fixture(scope="session")
def cfg():
    return load_config()


def decide(cfg, **kw):
    kw.setdefault("kind", "real")
    kw.setdefault("language", "en")
    ex = T.example(AUDIO, **kw)
    tf = TrustFilter.from_config(cfg)
    return tf.decide(tf.measure(ex, None), ex)


def seg(**kw):
    s = {"channel": 0, "start_s": 0.0, "end_s": 2.0, "text": "x", "language": "en", "language_prob": 0.9,
         "avg_logprob": -0.3, "no_speech_prob": 0.05, "compression_ratio": 1.3}
    return s | kw


def words(n, dur=0.3):
    return [{"channel": 0, "speaker": "S0", "word": f"w{i}", "start_s": i * 0.4, "end_s": i * 0.4 + dur,
             "score": 0.9, "overlap": False} for i in range(n)]


GOOD = "we should meet on tuesday to go over the budget for next year"


def test_clean_transcript_passes(cfg):
    assert decide(cfg, text=(GOOD, ""), words=words(10), segments=[seg()]).keep


@pytest.mark.parametrize("kw,reason", [
    ({"segments": [seg(no_speech_prob=0.9, avg_logprob=-1.5)]}, "whisper_no_speech"),
    ({"segments": [seg(compression_ratio=3.1)]}, "whisper_repetition"),
    ({"segments": [seg(avg_logprob=-1.4)]}, "whisper_low_logprob"),
    ({"text": ("Thank you for watching!", "")}, "hallucination_phrase"),
    ({"text": ("i think i think i think i think i think i think i think", "")}, "repeated_ngrams"),
    ({"text": ("yes yes no yes yes maybe yes yes so yes well", "")}, "word_dominates"),
    ({"text": ("we should meet aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa tomorrow", "")}, "long_word"),
    ({"text": ("", "")}, "empty_transcript"),
])
def test_untrustworthy_transcripts_rejected(cfg, kw, reason):
    kw.setdefault("text", (GOOD, ""))
    kw.setdefault("segments", [seg()])
    d = decide(cfg, words=[] if reason == "empty_transcript" else words(10), **kw)
    assert not d.keep and d.reason == reason, (d.reason, d.detail)


def test_spoken_web_address_is_not_a_hallucination(cfg):
    said = "for more information visit www.asterisk.org or call us tomorrow morning"
    assert decide(cfg, text=(said, ""), words=words(10), segments=[seg()]).keep
    credit = "Subtitles by the Amara.org community"
    d = decide(cfg, text=(credit, ""), words=words(10), segments=[seg()])
    assert not d.keep and d.reason == "hallucination_phrase"


def test_bad_word_times_rejected(cfg):
    ws = words(10)
    ws[3]["start_s"], ws[3]["end_s"] = 0.1, 0.2  # out of order
    ws[9]["end_s"] = 7.0  # past the end of the 5 s audio
    d = decide(cfg, text=(GOOD, ""), words=ws, segments=[seg()])
    assert not d.keep and d.reason == "word_times"
    assert d.metrics["w.non_monotonic"] >= 1 and d.metrics["w.outside"] == 1


def test_roundtrip_cer_threshold(cfg):
    assert decide(cfg, kind="synthetic", text=(GOOD, ""), words=words(10), roundtrip_cer=0.05).keep
    d = decide(cfg, kind="synthetic", text=(GOOD, ""), words=words(10), roundtrip_cer=0.6)
    assert not d.keep and d.reason == "roundtrip_cer_high"
    assert cer("Hello, World!", "hello world") == 0.0
    assert cer("aujourd'hui", "aujourd’hui") == 0.0  # one normalizer: apostrophes of either kind
    assert cer("abc", "") == 1.0 and cer("", "") == 0.0


def test_one_stretched_word_among_many_tolerated_on_real_speech_only(cfg):
    ws = words(150)
    ws[70]["end_s"] = ws[70]["start_s"] + 3.2  # Whisper stretched one word over an overlap
    long_audio = np.zeros((2, 24000 * 70), np.float32)
    text = (" ".join(f"word{i}" for i in range(150)), "")
    real = T.example(long_audio, kind="real", language="en", text=text, words=ws, segments=[seg()])
    tf = TrustFilter.from_config(cfg)
    d = tf.decide(tf.measure(real, None), real)
    assert d.keep, d.detail
    syn = T.example(long_audio, kind="synthetic", language="en", text=text, words=ws, roundtrip_cer=0.05)
    d = tf.decide(tf.measure(syn, None), syn)
    assert not d.keep and d.reason == "word_times", d.detail
