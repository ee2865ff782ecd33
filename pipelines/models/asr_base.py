"""The ASR interface every backend implements, its parameters and the audio helpers they share.

Backends live in their own modules (pipelines/models/asr.py: faster-whisper and the registry
`build_asr` chooses from; asr_whisperx.py); they import this module, never each other's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.core.config import typed_section

ASR_SR = 16000  # Whisper's input rate
# Whisper's language candidates kept per segment (`audio_languages`): the language filter weighs
# what the audio sounds like before it trusts a transcript decoded in the top language.
TOP_LANGUAGES = 5


def top_languages(cands, k: int = TOP_LANGUAGES) -> list[dict]:
    """The `k` most probable of Whisper's (language, probability) candidates on one window's audio."""
    best = sorted(((str(lang), float(p)) for lang, p in cands), key=lambda c: -c[1])[:k]
    return [{"language": lang, "prob": round(p, 4)} for lang, p in best]


@dataclass(frozen=True)
class AsrParams:
    """The `asr` config section (meanings in pipelines/core/defaults/10_curate.yaml)."""

    backend: str
    model: str | None
    language: str | None
    compute_type: str
    beam_size: int
    batch_size: int
    align_model: str | dict | None
    align_languages: list
    chunk_max_s: float
    chunk_gap_s: float
    chunk_pad_s: float
    pack: str
    pack_sep_s: float

    @classmethod
    def from_config(cls, cfg: dict) -> AsrParams:
        return typed_section(cls, cfg, "asr")


def to_16k_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:  # [T, C] or [C, T]
        a = a.mean(axis=1) if a.shape[0] > a.shape[1] else a.mean(axis=0)
    if sample_rate != ASR_SR:
        import soxr
        a = soxr.resample(a, sample_rate, ASR_SR).astype(np.float32)
    return np.ascontiguousarray(a)


def _word(w: str, s: float, e: float, score: float) -> dict:
    return {"word": w.strip(), "start_s": float(s), "end_s": float(e), "score": float(score)}


def snap_words(words: list[dict], audio16k: np.ndarray, frame_s: float = 0.01, floor_db: float = -35.0,
               min_word_s: float = 0.05) -> None:
    """Move word edges that lie in silence onto the nearest speech inside the word (in place).

    Whisper's cross-attention timings start the first word of a window at the window start when
    the window opens with silence; energy fixes such edges cheaply without an aligner.
    """
    n = int(frame_s * ASR_SR)
    k = len(audio16k) // n
    if k == 0 or not words:
        return
    e = 10 * np.log10((audio16k[: k * n].reshape(k, n) ** 2).mean(axis=1) + 1e-10)
    active = e > np.percentile(e, 95) + floor_db
    for w in words:
        a, b = int(w["start_s"] / frame_s), min(k, int(np.ceil(w["end_s"] / frame_s)))
        idx = np.flatnonzero(active[a:b])
        if len(idx) == 0:
            continue
        s, t = (a + idx[0]) * frame_s, (a + idx[-1] + 1) * frame_s
        if t - s >= min_word_s:
            w["start_s"], w["end_s"] = max(w["start_s"], s), min(w["end_s"], t)


class Asr:
    """Common interface of the ASR backends."""

    backend = "base"

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> list[dict]:
        """Segments with words; times in seconds from the start of `audio`."""
        raise NotImplementedError

    def detect_language(self, audio: np.ndarray, sample_rate: int) -> tuple[str, float]:
        """Whisper's language detection on the first 30 s of `audio`: (ISO 639-1 code, probability).
        Both backends hold a faster-whisper WhisperModel as `self.model`."""
        a = to_16k_mono(audio, sample_rate)
        if len(a) == 0:
            return "", 0.0
        lang, prob, _ = self.model.detect_language(a)
        return lang, float(prob)

    def detect_languages(self, audio: np.ndarray, sample_rate: int, k: int = TOP_LANGUAGES) -> list[dict]:
        """Whisper's `k` most probable languages for the first 30 s of `audio` ([] when empty)."""
        a = to_16k_mono(audio, sample_rate)
        if len(a) == 0:
            return []
        _, _, probs = self.model.detect_language(a)
        return top_languages(probs, k)

    def transcribe_chunks(self, chunks: list[tuple[float, np.ndarray]], language: str | None = None) -> list[dict]:
        """Segments of 16 kHz chunks [(offset_s, audio)], language detected per chunk unless given;
        times in seconds on the offsets' clock; `chunk_index` names the chunk each came from.
        This backend decodes them one by one."""
        out = []
        for i, (off, a) in enumerate(chunks):
            for seg in self.transcribe(a, ASR_SR, language=language):
                seg["chunk_index"] = i
                seg["start_s"] += off
                seg["end_s"] += off
                for w in seg["words"]:
                    w["start_s"] += off
                    w["end_s"] += off
                out.append(seg)
        return out
