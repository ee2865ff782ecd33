"""Speech recognition with word timestamps, shared by curation, synthesis round-trip checks and LID.

Backends (cfg["asr"]["backend"]):
- `faster-whisper` (embedded default): the multilingual Whisper base model shipped on PyPI,
  CTranslate2 int8, Whisper's own word timestamps.
- `whisperx`: batched faster-whisper + wav2vec2 forced alignment (hub ids or local paths).

`load_asr(cfg)` returns an `Asr` whose `transcribe(audio, sr, language)` gives segments
{start_s, end_s, text, language, language_prob, avg_logprob, no_speech_prob, compression_ratio,
words: [{word, start_s, end_s, score}]}. Models are cached per process so the stages of one worker
share one copy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tandem.pipelines.core.config import section

ASR_SR = 16000  # Whisper's input rate
_MODELS: dict[tuple, Any] = {}  # (backend, model, device, compute_type) -> loaded model
NAN = float("nan")



def _asr_cfg(cfg: dict) -> dict:
    return section(cfg, "asr")


def _to_16k_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
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
        """Whisper's language detection on the first 30 s of `audio`: (ISO 639-1 code, probability)."""
        raise NotImplementedError


class FasterWhisperAsr(Asr):
    backend = "faster-whisper"

    def __init__(self, model: Any, beam_size: int = 5):
        self.model = model
        self.beam_size = beam_size

    def detect_language(self, audio: np.ndarray, sample_rate: int) -> tuple[str, float]:
        a = _to_16k_mono(audio, sample_rate)
        if len(a) == 0:
            return "", 0.0
        lang, prob, _ = self.model.detect_language(a)
        return lang, float(prob)

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> list[dict]:
        a = _to_16k_mono(audio, sample_rate)
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
                "avg_logprob": float(s.avg_logprob), "no_speech_prob": float(s.no_speech_prob),
                "compression_ratio": float(s.compression_ratio), "words": words,
            })
        return out


class WhisperXAsr(Asr):
    """Batched faster-whisper + wav2vec2 alignment; words the aligner misses keep Whisper's times."""

    backend = "whisperx"

    def __init__(self, pipeline: Any, device: str, align_model: str | None, batch_size: int):
        self.pipeline = pipeline
        self.device = device
        self.align_model = align_model
        self.batch_size = batch_size
        self._aligners: dict[str, tuple] = {}

    def detect_language(self, audio: np.ndarray, sample_rate: int) -> tuple[str, float]:
        a = _to_16k_mono(audio, sample_rate)
        lang, prob, _ = self.pipeline.model.detect_language(a)
        return lang, float(prob)

    def _aligner(self, lang: str):
        if lang not in self._aligners:
            import whisperx
            from tandem.pipelines.models.registry import ModelMissing
            try:
                self._aligners[lang] = whisperx.load_align_model(lang, self.device, model_name=self.align_model)
            except Exception as e:  # offline hub, unknown language
                raise ModelMissing(
                    f"whisperx alignment model for {lang!r} unavailable ({type(e).__name__}: {e}); "
                    "run once with hub access or set asr.align_model to a local wav2vec2 path") from e
        return self._aligners[lang]

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> list[dict]:
        import whisperx
        a = _to_16k_mono(audio, sample_rate)
        if len(a) < ASR_SR // 10:
            return []
        if language is None:
            language, prob = self.detect_language(a, ASR_SR)
        else:
            prob = 1.0
        res = self.pipeline.transcribe(a, batch_size=self.batch_size, language=language)
        raw = res["segments"]
        model_a, meta = self._aligner(language)
        aligned = whisperx.align(raw, model_a, meta, a, self.device, return_char_alignments=False)["segments"]
        out = []
        for seg, al in zip(raw, aligned):
            toks = al.get("words") or []
            n = max(len(toks), 1)
            s0, s1 = float(seg["start"]), float(seg["end"])
            words = []
            for i, w in enumerate(toks):
                if "start" in w and "end" in w:
                    words.append(_word(w["word"], w["start"], w["end"], w.get("score", NAN)))
                else:  # fallback: Whisper's segment span, split evenly over its words
                    words.append(_word(w["word"], s0 + (s1 - s0) * i / n, s0 + (s1 - s0) * (i + 1) / n, 0.0))
            out.append({"start_s": s0, "end_s": s1, "text": seg["text"].strip(), "language": language,
                        "language_prob": prob, "avg_logprob": NAN, "no_speech_prob": NAN,
                        "compression_ratio": NAN, "words": [w for w in words if w["word"]]})
        return out


def load_asr(cfg: dict, device: str = "cpu", threads: int = 2) -> Asr:
    """The ASR backend named in cfg["asr"]["backend"], loaded once per process."""
    a = _asr_cfg(cfg)
    backend = a["backend"]
    if backend == "faster-whisper":
        from tandem.pipelines.models.registry import whisper_base_dir
        path = str(a["model"] or whisper_base_dir(cfg))
        compute = a["compute_type"] if device == "cpu" else "float16"
        key = (backend, path, device, compute)
        if key not in _MODELS:
            from faster_whisper import WhisperModel
            _MODELS[key] = WhisperModel(path, device=device, compute_type=compute, cpu_threads=threads)
        return FasterWhisperAsr(_MODELS[key], beam_size=int(a["beam_size"]))
    if backend == "whisperx":
        path = a["model"] or "large-v3"
        compute = a["compute_type"] if device == "cpu" else "float16"
        key = (backend, str(path), device, compute)
        if key not in _MODELS:
            import whisperx
            from tandem.pipelines.models.registry import ModelMissing
            try:
                _MODELS[key] = whisperx.load_model(str(path), device, compute_type=compute, threads=threads,
                                                   vad_method="pyannote")
            except Exception as e:
                raise ModelMissing(f"whisperx model {path!r} could not be loaded ({type(e).__name__}: {e}); "
                                   "set asr.model to a local CTranslate2 directory or allow hub access") from e
        return WhisperXAsr(_MODELS[key], device, a["align_model"], int(a["batch_size"]))
    raise ValueError(f"asr.backend {backend!r}: expected 'faster-whisper' or 'whisperx'")


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
