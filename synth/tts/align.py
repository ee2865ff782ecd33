"""Word times for TTS engines that give none: forced alignment of the known script, or Whisper.

Forced alignment is the project's one aligner (pipelines/models/aligner.py, WhisperX's wav2vec2
aligner) named per language by synth.tts.align_model. `whisper_match_words` is the fallback
without one: Whisper's own word times matched to the script by edit distance. It is labelled
"whisper-match" and its scores are capped below 1 (half Whisper's word probability; 0 for a word
Whisper missed, whose time is interpolated).
"""

from __future__ import annotations

import re

import numpy as np

from pipelines.models.aligner import fill_missing, script_tokens

WHISPER_MATCH_SCALE = 0.5


def aligner_dir(align_model: str | dict | None, language: str) -> str | None:
    """The aligner synth.tts.align_model names for `language` (one for all, or a {language: model}
    map; a local wav2vec2 directory, a cached hub id or a torchaudio bundle); None: whisper-match."""
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
    fill_missing(out, len(audio) / sr)
    return out
