"""Spoken language: Whisper's detection on each channel's audio and text LID on the transcript,
reconciled into one detected language; other languages are rejected with the language heard.

Metrics keep the language in the key so they fit the float metrics map and re-filtering can
re-decide: `lid.audio.ch0.nl = 0.93`, `lid.text.nl = 0.88`, `lid.heard.de = 1`.
For synthetic data the language is known (espeak's fr/pt voices fool Whisper), so audio LID is
not decided on there: the script's text LID is checked against the declared language.
"""

from __future__ import annotations

import functools

import numpy as np
from tandem.filters.base import NAN, Decision, Filter, finite, fmt, per_kind, section

# heard but not accepted: lets text LID say "Dutch" instead of forcing the nearest accepted language
DEFAULT_EXTRA = ["nl", "pl", "ca", "ro", "sv", "da", "no", "cs", "hu", "fi", "tr", "ru", "gl", "eu"]


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


class LanguageFilter(Filter):
    name = "language"

    def __init__(self, cfg: dict, asr=None):
        self.cfg = cfg
        self.asr = asr  # pipelines.transcribe.Asr; needed for audio LID

    def _lcfg(self) -> dict:
        return section(self.cfg, "language")

    def text_languages(self) -> list[str]:
        lc = self._lcfg()
        return list(self.cfg.get("languages") or []) + list(lc.get("text_extra_languages", DEFAULT_EXTRA))

    def measure(self, example: dict, audio: np.ndarray | None) -> dict[str, float]:
        lc = self._lcfg()
        kind = example.get("kind")
        m: dict[str, float] = {}
        langs = self.text_languages()
        text = example_text(example)
        m["lid.text_chars"] = float(len(text))
        for lang, p in text_lid(text, langs):
            m[f"lid.text.{lang}"] = p
        min_chars = int(lc.get("min_text_chars", 20))
        for ch in (0, 1):
            t = example_text(example, ch)
            if len(t) >= min_chars:
                lang, p = text_lid(t, langs, top=1)[0]
                m[f"lid.text.ch{ch}.{lang}"] = p
        # languages Whisper reported per transcribed segment (curation detects per chunk)
        for s in example.get("segments") or []:
            lang, p = s.get("language"), s.get("language_prob")
            if lang and p is not None and finite(float(p)):
                key = f"lid.seg.{lang}"
                m[key] = max(m.get(key, 0.0), float(p))
        if audio is not None and self.asr is not None and per_kind(lc.get("audio_lid", True), kind):
            sr = int(example.get("sample_rate") or 24000)
            min_s = float(lc.get("min_audio_s", 1.0))
            for ch in range(audio.shape[0]):
                x = audio[ch]
                active = np.abs(x) > 1e-3
                if active.sum() / sr < min_s:
                    continue
                lang, p = self.asr.detect_language(_trim(x, sr), sr)
                if lang:
                    m[f"lid.audio.ch{ch}.{lang}"] = float(p)
        return m

    def reconcile(self, metrics: dict, kind: str | None) -> tuple[str | None, float]:
        """Detected language and its confidence: weighted vote of audio LID (per channel, by
        probability) and text LID."""
        lc = section({"filters": {"language": self._lcfg()}}, "language")
        w_a = float(lc.get("audio_weight", 0.5))
        w_t = float(lc.get("text_weight", 0.5))
        score: dict[str, float] = {}
        audio = [(k, v) for k, v in metrics.items() if k.startswith("lid.audio.ch")]
        if audio:
            per = {}
            for k, v in audio:
                ch, lang = k[len("lid.audio."):].split(".", 1)
                per.setdefault(ch, {})[lang] = float(v)
            for ch_scores in per.values():
                for lang, p in ch_scores.items():
                    score[lang] = score.get(lang, 0.0) + w_a * p / len(per)
        else:
            w_a = 0.0
        text = _prefixed(metrics, "lid.text.")
        if text and float(metrics.get("lid.text_chars") or 0) >= float(lc.get("min_text_chars", 20)):
            for lang, p in text.items():
                score[lang] = score.get(lang, 0.0) + w_t * p
        else:
            w_t = 0.0
        if not score or w_a + w_t == 0:
            return None, NAN
        best = max(score, key=score.get)
        return best, score[best] / (w_a + w_t)

    def heard(self, metrics: dict, lc: dict) -> dict[str, float]:
        """Languages confidently heard anywhere in the example (channels, segments, channel texts)."""
        p_min = float(lc.get("switch_min_prob", 0.8))
        out: dict[str, float] = {}
        for k, v in metrics.items():
            for prefix in ("lid.audio.ch", "lid.seg.", "lid.text.ch"):
                if k.startswith(prefix) and float(v) >= p_min:
                    lang = k.rsplit(".", 1)[1]
                    out[lang] = max(out.get(lang, 0.0), float(v))
        return out

    def decide(self, metrics: dict, example: dict, cfg: dict) -> Decision:
        self.cfg = cfg
        lc = self._lcfg()
        kind = example.get("kind")
        accepted = set(cfg.get("languages") or [])
        declared = example.get("language")
        detected, conf = self.reconcile(metrics, kind)
        keep = {k: float(v) for k, v in metrics.items() if k.startswith("lid.")}
        keep["lid.prob"] = conf
        if kind == "synthetic":
            if declared not in accepted:
                return Decision.reject(self.name, "language_other",
                                       f"declared language {declared!r} not in {sorted(accepted)}", keep, declared)
            text = _prefixed(metrics, "lid.text.")
            if text and float(metrics.get("lid.text_chars") or 0) >= float(lc.get("min_text_chars", 20)):
                tl = max(text, key=text.get)
                if tl != declared and text[tl] >= float(lc.get("script_mismatch_prob", 0.9)):
                    return Decision.reject(self.name, "language_mismatch",
                                           f"script text reads as {tl} (p={fmt(text[tl])}), declared {declared}",
                                           keep, tl)
            return Decision.ok(self.name)
        if detected is None:
            if lc.get("reject_unknown", True):
                return Decision.reject(self.name, "language_unknown", "no audio or text to identify the language",
                                       keep, None)
            return Decision.ok(self.name)
        if detected not in accepted:
            return Decision.reject(self.name, "language_other",
                                   f"heard {detected} (p={fmt(conf)}), accepted {sorted(accepted)}", keep, detected)
        if declared and declared != detected:
            return Decision.reject(self.name, "language_mismatch",
                                   f"heard {detected} (p={fmt(conf)}) but transcribed as {declared}", keep, detected)
        min_p = float(per_kind(lc.get("min_prob", 0.5), kind, detected))
        if finite(conf) and conf < min_p:
            return Decision.reject(self.name, "language_uncertain", f"{detected} p={fmt(conf)} < {min_p}",
                                   keep, detected)
        heard = self.heard(metrics, lc)
        if len(heard) > 1 and lc.get("reject_switch", True):
            desc = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(heard.items()))
            return Decision.reject(self.name, "language_switch", f"languages switch inside the example: {desc}",
                                   keep, detected)
        return Decision.ok(self.name)


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
