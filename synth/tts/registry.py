"""TTS engines by name (synth.tts.backend): the one place that knows them all.

Engines import synth/tts/base.py (the interface) and never this module, so adding one is a line
in ENGINES, not an edit of the interface.
"""

from __future__ import annotations

from collections.abc import Callable

from synth.tts.base import TTS, TTSError, TtsParams, WordTimer


def _espeak(tts: TtsParams, sample_rate: int, timer: WordTimer, threads: int) -> TTS:
    from synth.tts.espeak import EspeakTTS
    return EspeakTTS(sample_rate)


def _piper(tts: TtsParams, sample_rate: int, timer: WordTimer, threads: int) -> TTS:
    from synth.tts.piper import PiperTTS
    p = tts.piper
    return PiperTTS(sample_rate, voices=p.voices, languages=p.languages, timer=timer, warps=p.warps)


def _pocket(tts: TtsParams, sample_rate: int, timer: WordTimer, threads: int) -> TTS:
    from synth.tts.pocket import PocketTTS
    p = tts.pocket
    return PocketTTS(sample_rate, models=p.models, timer=timer, threads=threads, max_tokens=p.max_tokens,
                     temperature=p.temperature)


def _check_espeak(tts: TtsParams, languages: list[str]) -> None:
    from pipelines.models import registry
    registry.espeak_data()


def _check_piper(tts: TtsParams, languages: list[str]) -> None:
    from synth.tts.piper import check_piper
    check_piper(tts.piper.voices)


def _check_pocket(tts: TtsParams, languages: list[str]) -> None:
    from synth.tts.pocket import check_pocket
    check_pocket(tts.pocket.models, languages)


# name -> (build, driver-side check, needs a word timer)
ENGINES: dict[str, tuple[Callable, Callable, bool]] = {
    "espeak": (_espeak, _check_espeak, False),
    "piper": (_piper, _check_piper, True),
    "pocket": (_pocket, _check_pocket, True),
}


def _engine(backend: str) -> tuple[Callable, Callable, bool]:
    try:
        return ENGINES[backend]
    except KeyError:
        raise TTSError(f"unknown synth.tts.backend {backend!r}: use {', '.join(ENGINES)}") from None


def make_tts(tts: TtsParams, sample_rate: int, models: dict, threads: int = 2, asr_params=None) -> TTS:
    """The backend `tts` (the typed synth.tts section) names, its models loaded now. `models` is
    the `models` section, for the Whisper fallback of the word timer (pipelines/models reads it)."""
    build, _, _ = _engine(tts.backend)
    return build(tts, sample_rate, WordTimer(tts.align_model, asr_params, models, threads), threads)


def check_tts(tts: TtsParams, models: dict, languages: list[str] | None = None) -> None:
    """Driver-side: ModelMissing (with the fix) for a model the configured backend needs."""
    _, check, timed = _engine(tts.backend)
    langs = list(languages or [])
    check(tts, langs)
    if timed:
        WordTimer(tts.align_model).check(langs)
