"""TTS backends behind one interface: text in, float32 mono audio + per-word times out."""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np


class TTSError(RuntimeError):
    """A TTS backend cannot speak the request; the message says what and why."""


class TTS(Protocol):
    sample_rate: int

    def synthesize(self, text: str, language: str, voice: str | None = None, pitch: int | None = None,
                   rate: int | None = None) -> tuple[np.ndarray, int, list[dict]]:
        ...


def align_words(text: str, audio: np.ndarray, sr: int, language: str, asr) -> list[dict]:
    """Map the script's tokens onto ASR word timestamps (edit-distance alignment of normalised
    words); tokens the ASR missed are interpolated between their aligned neighbours."""
    import difflib
    tokens = [t for t in text.split() if re.search(r"\w", t)]
    segs = asr.transcribe(audio, sr, language=language)
    hyp = [w for s in segs for w in s.get("words", [])]
    norm = lambda s: re.sub(r"[^\w]", "", s.lower())
    sm = difflib.SequenceMatcher(a=[norm(t) for t in tokens], b=[norm(w["word"]) for w in hyp], autojunk=False)
    times: list[tuple[float, float] | None] = [None] * len(tokens)
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            for k in range(a1 - a0):
                h = hyp[b0 + k]
                times[a0 + k] = (float(h["start_s"] if "start_s" in h else h["start"]),
                                 float(h["end_s"] if "end_s" in h else h["end"]))
    total = len(audio) / sr
    out = []
    for i, t in enumerate(tokens):
        if times[i] is None:
            prev_end = next((times[j][1] for j in range(i - 1, -1, -1) if times[j]), 0.0)
            nxt_start = next((times[j][0] for j in range(i + 1, len(tokens)) if times[j]), total)
            times[i] = (prev_end, max(prev_end, nxt_start))
        out.append({"word": t, "start_s": times[i][0], "end_s": times[i][1]})
    return out


def make_tts(cfg: dict) -> TTS:
    """The backend named by cfg["synth"]["tts"]["backend"] ("espeak" | "piper")."""
    s = cfg.get("synth", {})
    backend = s.get("tts", {}).get("backend", "espeak")
    sr = int(cfg.get("sample_rate", 24000))
    if backend == "espeak":
        from tandem.synth.tts.espeak import EspeakTTS
        return EspeakTTS(sr)
    if backend == "piper":
        from tandem.synth.tts.piper import PiperTTS
        p = s.get("tts", {}).get("piper", {})
        return PiperTTS(sr, voice_path=p.get("voice"), languages=tuple(p.get("languages", ["en"])), cfg=cfg)
    raise TTSError(f"unknown synth.tts.backend {backend!r}: use espeak or piper")
