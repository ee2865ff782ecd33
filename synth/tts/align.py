"""Word times for TTS engines that give none: forced alignment of the known script.

`CtcAligner` runs a wav2vec2 CTC model (a local Hugging Face directory: weights, vocab) over the
audio and aligns the script's characters with torchaudio's `forced_align` (Viterbi over CTC
emissions). A word's score is the mean posterior of its characters on their aligned frames, so
an aligner that does not recognise the speech scores low instead of looking exact.

`whisper_match_words` is the fallback without an aligner: Whisper's own word times matched to the
script by edit distance. It is labelled "whisper-match" and its scores are capped below 1 (half
Whisper's word probability; 0 for a word Whisper missed, whose time is interpolated).
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np

ALIGN_SR = 16000
WHISPER_MATCH_SCALE = 0.5
_ALIGNERS: dict[tuple, CtcAligner] = {}


def script_tokens(text: str) -> list[str]:
    """The words of a script line: whitespace tokens holding a word character."""
    return [t for t in text.split() if re.search(r"\w", t)]


class CtcAligner:
    """Forced alignment with a wav2vec2 CTC model from a local directory."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", threads: int = 2):
        from pipelines.models.registry import ModelMissing
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise ModelMissing(f"wav2vec2 aligner {d}: no config.json there; set synth.tts.align_model to a local "
                               "Hugging Face wav2vec2 CTC directory (config.json, weights, vocab.json)")
        import torch
        from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor
        torch.set_num_threads(threads)
        try:
            self.processor = Wav2Vec2Processor.from_pretrained(str(d))
            self.model = Wav2Vec2ForCTC.from_pretrained(str(d)).to(device).eval()
        except (OSError, ValueError) as e:
            raise ModelMissing(f"wav2vec2 aligner {d} could not be loaded ({type(e).__name__}: {e})") from e
        self.device = device
        vocab = self.processor.tokenizer.get_vocab()
        self.vocab = {k.lower(): v for k, v in vocab.items()}
        self.blank = int(self.processor.tokenizer.pad_token_id or 0)
        self.word_sep = self.processor.tokenizer.word_delimiter_token or "|"

    def _ids(self, word: str) -> list[int]:
        w = unicodedata.normalize("NFC", word.lower())
        ids = [self.vocab[c] for c in w if c in self.vocab]
        if not ids:  # accents the vocabulary lacks: try without them
            w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
            ids = [self.vocab[c] for c in w if c in self.vocab]
        return ids

    def align(self, text: str, audio: np.ndarray, sample_rate: int) -> list[dict]:
        """[{word, start_s, end_s, score}] for every script token of `text`, in order."""
        import torch
        import torchaudio.functional as F
        tokens = script_tokens(text)
        if not tokens:
            return []
        x = np.asarray(audio, dtype=np.float32)
        if sample_rate != ALIGN_SR:
            import soxr
            x = soxr.resample(x, sample_rate, ALIGN_SR).astype(np.float32)
        total = len(audio) / sample_rate
        feats = self.processor(x, sampling_rate=ALIGN_SR, return_tensors="pt").input_values.to(self.device)
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(feats).logits.float(), dim=-1).cpu()
        frames = logp.shape[1]
        frame_s = len(x) / ALIGN_SR / max(frames, 1)
        ids = [self._ids(t) for t in tokens]
        sep = self.vocab.get(self.word_sep)
        targets, owner = [], []
        for i, w in enumerate(ids):
            if i and sep is not None and w:
                targets.append(sep)
                owner.append(-1)
            targets += w
            owner += [i] * len(w)
        out: list[dict] = [{"word": t, "start_s": None, "end_s": None, "score": 0.0} for t in tokens]
        if targets and len(targets) <= frames:
            with warnings.catch_warnings():  # deprecated from torchaudio 2.9 on; pinned at 2.8 here
                warnings.simplefilter("ignore", UserWarning)
                path, scores = F.forced_align(logp, torch.tensor([targets], dtype=torch.int32), blank=self.blank)
            spans = F.merge_tokens(path[0], scores[0].exp(), blank=self.blank)
            for sp, o in zip(spans, owner):
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
        _fill_missing(out, total)
        return out


def _fill_missing(words: list[dict], total: float) -> None:
    """Runs of words without a time (nothing aligned in them) share the span between their timed
    neighbours in proportion to their letters; they score 0."""
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
        w["start_s"] = float(min(w["start_s"], total))
        w["end_s"] = float(min(max(w["end_s"], w["start_s"]), total))


def load_aligner(model_dir: str | Path, device: str = "cpu", threads: int = 2) -> CtcAligner:
    """One aligner per (directory, device) per process."""
    key = (str(model_dir), device)
    if key not in _ALIGNERS:
        _ALIGNERS[key] = CtcAligner(model_dir, device, threads)
    return _ALIGNERS[key]


def aligner_dir(align_model: str | dict | None, language: str) -> str | None:
    """The configured aligner directory for `language` (one for all, or a {language: dir} map)."""
    if isinstance(align_model, dict):
        return align_model.get(language)
    return align_model


def whisper_match_words(text: str, audio: np.ndarray, sr: int, language: str, asr) -> list[dict]:
    """Script tokens timed by matching them to Whisper's word times (difflib on normalised words);
    tokens Whisper missed are interpolated between their neighbours and score 0."""
    import difflib
    tokens = script_tokens(text)
    segs = asr.transcribe(audio, sr, language=language)
    hyp = [w for s in segs for w in s.get("words", [])]

    def norm(s: str) -> str:
        return re.sub(r"[^\w]", "", s.lower())
    sm = difflib.SequenceMatcher(a=[norm(t) for t in tokens], b=[norm(w["word"]) for w in hyp], autojunk=False)
    out: list[dict] = [{"word": t, "start_s": None, "end_s": None, "score": 0.0} for t in tokens]
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            for k in range(a1 - a0):
                h = hyp[b0 + k]
                out[a0 + k].update(start_s=float(h["start_s"]), end_s=float(h["end_s"]),
                                   score=WHISPER_MATCH_SCALE * float(h.get("score", 1.0)))
    _fill_missing(out, len(audio) / sr)
    return out
