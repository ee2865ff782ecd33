"""TTS backends behind one interface: text in, float32 mono audio + per-word times out.

Backends (synth.tts.backend): espeak (word times from its word events), piper and pocket (neural;
no word times of their own: forced alignment of the script, see synth/tts/align.py).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from pipelines.models.cache import ModelsParams


@dataclasses.dataclass(frozen=True)
class PiperParams:
    """`synth.tts.piper`: voice models (None: the packaged English voice), warps, languages."""

    voices: tuple[str, ...] | None
    warps: tuple[float, ...]
    languages: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PocketParams:
    """`synth.tts.pocket`: {language: Pocket TTS config or variant}, tokens per chunk, temperature."""

    models: dict[str, str]
    max_tokens: int
    temperature: float


@dataclasses.dataclass(frozen=True)
class TtsParams:
    """`synth.tts`: the backend and its engine's settings (espeak takes none), the aligner."""

    backend: str
    align_model: str | dict[str, str] | None  # one wav2vec2 aligner for every language, or {language: aligner}
    piper: PiperParams
    pocket: PocketParams


class TTSError(RuntimeError):
    """A TTS backend cannot speak the request; the message says what and why."""


class TTS(Protocol):
    name: str
    sample_rate: int
    voice_kind: str  # "espeak" (named voices + pitch/rate), "clip" (cloned from a reference clip), "engine"
    word_times: str  # where word times come from: "engine", "forced-alignment", "whisper-match"

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        ...

    def session(self, seed: int = 0):
        """Context manager (one per dialogue): the calls inside are reproducible to the byte for `seed`."""
        ...


class WordTimer:
    """Word times for an engine that gives none: a wav2vec2 CTC forced aligner when synth.tts.align_model
    names one for the language, else Whisper's word times matched to the script (scored below 1)."""

    def __init__(self, align_model: str | dict | None, asr_params=None, models: ModelsParams | None = None,
                 threads: int = 2):
        self.align_model, self.asr_params, self.models, self.threads = align_model, asr_params, models, threads
        self._asr = None

    def method(self, language: str) -> str:
        from synth.tts.align import aligner_dir
        return "forced-alignment" if aligner_dir(self.align_model, language) else "whisper-match"

    def check(self, languages: list[str]) -> None:
        from pipelines.models.fetch import aligner_path
        from synth.tts.align import aligner_dir
        for lang in languages:
            ref = aligner_dir(self.align_model, lang)
            if not ref:
                continue
            from pathlib import Path

            from pipelines.models.registry import ModelMissing
            if Path(ref).is_dir() and not (Path(ref) / "config.json").exists():
                raise ModelMissing(f"synth.tts.align_model for {lang!r}: {ref} is not a wav2vec2 CTC directory "
                                   "(no config.json)")
            try:
                aligner_path(lang, ref, self.models)
            except ModelMissing as e:
                raise ModelMissing(f"synth.tts.align_model for {lang!r}: {e}") from e

    def words(self, text: str, audio: np.ndarray, sr: int, language: str) -> list[dict]:
        from pipelines.models.aligner import load_aligner
        from synth.tts.align import aligner_dir, whisper_match_words
        ref = aligner_dir(self.align_model, language)
        if ref:
            return load_aligner(language, ref, "cpu", self.models).align_script(text, audio, sr)
        if self._asr is None:
            from pipelines.models.asr import build_asr
            if self.asr_params is None:
                raise TTSError("no word aligner: set synth.tts.align_model or give the ASR settings")
            self._asr = build_asr(self.asr_params, self.models, threads=self.threads)
        return whisper_match_words(text, audio, sr, language, self._asr)

