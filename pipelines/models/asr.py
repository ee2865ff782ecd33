"""Speech recognition with word timestamps, shared by curation, synthesis round-trip checks and LID.

Backends (cfg["asr"]["backend"]):
- `faster-whisper` (embedded default): the multilingual Whisper base model shipped on PyPI,
  CTranslate2 int8, Whisper's own word timestamps.
- `whisperx`: batched Whisper over VAD-bounded chunks + wav2vec2 forced alignment
  (pipelines/models/asr_whisperx.py; local paths or the cache `tandem models fetch` prepares).

`load_asr(cfg)` returns an `Asr` whose `transcribe(audio, sr, language)` (one recording) and
`transcribe_chunks([(offset_s, audio16k)], language)` (many chunks, batched where the backend can) give segments
{start_s, end_s, text, language, language_prob, audio_languages, avg_logprob, no_speech_prob,
compression_ratio, words: [{word, start_s, end_s, score}]} (plus `chunk_index` from `transcribe_chunks`). Models are cached per process so the stages of one worker
share one copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pipelines.models.asr_base import (  # noqa: F401 (the interface, importable from here)
    ASR_SR,
    TOP_LANGUAGES,
    Asr,
    AsrParams,
    _word,
    snap_words,
    to_16k_mono,
    top_languages,
)
from pipelines.models.cache import ModelsParams

# Whisper's temperature schedule: a batched window over Whisper's compression-ratio limit (2.4: a
# repetition loop) is decoded again with the others over it at the next one (asr_whisperx.fall_back).
# Windows failing only the log-prob test (-1) are not: on bench/synth.py's 12 dialogues (seed 6) they
# were 6 of 11 fallbacks and 30 of 39 re-decodes, mostly backchannels, and 4 of 6 kept their first decode.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FALLBACK_LOG_PROB = None
_MODELS: dict[tuple, Any] = {}  # (backend, model, device, compute_type) -> loaded model


class FasterWhisperAsr(Asr):
    """Whisper with its own word timestamps; chunks decoded `batch_size` at a time (batch 1: one by one)."""

    backend = "faster-whisper"

    def __init__(self, model: Any, beam_size: int = 5, batch_size: int = 1, device: str = "cpu", *,
                 best_of: int = 5, hear_languages: bool = True):
        """`best_of`, `hear_languages`: the batched decoder's (WhisperXAsr)."""
        self.model = model
        self.best_of, self.hear_languages = int(best_of), bool(hear_languages)
        self.beam_size = beam_size
        self.batch_size = int(batch_size)
        self.device = device
        self._batched = None

    def transcribe_chunks(self, chunks: list[tuple[float, np.ndarray]], language: str | None = None) -> list[dict]:
        if self.batch_size <= 1:
            return super().transcribe_chunks(chunks, language)
        if self._batched is None:
            # the same batched decoder as the whisperx backend, without its aligner
            from pipelines.models.asr_whisperx import WhisperXAsr
            self._batched = WhisperXAsr(self.model, device=self.device, batch_size=self.batch_size,
                                        beam_size=self.beam_size, temperatures=FALLBACK_TEMPERATURES,
                                        log_prob_threshold=FALLBACK_LOG_PROB, best_of=self.best_of,
                                        hear_languages=self.hear_languages)
        out = self._batched.decode(chunks, language)
        for seg in out:
            off, audio = seg.pop("chunk")
            words = [_word(w["word"], w["start_s"] - off, w["end_s"] - off, w["prob"]) for w in seg.pop("whisper_words")]
            snap_words(words, audio)
            for w in words:
                w["start_s"] += off
                w["end_s"] += off
            seg["words"] = words
            if words:  # the segment spans its words (the chunk around them holds padding)
                seg["start_s"] = min(w["start_s"] for w in words)
                seg["end_s"] = max(w["end_s"] for w in words)
        return out

    @property
    def counts(self) -> dict:
        return dict(self._batched.counts) if self._batched is not None else {}

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> list[dict]:
        a = to_16k_mono(audio, sample_rate)
        if len(a) < ASR_SR // 10:
            return []
        # condition_on_previous_text=False: a hallucination in one window must not seed the next
        segs, info = self.model.transcribe(
            a, language=language, beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        out = []
        for s in segs:
            words = [_word(w.word, w.start, w.end, w.probability) for w in (s.words or []) if w.word.strip()]
            snap_words(words, a)
            out.append({
                "start_s": float(s.start), "end_s": float(s.end), "text": s.text.strip(),
                "language": info.language, "language_prob": float(info.language_probability),
                # None when the language was given (nothing heard)
                "audio_languages": top_languages(info.all_language_probs) if info.all_language_probs else None,
                "avg_logprob": float(s.avg_logprob), "no_speech_prob": float(s.no_speech_prob),
                "compression_ratio": float(s.compression_ratio), "words": words,
            })
        return out


def load_asr(cfg: dict, device: str = "cpu", threads: int = 2) -> Asr:
    """The ASR backend named in cfg["asr"]["backend"], its models loaded once per process (assembly)."""
    return build_asr(AsrParams.from_config(cfg), ModelsParams.from_config(cfg), device=device, threads=threads)


def _check_faster_whisper(p: AsrParams, models: ModelsParams | None) -> None:
    from pathlib import Path

    from pipelines.models.registry import ModelMissing, whisper_base_dir
    if p.model is None:
        whisper_base_dir(models)
    elif not (Path(p.model) / "model.bin").exists():
        raise ModelMissing(f"asr.model {p.model}: not a CTranslate2 Whisper directory (no model.bin)")


def _build_faster_whisper(p: AsrParams, models: ModelsParams | None, device: str, compute: str, threads: int,
                          **decoder) -> Asr:
    from pipelines.models.registry import whisper_base_dir
    path = str(p.model or whisper_base_dir(models))
    key = (p.backend, path, device, compute)
    if key not in _MODELS:
        from faster_whisper import WhisperModel
        _MODELS[key] = WhisperModel(path, device=device, compute_type=compute, cpu_threads=threads)
    return FasterWhisperAsr(_MODELS[key], beam_size=p.beam_size, batch_size=p.batch_size, device=device, **decoder)


def _check_whisperx(p: AsrParams, models: ModelsParams | None) -> None:
    from pipelines.models.fetch import aligner_path, aligner_ref, asr_model_path, use_punkt
    langs = [p.language] if p.language else list(p.align_languages)
    use_punkt(models, langs)
    if models is not None and models.download:
        return
    asr_model_path(p.model or "large-v3", models)
    for lang in langs:
        if aligner_ref(lang, p.align_model) is not None:
            aligner_path(lang, p.align_model, models)


def _build_whisperx(p: AsrParams, models: ModelsParams | None, device: str, compute: str, threads: int,
                    **decoder) -> Asr:
    from pipelines.models.aligner import load_aligner
    from pipelines.models.asr_whisperx import WhisperXAsr, load_whisperx_model
    from pipelines.models.fetch import asr_model_path, hub_dir
    download = bool(models is not None and models.download)
    path = p.model or "large-v3"
    if not download:
        path = str(asr_model_path(path, models))
    key = (p.backend, str(path), device, compute)
    if key not in _MODELS:
        _MODELS[key] = load_whisperx_model(str(path), device, compute, threads, hub_dir(models), not download)
    return WhisperXAsr(_MODELS[key], device=device, batch_size=p.batch_size, beam_size=p.beam_size,
                       align_loader=lambda lang: load_aligner(lang, p.align_model, device, models, download),
                       **decoder)


# asr.backend -> (driver-side check, build): the one place that knows every ASR backend
BACKENDS: dict[str, tuple[Callable, Callable]] = {
    "faster-whisper": (_check_faster_whisper, _build_faster_whisper),
    "whisperx": (_check_whisperx, _build_whisperx),
}


def _backend(name: str) -> tuple[Callable, Callable]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"asr.backend {name!r}: expected one of {', '.join(map(repr, BACKENDS))}") from None


def check_asr(p: AsrParams, models: ModelsParams | None) -> None:
    """Driver-side: raise ModelMissing (with the fix) for any model `p` needs that is not here."""
    _backend(p.backend)[0](p, models)


def build_asr(p: AsrParams, models: ModelsParams | None, device: str = "cpu", threads: int = 2, *,
              best_of: int = 5, hear_languages: bool = True) -> Asr:
    """The backend `p` names, with models from the cache `models` points to (or local paths);
    `best_of` and `hear_languages` go to the batched decoder (WhisperXAsr)."""
    compute = p.compute_type if device == "cpu" else "float16"
    return _backend(p.backend)[1](p, models, device, compute, threads, best_of=best_of,
                                  hear_languages=hear_languages)


def speech_chunks(regions: list[tuple[float, float]], max_s: float, gap_s: float) -> list[tuple[float, float]]:
    """Merge speech regions into chunks no longer than `max_s`, split only between regions.

    Regions less than `gap_s` apart share a chunk (fewer Whisper windows, more context); a longer
    silence starts a new chunk with its own language detection. A single region longer than
    `max_s` is split evenly.
    """
    out: list[list[float]] = []
    for s, e in sorted(regions):
        if e <= s:
            continue
        if out and s - out[-1][1] <= gap_s and e - out[-1][0] <= max_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    res = []
    for s, e in out:
        n = max(1, math.ceil((e - s) / max_s))
        step = (e - s) / n
        res.extend((s + i * step, s + (i + 1) * step) for i in range(n))
    return res
