"""Can the transcript be trusted? Real audio: Whisper's hallucination signals, Granary-style text
features and word-timestamp sanity. Synthetic audio: the round-trip CER (ASR of the synthesized
audio against the script) and the same timestamp checks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from filters.base import (
    NAN,
    Decision,
    Filter,
    FilterParams,
    Threshold,
    finite,
    finite_number,
    fmt,
    num,
    threshold,
)
from pipelines.core.text import cer, norm_text


def text_features(text: str, n: int = 3) -> dict[str, float]:
    """Repetition and oddity features used to spot hallucinated transcripts."""
    words = norm_text(text).split()
    out = {"t.words": float(len(words))}
    if not words:
        return out | {"t.repeat_ngram_ratio": 0.0, "t.max_word_len": 0.0, "t.top_word_share": 0.0}
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    out["t.repeat_ngram_ratio"] = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    out["t.max_word_len"] = float(max(len(w) for w in words))
    out["t.top_word_share"] = Counter(words).most_common(1)[0][1] / len(words)
    return out


def phrase_hits(text: str, phrases: list[str]) -> int:
    t = norm_text(text)
    return sum(1 for p in phrases if norm_text(p) and norm_text(p) in t)


def word_checks(words: list[dict], duration_s: float, max_word_s: float, tol_s: float = 0.05) -> dict[str, float]:
    """Counts of word timings that break monotonic order, leave the audio, or last implausibly."""
    bad_order = outside = too_long = empty = 0
    last = {}
    for w in words:
        s, e, ch = float(w["start_s"]), float(w["end_s"]), int(w.get("channel") or 0)
        if e < s:
            bad_order += 1
        if s < last.get(ch, -1e9) - tol_s:
            bad_order += 1
        last[ch] = s
        if s < -tol_s or e > duration_s + tol_s:
            outside += 1
        if e - s > max_word_s:
            too_long += 1
        if e - s <= 0:
            empty += 1
    return {"w.count": float(len(words)), "w.non_monotonic": float(bad_order), "w.outside": float(outside),
            "w.too_long": float(too_long), "w.zero_length": float(empty)}


@dataclass(frozen=True)
class TrustParams(FilterParams):
    """filters.trust (meanings and measurements in pipelines/core/defaults/30_filters.yaml)."""

    section: ClassVar[str] = "trust"

    min_words: Threshold
    max_bad_word_times: Threshold
    max_bad_word_share: Threshold
    max_word_s: float
    no_speech_prob: float
    silence_logprob: float
    max_no_speech_segments: Threshold
    max_compression_ratio: Threshold
    min_avg_logprob: Threshold
    text_checks_min_words: Threshold
    ngram: int
    max_repeat_ngram_ratio: Threshold
    max_top_word_share: Threshold
    max_word_len: Threshold
    max_roundtrip_cer: Threshold
    compute_roundtrip: bool
    hallucination_phrases: dict


class TrustFilter(Filter):
    name = "trust"
    needs_audio = False

    def __init__(self, params: TrustParams, asr=None):
        self.p = params
        self.asr = asr  # for round-trip CER when a synthetic example lacks it

    @classmethod
    def from_config(cls, cfg: dict, asr=None) -> TrustFilter:
        return cls(TrustParams.from_config(cfg), asr)

    def measure(self, example: dict, audio: np.ndarray | None, regions=None) -> dict[str, float]:
        p = self.p
        m: dict[str, float] = {}
        text = " ".join(t for t in (example.get("text_ch0"), example.get("text_ch1")) if t) or \
            " ".join(w["word"] for w in example.get("words") or [])
        m.update(text_features(text, p.ngram))
        lang = example.get("language")
        plist = list(p.hallucination_phrases.get(lang, [])) + list(p.hallucination_phrases.get("any", []))
        m["t.hallucination_phrases"] = float(phrase_hits(text, plist))
        m.update(word_checks(example.get("words") or [], float(example.get("duration_s") or 0.0), p.max_word_s))
        segs = example.get("segments") or []
        if segs:
            nsp = [float(s["no_speech_prob"]) for s in segs if finite_number(s.get("no_speech_prob"))]
            alp = [float(s["avg_logprob"]) for s in segs if finite_number(s.get("avg_logprob"))]
            cr = [float(s["compression_ratio"]) for s in segs if finite_number(s.get("compression_ratio"))]
            # Whisper's own silence rule: no_speech_prob high AND the decoder unsure
            m["s.count"] = float(len(segs))
            m["s.no_speech_segments"] = float(sum(
                1 for s in segs if finite_number(s.get("no_speech_prob")) and finite_number(s.get("avg_logprob"))
                and float(s["no_speech_prob"]) > p.no_speech_prob and float(s["avg_logprob"]) < p.silence_logprob))
            m["s.max_no_speech_prob"] = max(nsp) if nsp else NAN
            m["s.min_avg_logprob"] = min(alp) if alp else NAN
            m["s.mean_avg_logprob"] = float(np.mean(alp)) if alp else NAN
            m["s.max_compression_ratio"] = max(cr) if cr else NAN
        if example.get("kind") == "synthetic":
            rc = float(example.get("roundtrip_cer") if example.get("roundtrip_cer") is not None else NAN)
            if not finite(rc) and p.compute_roundtrip and audio is not None:
                if self.asr is None:
                    raise ValueError(f"example {example.get('example_id')}: no round-trip CER and no ASR loaded to "
                                     "compute it (filters.trust.compute_roundtrip)")
                rc = self.roundtrip_cer(example, audio)
            m["t.roundtrip_cer"] = rc
        return m

    def roundtrip_cer(self, example: dict, audio: np.ndarray) -> float:
        """ASR each channel with the known language, CER against the script text of that channel."""
        sr = int(example.get("sample_rate") or 24000)
        refs, hyps = [], []
        for ch in range(audio.shape[0]):
            ref = example.get(f"text_ch{ch}") or ""
            if not ref.strip():
                continue
            segs = self.asr.transcribe(audio[ch], sr, language=example.get("language"))
            refs.append(ref)
            hyps.append(" ".join(s["text"] for s in segs))
        return cer(" ".join(refs), " ".join(hyps)) if refs else NAN

    def decide(self, metrics: dict, example: dict) -> Decision:
        kind, lang = example.get("kind"), example.get("language")

        def t(key):
            return threshold(getattr(self.p, key), f"filters.trust.{key}", kind, lang)

        keep = {k: float(v) for k, v in metrics.items() if k[:2] in ("t.", "w.", "s.")}

        def rej(reason, detail):
            return Decision.reject(self.name, reason, detail, keep)

        words = num(metrics, "t.words")
        if finite(words) and words < t("min_words"):
            return rej("empty_transcript", f"{int(words)} words < {t('min_words'):g}")
        bad = {k: num(metrics, k) for k in ("w.non_monotonic", "w.outside", "w.too_long")}
        n_bad = sum(v for v in bad.values() if finite(v))
        n_words = num(metrics, "w.count")
        allowed = max(t("max_bad_word_times"), t("max_bad_word_share") * (n_words if finite(n_words) else 0.0))
        if n_bad > allowed:
            return rej("word_times", "word timestamps: " + ", ".join(f"{k[2:]}={int(v)}" for k, v in bad.items()
                                                                   if finite(v) and v))
        if kind == "synthetic":
            rc = num(metrics, "t.roundtrip_cer")
            lim = t("max_roundtrip_cer")
            if finite(rc) and rc > lim:
                return rej("roundtrip_cer_high", f"round-trip CER {fmt(rc)} > {lim:g} ({lang})")
            return Decision.ok(self.name)
        if num(metrics, "s.no_speech_segments") > t("max_no_speech_segments"):
            return rej("whisper_no_speech", f"{int(num(metrics, 's.no_speech_segments'))} segment(s) with "
                                            f"no_speech_prob > {self.p.no_speech_prob} and avg_logprob < "
                                            f"{self.p.silence_logprob}")
        v = num(metrics, "s.max_compression_ratio")
        if finite(v) and v > t("max_compression_ratio"):
            return rej("whisper_repetition", f"compression ratio {fmt(v)} > {t('max_compression_ratio'):g}")
        v = num(metrics, "s.mean_avg_logprob")
        if finite(v) and v < t("min_avg_logprob"):
            return rej("whisper_low_logprob", f"mean avg_logprob {fmt(v)} < {t('min_avg_logprob'):g}")
        if num(metrics, "t.hallucination_phrases") > 0:
            return rej("hallucination_phrase", f"{int(num(metrics, 't.hallucination_phrases'))} phrase(s) Whisper "
                                               "invents on silence")
        if finite(words) and words >= t("text_checks_min_words"):
            v = num(metrics, "t.repeat_ngram_ratio")
            if v > t("max_repeat_ngram_ratio"):
                return rej("repeated_ngrams", f"repeated {self.p.ngram}-gram ratio {fmt(v)} > "
                                              f"{t('max_repeat_ngram_ratio'):g}")
            v = num(metrics, "t.top_word_share")
            if v > t("max_top_word_share"):
                return rej("word_dominates", f"one word is {fmt(v)} of all words > {t('max_top_word_share'):g}")
        v = num(metrics, "t.max_word_len")
        if finite(v) and v > t("max_word_len"):
            return rej("long_word", f"a word of {int(v)} characters > {t('max_word_len'):g} ({lang})")
        return Decision.ok(self.name)
