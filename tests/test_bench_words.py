"""bench/word_checks.coverage: word spans against a channel's voice activity and sound."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.word_checks import coverage


def test_coverage_measures_activity_outside_words_and_at_free_edges():
    words = [{"start_s": 1.0, "end_s": 1.5}, {"start_s": 1.5, "end_s": 2.0}, {"start_s": 3.0, "end_s": 3.4}]
    vad = [(0.95, 2.1), (3.0, 3.3)]
    sound = [(1.0, 2.08), (3.0, 3.3)]
    c = coverage(words, vad, sound, [], 4.0)
    assert c["vad_s"] == pytest.approx(1.45) and c["vad_outside_s"] == pytest.approx(0.15)
    assert c["sound_outside_s"] == pytest.approx(0.08) and c["word_s"] == pytest.approx(1.4)
    assert c["word_silent_s"] == pytest.approx(0.1)  # the last word runs 0.1 s past any activity
    # free edges only (1.0, 2.0, 3.0, 3.4): the touching edge at 1.5 says nothing
    assert c["vad_start_s"] == pytest.approx([0.05, 0.0]) and c["vad_end_s"] == pytest.approx([0.1, -0.1])
    assert c["sound_start_s"] == pytest.approx([0.0, 0.0]) and c["sound_end_s"] == pytest.approx([0.08, -0.1])
    assert c["edges"] == 4 and c["uncovered"] == 1  # sound 80 ms past the end of "2.0"
    # a labelled span (echo, noise) is sound a word need not cover
    assert coverage(words, vad, sound, [(2.0, 2.1)], 4.0)["vad_outside_s"] == pytest.approx(0.05)
