"""Spoken language: Whisper's detection on each channel's audio and text LID on the transcript,
reconciled into one detected language; other languages are rejected with the language heard.

The audio is asked before the text is trusted: Whisper decodes in the language it detects, so
off-language speech (espeak Dutch heard as de 0.21 / af 0.18 / nn 0.14) comes back as a fluent
German or English transcript that text LID then agrees with. `lid.heard.<lang>` is each
language's share of Whisper's top candidates on the audio (duration-weighted over the windows);
an example whose audio gives the accepted languages too little of it, or whose transcript is in
a language the audio barely gives, is rejected with the language heard.

Metrics keep the language in the key so they fit the float metrics map and re-filtering can
re-decide: `lid.audio.ch0.nl = 0.93`, `lid.text.nl = 0.88`, `lid.heard.af = 0.18`.
For synthetic data the language is known (espeak's fr/pt voices fool Whisper), so audio LID is
not decided on there: the script's text LID is checked against the declared language.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from filters.base import (
    KINDS,
    NAN,
    Decision,
    Filter,
    FilterParams,
    Threshold,
    build_params,
    filter_section,
    finite,
    fmt,
    per_kind,
    threshold,
)


@functools.lru_cache(maxsize=8)
def _langid(langs: tuple[str, ...]):
    from langid.langid import LanguageIdentifier, model
    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    ident.set_languages(list(langs))
    return ident


def text_lid(text: str, languages: list[str], top: int = 3) -> list[tuple[str, float]]:
    """langid restricted to `languages`: the top languages with normalised probabilities."""
    text = (text or "").strip()
    if not text:
        return []
    ranked = _langid(tuple(sorted(set(languages)))).rank(text)  # normalised probabilities
    pr = np.array([p for _, p in ranked], dtype=np.float64)
    pr /= max(pr.sum(), 1e-300)
    return [(ranked[i][0], float(pr[i])) for i in range(min(top, len(ranked)))]


def _prefixed(metrics: dict, prefix: str) -> dict[str, float]:
    """{lang: prob} from keys `<prefix><lang>`."""
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefix) and "." not in k[len(prefix):]:
            try:
                out[k[len(prefix):]] = float(v)
            except (TypeError, ValueError):
                pass
    return out


def example_text(example: dict, ch: int | None = None) -> str:
    if ch is None:
        return " ".join(t for t in (example.get("text_ch0"), example.get("text_ch1")) if t).strip()
    t = example.get(f"text_ch{ch}")
    if t:
        return t
    return " ".join(w["word"] for w in example.get("words") or [] if int(w.get("channel") or 0) == ch)


AUDIO_LID_MODES = (True, False, "segments")


@dataclass(frozen=True)
class LanguageParams(FilterParams):
    """filters.language (meanings in pipelines/core/defaults/30_filters.yaml) plus the accepted
    `languages` of the job."""

    section: ClassVar[str] = "language"

    languages: tuple[str, ...]
    audio_lid: dict | bool | str
    min_audio_s: float
    text_extra_languages: tuple[str, ...]
    min_text_chars: int
    audio_weight: float
    text_weight: float
    min_prob: Threshold
    reject_switch: bool
    switch_min_prob: float
    switch_min_share: float
    script_mismatch_prob: float
    reject_unknown: bool
    min_heard_accepted: Threshold
    min_heard_transcript: Threshold

    def __post_init__(self):
        for kind in KINDS:
            if self.lid_mode(kind) not in AUDIO_LID_MODES:
                raise ValueError(f"config filters.language.audio_lid: {self.audio_lid!r} gives "
                                 f"{self.lid_mode(kind)!r} for {kind} data; expected true, false or 'segments'")

    def lid_mode(self, kind: str | None) -> bool | str:
        """true: Whisper's detection per channel (loads ASR); 'segments': the languages the
        transcription found per segment; false: text LID only."""
        return per_kind(self.audio_lid, kind)

    @property
    def needs_asr(self) -> bool:
        return any(self.lid_mode(k) is True for k in KINDS)

    @classmethod
    def from_config(cls, cfg: dict) -> LanguageParams:
        from pipelines.core.config import setting
        sec = {**filter_section(cfg, "language"), "languages": setting(cfg, "languages")}
        return build_params(cls, sec, "filters.language")


class LanguageFilter(Filter):
    name = "language"

    def __init__(self, params: LanguageParams, asr=None):
        self.p = params
        self.asr = asr  # pipelines.models.asr.Asr; needed only for audio_lid: true

    @classmethod
    def from_config(cls, cfg: dict, asr=None) -> LanguageFilter:
        return cls(LanguageParams.from_config(cfg), asr)

    def text_languages(self) -> list[str]:
        return list(self.p.languages) + list(self.p.text_extra_languages)

    def measure(self, example: dict, audio: np.ndarray | None, regions=None) -> dict[str, float]:
        p = self.p
        kind = example.get("kind")
        m: dict[str, float] = {}
        langs = self.text_languages()
        text = example_text(example)
        m["lid.text_chars"] = float(len(text))
        for lang, pr in text_lid(text, langs):
            m[f"lid.text.{lang}"] = pr
        for ch in (0, 1):
            t = example_text(example, ch)
            if len(t) >= p.min_text_chars:
                lang, pr = text_lid(t, langs, top=1)[0]
                m[f"lid.text.ch{ch}.{lang}"] = pr
        m.update(segment_lid(example.get("segments") or []))
        if p.lid_mode(kind) is True and audio is not None:
            heard: list[tuple[float, list]] = []
            if self.asr is None:
                raise ValueError(f"example {example.get('example_id')}: filters.language.audio_lid asks for "
                                 "Whisper's detection but no ASR is loaded")
            sr = int(example.get("sample_rate") or 24000)
            for ch in range(audio.shape[0]):
                x = audio[ch]
                if (np.abs(x) > 1e-3).sum() / sr < p.min_audio_s:
                    continue
                top = self.asr.detect_languages(_trim(x, sr), sr)
                if top:
                    m[f"lid.audio.ch{ch}.{top[0]['language']}"] = float(top[0]["prob"])
                    heard.append((min(len(x) / sr, 30.0), top))
            m.update(_heard(heard))
        return m

    def columns(self, metrics: dict, example: dict) -> None:
        example["lid_language"], example["lid_prob"] = self.reconcile(metrics, example.get("kind"))

    def reconcile(self, metrics: dict, kind: str | None) -> tuple[str | None, float]:
        """Detected language and its confidence: weighted vote of the audio (Whisper per channel,
        or the transcription's per-segment languages weighted by duration) and text LID."""
        p = self.p
        w_a, w_t = p.audio_weight, p.text_weight
        score: dict[str, float] = {}
        audio = [(k, v) for k, v in metrics.items() if k.startswith("lid.audio.ch")]
        seg = _prefixed(metrics, "lid.segvote.")
        if audio:
            per: dict[str, dict[str, float]] = {}
            for k, v in audio:
                ch, lang = k[len("lid.audio."):].split(".", 1)
                per.setdefault(ch, {})[lang] = float(v)
            for ch_scores in per.values():
                for lang, pr in ch_scores.items():
                    score[lang] = score.get(lang, 0.0) + w_a * pr / len(per)
        elif seg and p.lid_mode(kind) is not False:
            for lang, pr in seg.items():
                score[lang] = score.get(lang, 0.0) + w_a * pr
        else:
            w_a = 0.0
        text = _prefixed(metrics, "lid.text.")
        if text and float(metrics.get("lid.text_chars") or 0) >= p.min_text_chars:
            for lang, pr in text.items():
                score[lang] = score.get(lang, 0.0) + w_t * pr
        else:
            w_t = 0.0
        if not score or w_a + w_t == 0:
            return None, NAN
        best = max(score, key=score.get)
        return best, score[best] / (w_a + w_t)

    def heard(self, metrics: dict) -> dict[str, float]:
        """Languages confidently heard anywhere in the example (channels, segments, channel texts)."""
        p_min = self.p.switch_min_prob
        out: dict[str, float] = {}
        for k, v in metrics.items():
            for prefix in ("lid.audio.ch", "lid.seg.", "lid.text.ch"):
                if k.startswith(prefix) and float(v) >= p_min:
                    lang = k.rsplit(".", 1)[1]
                    # a segment's language counts once it covers a real share of the speech: one
                    # short chunk misheard is Whisper's per-chunk error, not a switch
                    if prefix == "lid.seg." and float(metrics.get(f"lid.segvote.{lang}", 1.0)) < \
                            self.p.switch_min_share:
                        continue
                    out[lang] = max(out.get(lang, 0.0), float(v))
        return out

    def check_heard(self, metrics: dict, kind: str | None, keep: dict) -> Decision | None:
        """Reject when the audio does not sound like an accepted language, or does not sound like
        the language its transcript is in (Whisper decoded, or translated, into another)."""
        p = self.p
        heard = _prefixed(metrics, "lid.heard.")
        if not heard or p.lid_mode(kind) is False:
            return None
        accepted = set(p.languages)
        share = sum(v for k, v in heard.items() if k in accepted)
        other = {k: v for k, v in heard.items() if k not in accepted}
        top = max(heard, key=heard.get)
        named = max(other, key=other.get) if other else top
        desc = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(heard.items(), key=lambda kv: -kv[1])[:4])
        min_share = threshold(p.min_heard_accepted, "filters.language.min_heard_accepted", kind)
        if share < min_share:
            return Decision.reject(self.name, "language_other",
                                   f"the audio sounds like {named} (Whisper on the audio: {desc}); the accepted "
                                   f"languages get {fmt(share)} < {min_share}", keep, named)
        text = _prefixed(metrics, "lid.text.")
        if not text or float(metrics.get("lid.text_chars") or 0) < p.min_text_chars:
            return None
        tl = max(text, key=text.get)
        min_t = threshold(p.min_heard_transcript, "filters.language.min_heard_transcript", kind, tl)
        if heard.get(tl, 0.0) < min_t:
            lang = top if top != tl else named
            return Decision.reject(self.name, "language_other" if lang not in accepted else "language_mismatch",
                                   f"the transcript reads as {tl} but the audio gives {tl} {fmt(heard.get(tl, 0.0))} "
                                   f"< {min_t} (Whisper on the audio: {desc})", keep, lang)
        return None

    def decide(self, metrics: dict, example: dict) -> Decision:
        p = self.p
        kind = example.get("kind")
        accepted = set(p.languages)
        declared = example.get("language")
        detected, conf = self.reconcile(metrics, kind)
        keep = {k: float(v) for k, v in metrics.items() if k.startswith("lid.")}
        keep["lid.prob"] = conf
        heard = _prefixed(metrics, "lid.heard.")
        if heard:  # how much of the audio sounds like an accepted language, for every verdict
            keep["lid.heard_accepted"] = sum(v for k, v in heard.items() if k in accepted)
        if kind == "synthetic":
            if declared not in accepted:
                return Decision.reject(self.name, "language_other",
                                       f"declared language {declared!r} not in {sorted(accepted)}", keep, declared)
            text = _prefixed(metrics, "lid.text.")
            if text and float(metrics.get("lid.text_chars") or 0) >= p.min_text_chars:
                tl = max(text, key=text.get)
                if tl != declared and text[tl] >= p.script_mismatch_prob:
                    return Decision.reject(self.name, "language_mismatch",
                                           f"script text reads as {tl} (p={fmt(text[tl])}), declared {declared}",
                                           keep, tl)
            return Decision.ok(self.name)
        if detected is None:
            if p.reject_unknown:
                return Decision.reject(self.name, "language_unknown", "no audio or text to identify the language",
                                       keep, None)
            return Decision.ok(self.name)
        if detected not in accepted:
            return Decision.reject(self.name, "language_other",
                                   f"heard {detected} (p={fmt(conf)}), accepted {sorted(accepted)}", keep, detected)
        wrong = self.check_heard(metrics, kind, keep)
        if wrong is not None:
            return wrong
        if declared and declared != detected:
            return Decision.reject(self.name, "language_mismatch",
                                   f"heard {detected} (p={fmt(conf)}) but transcribed as {declared}", keep, detected)
        min_p = threshold(p.min_prob, "filters.language.min_prob", kind, detected)
        if finite(conf) and conf < min_p:
            return Decision.reject(self.name, "language_uncertain", f"{detected} p={fmt(conf)} < {min_p}",
                                   keep, detected)
        heard = self.heard(metrics)
        if len(heard) > 1 and p.reject_switch:
            desc = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(heard.items()))
            return Decision.reject(self.name, "language_switch", f"languages switch inside the example: {desc}",
                                   keep, detected)
        return Decision.ok(self.name)


def segment_lid(segments: list[dict]) -> dict[str, float]:
    """The languages the transcription found: `lid.seg.<lang>` the highest probability of any
    segment (a switch shows there), `lid.segvote.<lang>` duration-weighted probability (the vote),
    `lid.heard.<lang>` from the audio's top candidates (segments that carry them)."""
    m: dict[str, float] = {}
    votes: dict[str, float] = {}
    total = 0.0
    for s in segments:
        lang, pr = s.get("language"), s.get("language_prob")
        try:
            pr = float(pr)
        except (TypeError, ValueError):
            continue
        if not lang or not finite(pr):
            continue
        m[f"lid.seg.{lang}"] = max(m.get(f"lid.seg.{lang}", 0.0), pr)
        d = max(float(s.get("end_s") or 0.0) - float(s.get("start_s") or 0.0), 0.01)
        votes[lang] = votes.get(lang, 0.0) + d * pr
        total += d
    for lang, v in votes.items():
        m[f"lid.segvote.{lang}"] = v / total
    m.update(_heard([(max(float(s.get("end_s") or 0.0) - float(s.get("start_s") or 0.0), 0.01),
                      s["audio_languages"]) for s in segments if s.get("audio_languages")]))
    return m


def _heard(windows: list[tuple[float, list]]) -> dict[str, float]:
    """`lid.heard.<lang>`: each language's probability among Whisper's top candidates, weighted by
    the seconds of each window [(seconds, [{language, prob}])] (absent from a window's top: 0)."""
    total = sum(d for d, _ in windows)
    out: dict[str, float] = {}
    if total <= 0:
        return out
    for d, top in windows:
        for c in top:
            k = f"lid.heard.{c['language']}"
            out[k] = out.get(k, 0.0) + d * float(c["prob"]) / total
    return out


def _trim(x: np.ndarray, sr: int, max_s: float = 30.0) -> np.ndarray:
    """Audible part of a channel (silent stretches dropped), at most Whisper's 30 s window."""
    frame = int(0.02 * sr)
    n = len(x) // frame
    if n == 0:
        return x
    f = x[: n * frame].reshape(n, frame)
    loud = np.sqrt((f ** 2).mean(axis=1)) > 1e-3
    y = f[loud].reshape(-1) if loud.any() else x
    return y[: int(max_s * sr)]
