"""Turn-taking measured with Moshi's definitions (IPU / pause / gap / overlap per minute) and the
timeline defaults tuned against Fisher's figures."""

import numpy as np
import pytest
from pipelines.core.config import load_config
from synth.params import TimelineParams
from synth.timeline import build_timeline
from pipelines.core.turntaking import FISHER, format_per_minute, measure, off_fisher, per_minute

from tandem.testing.synth import fake_backchannel, fake_turns


def _w(ch, s, e):
    return {"channel": ch, "start_s": s, "end_s": e, "word": "x"}


def test_measure_by_hand():
    words = [
        _w(0, 0.0, 1.0), _w(0, 1.1, 2.0),  # 0.1 s silence: bridged into one IPU 0-2
        _w(0, 2.5, 3.0),  # 0.5 s silence, same speaker next: a pause
        _w(1, 3.3, 4.0),  # 0.3 s to the other speaker: a gap (floor transfer +0.3)
        _w(0, 3.8, 5.0),  # starts 0.2 s before channel 1 stops and outlasts it: overlap, transfer -0.2
        _w(1, 4.5, 4.7),  # a backchannel inside channel 0's speech: overlap, no transfer
    ]
    m = measure(words)
    assert m["span_s"] == pytest.approx(5.0)
    assert m["pause_s"] == pytest.approx(0.5) and m["pauses_s"] == [0.5]
    assert m["gap_s"] == pytest.approx(0.3)
    assert m["overlap_s"] == pytest.approx(0.4) and sorted(m["overlaps_s"]) == [0.2, 0.2]
    assert sorted(m["fto_s"]) == [-0.2, 0.3]
    # IPU time sums both channels: 3.0 (ch0: 0-2, 2.5-3, 3.8-5 -> 2.0+0.5+1.2=3.7) + ch1 0.7+0.2
    assert m["ipu_s"] == pytest.approx(3.7 + 0.9)
    # the per-minute identity: IPU + pause + gap - overlap fills the span
    assert m["ipu_s"] + m["pause_s"] + m["gap_s"] - m["overlap_s"] == pytest.approx(m["span_s"])
    pm = per_minute([m, m])
    assert pm["minutes"] == pytest.approx(10 / 60) and pm["pause"] == pytest.approx(6.0)
    assert "Fisher" in format_per_minute(pm)


# The defaults are tuned on the audio (per-channel silero VAD, synth/audiotiming.py), which hears
# each stretch of speech from 7 ms before its sound to 78 ms after it (mean IPU edge errors against
# the words, real espeak dialogues, tests/test_synth_audio_timing.py prints them): the fake words
# are measured as that VAD would hear them. This edge shift is only a model of the VAD: on it the
# defaults measure gap +9-10% and overlap -5% where the real audio of 120 dialogues lands within 2%
# (20_synth.yaml), so it is held to 15%; test_synth_job holds real audio to 20% on 36 dialogues.
VAD_EDGES_S = (-0.007, 0.078)


def _as_heard(words: list[dict]) -> list[dict]:
    return [{**w, "start_s": max(0.0, w["start_s"] + VAD_EDGES_S[0]), "end_s": w["end_s"] + VAD_EDGES_S[1]}
            for w in words]


# Fake utterances shaped like espeak's (words 0.15-0.45 s; a phrase pause after 2% of words, as at
# commas; backchannels 0.24-0.54 s, the 10th-90th percentile of espeak's backchannel tokens): the same shape the defaults were tuned on with real espeak
# dialogues (see 20_synth.yaml). 300 dialogues of 4-12 turns, about 100 minutes.
def _fisher_run(tp: TimelineParams, n: int = 300, seed0: int = 0) -> dict:
    ms = []
    for seed in range(seed0, seed0 + n):
        rng = np.random.default_rng(seed)
        turns = fake_turns(int(rng.integers(4, 13)), seed=seed, comma_prob=0.02)
        tl = build_timeline(turns, {"A": 0, "B": 1}, np.random.default_rng([seed, 2]),
                            fake_backchannel(word_s=(0.24, 0.54)), tp)
        ms.append(measure(_as_heard(tl.words())))
    return per_minute(ms)


@pytest.mark.parametrize("seed0", [0, 1000])
def test_defaults_near_fisher_as_heard(seed0):
    tp = TimelineParams.from_config(load_config())
    pm = _fisher_run(tp, seed0=seed0)
    print("\n" + format_per_minute(pm))
    assert pm["minutes"] > 60
    for k, r in off_fisher(pm).items():
        assert abs(r) < 0.15, (k, pm[k], FISHER[k])


def test_fisher_check_can_fail():
    # without backchannels over speech, overlap falls far short of Fisher's 3.6 s per minute
    tp = TimelineParams.from_config(load_config()).replace(backchannel_overlap_prob=0.0)
    pm = _fisher_run(tp, n=100)
    assert off_fisher(pm)["overlap"] < -0.3
