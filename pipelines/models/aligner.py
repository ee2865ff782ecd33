"""The one wav2vec2 forced aligner: loaded by `whisperx.load_align_model`, one per (language,
model, device) per process, for curation and synthesis alike.

Curation's WhisperX backend aligns each Whisper segment's text with `align_text` (`whisperx.align`:
its sentence splitting and conventions, the backend's own code). Synthesis aligns the known script
of engines that give no word times (Piper, Pocket TTS) with `align_script`: torchaudio's
`forced_align` over the same model's emissions, because whisperx.align's trellis gives a character
the blank frames after it, so a word ends at the next word's separator (a peaked stand-in model in
tests/test_synth_align.py: "oui" 0.20-0.60 s instead of 0.20-0.26 s), and a synthetic word's end
is what a frame-grid trainer learns.
An aligner is named by a local Hugging Face wav2vec2 CTC directory, a hub id present in the model
cache, or a torchaudio bundle name (`fetch.aligner_ref`); one is loaded per (language, model,
device) per process.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.models.asr_base import ASR_SR, to_16k_mono
from pipelines.models.cache import ModelsParams
from pipelines.models.registry import ModelMissing

_ALIGNERS: dict[tuple, Aligner | None] = {}


def script_tokens(text: str) -> list[str]:
    """The words of a script line: whitespace tokens holding a word character."""
    return [t for t in text.split() if re.search(r"\w", t)]


class Aligner:
    """A loaded WhisperX aligner: the wav2vec2 model and WhisperX's metadata (language, dictionary, type)."""

    def __init__(self, model: Any, metadata: dict, device: str = "cpu"):
        self.model, self.metadata, self.device = model, metadata, device

    @property
    def vocab(self) -> dict[str, int]:
        """Character -> CTC class, as whisperx.align reads it."""
        return self.metadata["dictionary"]

    @property
    def blank(self) -> int:
        return next((c for ch, c in self.vocab.items() if ch in ("[pad]", "<pad>")), 0)

    def align_text(self, text: str, audio16k: np.ndarray) -> list[dict]:
        """whisperx.align of `text` over the whole clip: its words, in order; a word it could not
        place lacks `start`/`end`/`score` or holds whisperx's interpolated times without a score."""
        import whisperx
        dur = len(audio16k) / ASR_SR
        res = whisperx.align([{"text": text, "start": 0.0, "end": dur}], self.model, self.metadata,
                             np.asarray(audio16k, dtype=np.float32), self.device, return_char_alignments=False)
        return [w for sent in res["segments"] for w in (sent.get("words") or [])]

    def _ids(self, word: str) -> list[int]:
        w = unicodedata.normalize("NFC", word.lower())
        ids = [self.vocab[c] for c in w if c in self.vocab]
        if not ids:  # accents the vocabulary lacks: try without them
            w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
            ids = [self.vocab[c] for c in w if c in self.vocab]
        return ids

    def _log_probs(self, x: np.ndarray):
        import torch
        wav = torch.from_numpy(x)[None].to(self.device)
        with torch.inference_mode():
            if self.metadata["type"] == "torchaudio":
                em, _ = self.model(wav)
            else:  # what the model's Wav2Vec2 feature extractor does before it (whisperx.align skips it)
                em = self.model((wav - wav.mean()) / torch.sqrt(wav.var() + 1e-7)).logits
            return torch.log_softmax(em.float(), dim=-1).cpu()

    def align_script(self, text: str, audio: np.ndarray, sample_rate: int) -> list[dict]:
        """[{word, start_s, end_s, score}] for every script token of `text`, in order, by torchaudio's
        `forced_align` over this model's emissions. A word's span is its characters' frames only
        (blank frames after a character are not its sound) and its score their mean posterior, so
        an aligner that does not recognise the speech scores low instead of looking exact. Words
        with nothing aligned share the span between their neighbours and score 0."""
        import torch
        import torchaudio.functional as F
        tokens = script_tokens(text)
        if not tokens:
            return []
        x = to_16k_mono(audio, sample_rate)
        logp = self._log_probs(x)
        frames = logp.shape[1]
        frame_s = len(x) / ASR_SR / max(frames, 1)
        sep = self.vocab.get("|")
        targets, owner = [], []
        for i, w in enumerate(self._ids(t) for t in tokens):
            if targets and sep is not None and w:
                targets.append(sep)
                owner.append(-1)
            targets += w
            owner += [i] * len(w)
        out: list[dict] = [{"word": t, "start_s": None, "end_s": None, "score": 0.0} for t in tokens]
        if targets and len(targets) <= frames:
            with warnings.catch_warnings():  # deprecated from torchaudio 2.9 on; pinned at 2.8 here
                warnings.simplefilter("ignore", UserWarning)
                path, scores = F.forced_align(logp, torch.tensor([targets], dtype=torch.int32), blank=self.blank)
            for sp, o in zip(F.merge_tokens(path[0], scores[0].exp(), blank=self.blank), owner):
                if o < 0:
                    continue
                w = out[o]
                s, e = sp.start * frame_s, sp.end * frame_s
                w["start_s"] = s if w["start_s"] is None else min(w["start_s"], s)
                w["end_s"] = e if w["end_s"] is None else max(w["end_s"], e)
                w.setdefault("_p", []).append(float(sp.score))
        for w in out:
            p = w.pop("_p", None)
            w["score"] = float(np.mean(p)) if p else 0.0
        fill_missing(out, len(audio) / sample_rate)
        return out


def fill_missing(words: list[dict], total: float) -> None:
    """Runs of words without a time share the span between their timed neighbours in proportion
    to their letters; they score 0. Every time is clamped into [0, total]."""
    i = 0
    while i < len(words):
        if words[i]["start_s"] is not None:
            i += 1
            continue
        j = i
        while j < len(words) and words[j]["start_s"] is None:
            j += 1
        a = words[i - 1]["end_s"] if i > 0 else 0.0
        b = words[j]["start_s"] if j < len(words) else total
        b = max(a, b)
        sizes = [max(1, len(re.sub(r"\W", "", w["word"]))) for w in words[i:j]]
        t = a
        for w, n in zip(words[i:j], sizes):
            w["start_s"], w["end_s"], w["score"] = t, t + (b - a) * n / sum(sizes), 0.0
            t = w["end_s"]
        i = j
    for w in words:
        w["start_s"] = float(min(max(w["start_s"], 0.0), total))
        w["end_s"] = float(min(max(w["end_s"], w["start_s"]), total))


def load_aligner(lang: str, align_model: str | dict | None, device: str, models: ModelsParams | None,
                 download: bool = False) -> Aligner | None:
    """The aligner for `lang`, once per process; None for a language with no aligner anywhere (its
    words keep their other times). A named aligner that is not here raises ModelMissing (with
    `download`, a hub id or torchaudio bundle is fetched instead)."""
    import whisperx

    from pipelines.models.fetch import (
        align_dir,
        aligner_path,
        aligner_ref,
        hub_dir,
        is_torchaudio_bundle,
        use_punkt,
    )
    ref = aligner_ref(lang, align_model)
    if ref is None:
        return None
    key = (lang, str(ref), device)
    if key not in _ALIGNERS:
        use_punkt(models, [lang])
        if not download:
            aligner_path(lang, align_model, models)  # ModelMissing with the fix when absent
        is_dir = Path(ref).is_dir()
        try:
            model, meta = whisperx.load_align_model(
                lang, device, model_name=ref if is_dir or align_model else None,
                model_dir=None if is_dir else str(align_dir(models) if is_torchaudio_bundle(ref) else hub_dir(models)),
                model_cache_only=not download)
        except Exception as e:
            raise ModelMissing(f"wav2vec2 aligner {ref!r} for {lang!r} could not be loaded "
                               f"({type(e).__name__}: {e}); set asr.align_model to a local wav2vec2 directory "
                               "or run `tandem models fetch`") from e
        _ALIGNERS[key] = Aligner(model, meta, device)
    return _ALIGNERS[key]
