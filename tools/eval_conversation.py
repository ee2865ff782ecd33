"""Conversations built from real voices: turns with short gaps, overlapped turn changes,
interruptions (the interrupted voice trails off mid-utterance), backchannels said over the
other's turn; and the telephone band (300-3400 Hz, 8 kHz, mu-law) variant of a file.

Everything is drawn from the `random.Random` given, so a seed gives the same audio. The overlap
is measured on the reference segments and redrawn (a few attempts) until it is 10-20% of the
speech, the range of real conversation (Fisher: overlap 3.6 s per 53.5 s of speech, 7%; more in
meetings).
"""

from __future__ import annotations

import random

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

OVERLAP_RANGE = (0.10, 0.20)
P_INTERRUPT, P_OVERLAP_CHANGE, P_BACKCHANNEL = 0.2, 0.3, 0.5
ATTEMPTS = 20


def _fit(x: np.ndarray, sr_from: int, sr: int) -> np.ndarray:
    if sr_from == sr:
        return x.astype(np.float32)
    g = np.gcd(sr, sr_from)
    return resample_poly(x, sr // g, sr_from // g).astype(np.float32)


def _level(x: np.ndarray, db: float) -> np.ndarray:
    rms = 10 * np.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-12)
    return (x * np.float32(10 ** ((db - rms) / 20))).astype(np.float32)


def speech_and_overlap(segs: list[dict]) -> tuple[float, float]:
    """Seconds of speech (any voice) and of overlap (two or more voices) on a 10 ms grid."""
    end = max(s["end"] for s in segs)
    n = int(np.ceil(end / 0.01)) + 1
    count = np.zeros(n, np.int16)
    for s in segs:
        count[int(s["start"] / 0.01): int(s["end"] / 0.01)] += 1
    return float((count > 0).sum()) * 0.01, float((count > 1).sum()) * 0.01


def _draw(speakers, pool, bcs, duration, rng: random.Random, sr: int) -> list[dict]:
    left = {s: rng.sample(pool[s], len(pool[s])) for s in speakers}
    level = {s: -23.0 + rng.uniform(-4.0, 4.0) for s in speakers}
    used = dict.fromkeys(speakers, 0)
    segs: list[dict] = []
    t, prev = rng.uniform(0.3, 1.0), None
    while True:
        cands = [s for s in speakers if s != prev and left[s]]
        if not cands:
            break
        spk = rng.choices(cands, weights=[1.0 / (1 + used[s]) for s in cands])[0]
        utts = [left[spk].pop() for _ in range(min(len(left[spk]), rng.choice((1, 1, 2))))]
        last = next((s for s in reversed(segs) if not s.get("backchannel")), None)
        r = rng.random()
        if last is None:
            start = t
        elif r < P_INTERRUPT and last["end"] - last["start"] > 1.5:
            # interruption: starts inside the last utterance, whose speaker stops 0.3-0.8 s later
            start = max(last["start"] + 0.8, last["end"] - rng.uniform(0.6, 1.5))
            cut = min(last["end"], start + rng.uniform(0.3, 0.8))
            n = int((cut - last["start"]) * sr)
            fade = min(n, int(0.03 * sr))
            last["audio"] = last["audio"][:n].copy()
            last["audio"][n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
            last.update(end=cut, text=None, interrupted=True)
        elif r < P_INTERRUPT + P_OVERLAP_CHANGE:
            start = last["end"] - rng.uniform(0.1, 0.5)  # the next voice starts just before the end
        else:
            start = last["end"] + (rng.uniform(0.05, 0.5) if rng.random() < 0.8 else rng.uniform(0.5, 1.5))
        turn_dur = sum(len(u.audio) / u.sr for u in utts) + 0.4 * (len(utts) - 1)
        if segs and start + turn_dur > duration:
            break
        cur, first = start, len(segs)
        for u in utts:
            a = _level(_fit(u.audio, u.sr, sr), level[spk])
            segs.append({"speaker": spk, "start": cur, "end": cur + len(a) / sr, "text": u.text,
                         "source": u.source, "audio": a})
            cur += len(a) / sr + rng.uniform(0.2, 0.5)
        turn_end = segs[-1]["end"]
        listeners = [s for s in speakers if s != spk and bcs.get(s)]
        if listeners and turn_end - start >= 2.5 and rng.random() < P_BACKCHANNEL:
            who = prev if prev in listeners else rng.choice(listeners)
            u = rng.choice(bcs[who])
            a = _level(_fit(u.audio, u.sr, sr), level[who] - 3.0)
            at = start + rng.uniform(0.3, 0.7) * (turn_end - start)
            segs.insert(first + 1, {"speaker": who, "start": at, "end": at + len(a) / sr, "text": u.text,
                                    "source": u.source, "audio": a, "backchannel": True})
        segs.sort(key=lambda s: s["start"])
        t, prev = turn_end, spk
        used[spk] += 1
    return segs


def build_conversation(speakers: list[str], pool: dict, bcs: dict, duration: float, rng: random.Random,
                       noise_dbfs: float) -> tuple[np.ndarray, int, list[dict], int]:
    """Mono mixture, rate, reference segments and the attempt whose overlap share fell in
    OVERLAP_RANGE (the last attempt's when none did)."""
    sr = max(pool[s][0].sr for s in speakers)
    for attempt in range(ATTEMPTS):
        segs = _draw(speakers, pool, bcs, duration, random.Random(rng.getrandbits(64)), sr)
        speech, ov = speech_and_overlap(segs)
        if OVERLAP_RANGE[0] <= ov / max(speech, 1e-9) <= OVERLAP_RANGE[1]:
            break
    total = max(s["end"] for s in segs) + rng.uniform(0.3, 1.0)
    out = np.zeros(int(np.ceil(total * sr)) + 1, np.float32)
    for s in segs:
        i = round(s["start"] * sr)
        a = s.pop("audio")
        out[i: i + len(a)] += a[: len(out) - i]
    nrng = np.random.default_rng(rng.getrandbits(32))
    out += nrng.standard_normal(len(out)).astype(np.float32) * np.float32(10 ** (noise_dbfs / 20))
    peak = float(np.abs(out).max())
    if peak > 0.95:
        out *= np.float32(0.95 / peak)
    return out, sr, segs, attempt


def telephone(x: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """The telephone band: 300-3400 Hz, 8 kHz, 8-bit mu-law (G.711) companding."""
    y = sosfiltfilt(butter(4, [300, 3400], btype="band", fs=sr, output="sos"), x.astype(np.float64))
    y = _fit(y.astype(np.float32), sr, 8000)
    mu = 255.0
    c = np.sign(y) * np.log1p(mu * np.minimum(np.abs(y), 1.0)) / np.log1p(mu)
    c = np.round(c * 127) / 127
    return (np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu).astype(np.float32), 8000
