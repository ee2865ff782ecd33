"""The neural TTS backend (Piper, English voice from PyPI) behind the same interface as espeak."""

import numpy as np
import pytest
from tandem.pipelines.core.config import load_config, section
from tandem.pipelines.models.asr import AsrParams
from tandem.synth.tts.base import TTSError, WordTimer
from tandem.synth.tts.piper import PiperTTS

TEXT = "Good morning, did you see the weather forecast for the weekend?"


@pytest.fixture(scope="module")
def piper():
    cfg = load_config()
    # no aligner configured: Whisper word-time matching, labelled and scored below 1
    return PiperTTS(sample_rate=24000, timer=WordTimer(None, AsrParams.from_config(cfg), section(cfg, "models")))


def test_piper_words_aligned_inside_audio(piper):
    audio, sr, words = piper.synthesize(TEXT, "en")
    dur = len(audio) / sr
    assert sr == 24000 and 2.0 < dur < 6.0
    # every script word gets a time, in order (Piper gives none: they come from ASR alignment)
    assert [w["word"] for w in words] == TEXT.split()
    assert piper.word_times == "whisper-match" and not piper.distinct_voices
    assert all(0.0 <= w["score"] <= 0.5 for w in words) and max(w["score"] for w in words) > 0.2
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts)
    for w in words:
        assert 0.0 <= w["start_s"] < w["end_s"] <= dur + 1e-6
        seg = audio[int(w["start_s"] * sr): int(w["end_s"] * sr)]
        assert np.sqrt(np.mean(seg ** 2)) > 1e-3, w  # each word's span holds speech


def test_piper_missing_language_is_a_clear_error(piper):
    with pytest.raises((TTSError, ValueError), match="fr"):
        piper.synthesize("Bonjour à tous", "fr")
