"""Word times for engines that give none: forced alignment of the known script with the project's
one aligner (WhisperX's, pipelines/models/aligner.py), and Whisper word-time matching, labelled and
scored below 1."""

import numpy as np
import pytest
import torch
from pipelines.models.registry import ModelMissing
from pipelines.models.aligner import load_aligner
from synth.tts.align import WHISPER_MATCH_SCALE, whisper_match_words
from synth.tts.base import WordTimer

from tandem.testing.synth import tiny_wav2vec2

SR = 16000


@pytest.fixture(scope="module")
def aligner(tmp_path_factory):
    return load_aligner("fr", str(tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "m")), "cpu", None)


class _Out:
    def __init__(self, logits):
        self.logits = logits


def _peaked(aligner, n_frames: int, marks: dict[int, str]) -> torch.nn.Module:
    """A stand-in acoustic model whose emissions put each marked character on its frames and
    blank elsewhere, so the true alignment is known."""
    v = aligner.vocab
    logits = torch.full((1, n_frames, len(v)), -10.0)
    logits[0, :, aligner.blank] = 10.0
    for f, c in marks.items():
        logits[0, f, aligner.blank] = -10.0
        logits[0, f, v[c]] = 10.0

    class M(torch.nn.Module):
        def forward(self, x):
            return _Out(logits)
    return M()


def test_alignment_recovers_known_times(aligner, monkeypatch):
    audio = np.zeros(SR * 2, np.float32)  # 2 s; the stand-in model gives 100 frames of 20 ms
    marks = {10: "o", 11: "u", 12: "i", 30: "|", 50: "n", 51: "o", 52: "n", 90: "x"}
    monkeypatch.setattr(aligner, "model", _peaked(aligner, 100, marks))
    words = aligner.align_script("Oui, non!", audio, SR)
    assert [w["word"] for w in words] == ["Oui,", "non!"]
    assert words[0]["start_s"] == pytest.approx(0.20) and words[0]["end_s"] == pytest.approx(0.26)
    assert words[1]["start_s"] == pytest.approx(1.00) and words[1]["end_s"] == pytest.approx(1.06)
    assert all(w["score"] > 0.99 for w in words)  # the model is certain of these characters


def test_random_model_scores_low_and_times_stay_inside(aligner):
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(SR * 3)).astype(np.float32)
    words = aligner.align_script("bonjour à tous, ça va?", audio, SR)
    assert [w["word"] for w in words] == ["bonjour", "à", "tous,", "ça", "va?"]
    for w in words:
        assert 0 <= w["start_s"] <= w["end_s"] <= 3.0
        assert w["score"] < 0.5  # an aligner that recognises nothing does not look exact
    # audio too short for the script: every word still gets a time, scored 0
    short = aligner.align_script("bonjour à tous", audio[:800], SR)
    assert len(short) == 3 and all(w["score"] == 0.0 for w in short)


def test_missing_aligner_is_a_clear_error(tmp_path):
    with pytest.raises(ModelMissing, match="no config.json"):
        load_aligner("fr", str(tmp_path), "cpu", None)
    with pytest.raises(ModelMissing, match="not a wav2vec2 CTC directory"):
        WordTimer({"fr": str(tmp_path)}).check(["fr"])
    assert WordTimer({"fr": str(tmp_path)}).method("en") == "whisper-match"


class _FakeAsr:
    def transcribe(self, audio, sr, language=None):
        return [{"words": [{"word": " Hello", "start_s": 0.1, "end_s": 0.4, "score": 0.9},
                           {"word": "word", "start_s": 0.5, "end_s": 0.8, "score": 0.6},
                           {"word": "there.", "start_s": 1.2, "end_s": 1.5, "score": 1.0}]}]


def test_whisper_match_is_scored_below_one():
    words = whisper_match_words("Hello, world, out there.", np.zeros(SR * 2, np.float32), SR, "en", _FakeAsr())
    assert [w["word"] for w in words] == ["Hello,", "world,", "out", "there."]
    assert words[0]["score"] == pytest.approx(WHISPER_MATCH_SCALE * 0.9)
    assert words[3]["score"] == pytest.approx(WHISPER_MATCH_SCALE * 1.0) and words[3]["score"] < 1.0
    # "world, out" was heard as "word": both share the time between their neighbours by letters
    # (world 5, out 3 of 0.4-1.2 s), score 0
    assert (words[1]["start_s"], words[1]["end_s"]) == pytest.approx((0.4, 0.9))
    assert (words[2]["start_s"], words[2]["end_s"]) == pytest.approx((0.9, 1.2))
    assert words[1]["score"] == words[2]["score"] == 0.0
