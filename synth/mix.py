"""Render a timeline into two channels and derive the per-word overlap flags and ratios."""

from __future__ import annotations

import numpy as np
from synth.timeline import Timeline

FADE_S = 0.01  # fade at an interruption cut so the stop does not click


def render(tl: Timeline, sample_rate: int, peak: float = 0.9) -> np.ndarray:
    """float32 [2, T]: every placement's kept audio added at its start on its channel; a gain
    scales both channels together only if the sum would exceed `peak`."""
    n = int(np.ceil(tl.duration_s * sample_rate))
    out = np.zeros((2, n), dtype=np.float32)
    fade = max(1, int(FADE_S * sample_rate))
    for p in tl.placements:
        a = p.utt.audio
        if a is None:
            raise ValueError(f"utterance {p.utt.text!r} has no audio to mix")
        keep = min(len(a), round(p.keep_s * sample_rate))
        seg = a[:keep]  # a view: copied only where the fade writes
        if keep < len(a) and keep > fade:
            seg = seg.astype(np.float32, copy=True)
            seg[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        s = round(p.start_s * sample_rate)
        e = min(n, s + len(seg))
        out[p.channel, s:e] += seg[: e - s]
    m = max(float(out.max()), -float(out.min())) if out.size else 0.0  # no |out| temporary
    if m > peak:
        out *= peak / m
    return out


def activity(words: list[dict], duration_s: float, step_s: float = 0.01) -> np.ndarray:
    """bool [2, frames]: where each channel has a word (speech activity from the word times)."""
    n = int(np.ceil(duration_s / step_s)) + 1
    act = np.zeros((2, n), dtype=bool)
    for w in words:
        act[int(w["channel"]), int(w["start_s"] / step_s): int(np.ceil(w["end_s"] / step_s))] = True
    return act


def overlap_figures(words: list[dict], duration_s: float, step_s: float = 0.01) -> tuple[float, float, list[bool]]:
    """(overlap_ratio, speech_ratio, overlap flag per word).

    overlap_ratio = time both channels speak / time any channel speaks; speech_ratio = time
    any channel speaks / duration; a word overlaps when the other channel speaks during it.
    """
    act = activity(words, duration_s, step_s)
    both = act[0] & act[1]
    anyc = act[0] | act[1]
    flags = []
    for w in words:
        other = act[1 - int(w["channel"])]
        a, b = int(w["start_s"] / step_s), int(np.ceil(w["end_s"] / step_s))
        flags.append(bool(other[a:b].any()))
    speech = float(anyc.sum())
    return (float(both.sum()) / speech if speech else 0.0, speech * step_s / duration_s if duration_s else 0.0,
            flags)
