"""Turn-taking model on fake utterances (no TTS): distribution, interruptions, backchannels."""

import itertools
import math

import numpy as np
import pytest
from pipelines.core.config import load_config
from synth.job import summarize
from synth.mix import overlap_figures, render
from synth.params import TimelineParams
from synth.timeline import build_timeline

from tandem.testing.synth import fake_backchannel, fake_turns

CH = {"A": 0, "B": 1}
DEFAULTS = TimelineParams.from_config(load_config())


def _timeline(seed=0, n=401, cfg=None, sr=None):
    turns = fake_turns(n, seed=seed, sample_rate=sr)
    c = DEFAULTS.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in (cfg or {}).items()})
    return build_timeline(turns, CH, np.random.default_rng(seed), fake_backchannel(sr), c)


def test_gap_distribution_matches_config():
    # 400 speaker changes, interruptions off so every change is a drawn offset.
    # Tolerances are 3 standard errors at n=400: median SE = 1.2533*sd/sqrt(n) = 0.025 s,
    # share SE = sqrt(p(1-p)/n) = 0.023, IQR SE about 0.03 s.
    tl = _timeline(cfg={"interruption_prob": 0.0})
    offs = np.array([c["offset_s"] for c in tl.changes])
    assert len(offs) == 400
    mu, sd = DEFAULTS.gap_mean_s, DEFAULTS.gap_std_s
    assert abs(np.median(offs) - mu) < 0.075
    iqr = np.quantile(offs, 0.75) - np.quantile(offs, 0.25)
    assert abs(iqr - 1.349 * sd) < 0.09
    p_overlap = 0.5 * math.erfc(mu / sd / math.sqrt(2))
    assert abs((offs < 0).mean() - p_overlap) < 0.07
    overlaps = -offs[offs < 0]
    assert (overlaps < 0.5).mean() > 0.75  # most overlaps are short
    # a shifted configuration moves the measured distribution with it
    tl2 = _timeline(cfg={"interruption_prob": 0.0, "gap_mean_s": 0.5, "gap_std_s": 0.2})
    offs2 = np.array([c["offset_s"] for c in tl2.changes])
    assert abs(np.median(offs2) - 0.5) < 0.04 and (offs2 < 0).mean() < 0.03


def test_pauses_inside_turns_longer_than_gaps():
    tl = _timeline()
    pauses = np.array(tl.draws["pauses"])
    gaps = np.array([c["offset_s"] for c in tl.changes])
    assert len(pauses) > 100
    assert np.median(pauses) > np.median(gaps) + 0.2


def test_interruptions_truncate_at_word_boundary():
    tl = _timeline(cfg={"interruption_prob": 0.5})
    ints = [c for c in tl.changes if c["interruption"]]
    assert 0.3 < len(ints) / len(tl.changes) < 0.6
    cuts = 0
    for c in ints:
        assert c["offset_s"] < 0  # the interrupter starts before the other one stops
        # the interrupted speaker's words all end by the cut
        cut = c["cut_s"]
        before = [p for p in tl.placements if p.kind == "turn" and abs(p.end_s - cut) < 1e-3]
        assert before, "no utterance ends at the cut"
        p = before[0]
        said = [w for q in tl.placements if q.kind == "turn" and q.turn == p.turn for w in q.words()]
        assert said and max(w["end_s"] for w in said) <= cut + 1e-6
        assert len(said) == c["words_said"] < c["words_total"]  # text truncated to what was said
        if p is [q for q in tl.placements if q.turn == p.turn and q.kind == "turn"][-1]:
            assert p.keep_s <= p.utt.duration_s
        # the cut is a word end of the original utterance
        assert any(abs(p.start_s + w["end_s"] - cut) < 1e-6 for w in p.utt.words)
        cuts += 1
    assert cuts > 20


def test_backchannels_on_listener_channel_in_pauses():
    tl = _timeline(cfg={"backchannel_overlap_prob": 0.0})
    bcs = [p for p in tl.placements if p.kind == "backchannel"]
    assert len(bcs) > 50
    turns = [p for p in tl.placements if p.kind == "turn"]
    for b in bcs:
        spk_turn = [p for p in turns if p.turn == b.turn]
        assert b.speaker != spk_turn[0].speaker and b.channel == CH[b.speaker]
        # it starts in a pause of the speaker's turn: after one utterance ends, before the next starts
        ends = [p.end_s for p in spk_turn]
        starts = [p.start_s for p in spk_turn]
        assert any(e <= b.start_s < s for e, s in zip(ends[:-1], starts[1:]))
    # the measured rate follows the configured per-pause probability (tolerance 3 SE)
    n_opp = sum(len([p for p in turns if p.turn == t]) - 1 for t in {p.turn for p in turns})
    assert abs(len(bcs) / n_opp - DEFAULTS.backchannel_prob) < 0.1


def test_backchannels_over_speech_overlap_the_speaker():
    tl = _timeline(cfg={"backchannel_prob": 0.0, "backchannel_overlap_prob": 0.5})
    turns = [p for p in tl.placements if p.kind == "turn"]
    bcs = [p for p in tl.placements if p.kind == "backchannel"]
    assert len(bcs) > 100
    for b in bcs:
        # it starts at a word start of a sentence of the other speaker, while that sentence is spoken
        host = [p for p in turns if p.turn == b.turn and p.start_s <= b.start_s < p.end_s]
        assert host and host[0].speaker != b.speaker
        assert any(abs(host[0].start_s + w["start_s"] - b.start_s) < 1e-9 for w in host[0].utt.words)
    # never two backchannels of one listener at once
    by = sorted(bcs, key=lambda p: (p.speaker, p.start_s))
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(by) if a.speaker == b.speaker)


def test_seeded_and_recorded():
    a, b = _timeline(seed=3, n=30), _timeline(seed=3, n=30)
    assert [(p.start_s, p.keep_s, p.speaker) for p in a.placements] == \
        [(p.start_s, p.keep_s, p.speaker) for p in b.placements]
    c = _timeline(seed=4, n=30)
    assert [p.start_s for p in a.placements] != [p.start_s for p in c.placements]
    assert a.draws["changes"] and all("offset_s" in d for d in a.draws["changes"])


def test_render_puts_words_on_their_channel():
    sr = 8000
    tl = _timeline(seed=1, n=8, sr=sr)
    audio = render(tl, sr)
    assert audio.shape == (2, int(np.ceil(tl.duration_s * sr)))
    for w in tl.words():
        a, b = int((w["start_s"] + 0.02) * sr), int((w["end_s"] - 0.02) * sr)
        if b > a:
            assert np.sqrt((audio[w["channel"], a:b] ** 2).mean()) > 0.05
    ov, speech, flags = overlap_figures(tl.words(), tl.duration_s)
    assert 0 <= ov < 0.5 and 0.3 < speech <= 1 and len(flags) == len(tl.words())


def test_summary_over_rows_reports_against_targets():
    import json
    tl = _timeline(n=201)
    from pipelines.core.turntaking import measure
    tl = _timeline(n=201)
    rows = [{"params": json.dumps({"timeline": tl.stats(), "turn_taking": measure(tl.words()),
                                   "targets": {k: getattr(DEFAULTS, k) for k in ("gap_mean_s", "gap_std_s",
                                                                                 "interruption_prob")}})}]
    s = summarize(rows)
    assert s["speaker_changes"] == 200
    assert s["regular_gap_median_s"] == pytest.approx(DEFAULTS.gap_mean_s, abs=0.1)
    assert s["target_gap_iqr_s"] == pytest.approx(1.349 * DEFAULTS.gap_std_s)
    assert 0 < s["interruption_rate"] < 0.3 and s["backchannels"] > 0
    assert s["per_minute"]["minutes"] > 1 and s["backchannels_per_minute"] > 0
