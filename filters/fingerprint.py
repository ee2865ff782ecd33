"""Near-duplicate audio by how it sounds: Chromaprint fingerprints (FFmpeg's `chromaprint` muxer),
matched by bit error rate at the best alignment.

The same recording resampled, transcoded (MP3, Opus, telephone band), re-levelled or trimmed keeps
its fingerprint within a few percent of bits; a different recording of the same text (another
speaker, another take) does not (distances measured by `bench/fingerprint.py` on real speech).
A fingerprint item summarises ~0.37 s of chroma every 1365/11025 s (8.08 items per second); items
over quiet audio are stored as 0 and never compared, so two silences never match.

`FingerprintIndex` matches incrementally, as Shazam-style landmark indexes do: each item's two
16-bit halves are keys of an inverted index of (example, position); a query counts votes per
(candidate, position offset) and verifies only candidates with enough votes at one offset, so a
check reads the postings of its own keys, never the whole history.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import numpy as np

ITEM_S = 1365 / 11025  # chromaprint's hop at its internal 11025 Hz
WINDOW_S = 4096 / 11025
QUIET_DB = 40.0  # items this far under the clip's loud level (or under -60 dBFS) are not compared
MIN_DBFS = -60.0
POSTING_CAP = 4096  # a key this common identifies nothing; stop growing its list


class FingerprintUnavailable(RuntimeError):
    """FFmpeg or its chromaprint muxer is missing: a setup fault, never the data's."""


def check_available() -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FingerprintUnavailable("filters.dedup.near_audio needs the ffmpeg program "
                                     "(Debian package ffmpeg; tools/setup.sh installs it)")
    r = subprocess.run([exe, "-hide_banner", "-h", "muxer=chromaprint"], capture_output=True, text=True,
                       check=False)
    if "fp_format" not in r.stdout:
        raise FingerprintUnavailable(f"{exe} was built without the chromaprint muxer (--enable-chromaprint), "
                                     "which filters.dedup.near_audio needs; install Debian's ffmpeg "
                                     "or set filters.dedup.near_audio: false")


def fingerprint(mono: np.ndarray, sr: int) -> np.ndarray:
    """Chromaprint items (uint32) of float audio in [-1, 1]; quiet items are 0."""
    x = np.nan_to_num(np.asarray(mono, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    if len(x) < int(WINDOW_S * sr) + 1:
        return np.zeros(0, np.uint32)
    # raw PCM in through a pipe, raw items out: FFmpeg reads nothing but what it is given
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "pipe", "-f", "f32le", "-ar", str(sr),
           "-ac", "1", "-i", "pipe:0", "-f", "chromaprint", "-fp_format", "raw", "pipe:1"]
    try:
        r = subprocess.run(cmd, input=np.clip(x, -1, 1).astype("<f4").tobytes(), capture_output=True, check=False)
    except FileNotFoundError as e:
        raise FingerprintUnavailable(f"ffmpeg not found ({e})") from e
    if r.returncode != 0:
        raise FingerprintUnavailable(f"ffmpeg chromaprint failed (rc {r.returncode}): "
                                     f"{r.stderr.decode(errors='replace').strip()[-300:]}")
    fp = np.frombuffer(r.stdout, dtype="<u4").astype(np.uint32)
    return np.where(_loud(x, sr, len(fp)), fp, 0).astype(np.uint32)


def _loud(x: np.ndarray, sr: int, n: int) -> np.ndarray:
    """Per item: does its window hold audio within QUIET_DB of the clip's loud level?"""
    hop, win = ITEM_S * sr, int(WINDOW_S * sr)
    starts = (np.arange(n) * hop).astype(np.int64)
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    ends = np.minimum(starts + win, len(x))
    rms_db = 10 * np.log10((c[ends] - c[np.minimum(starts, len(x))]) / np.maximum(ends - starts, 1) + 1e-12)
    if not n:
        return np.zeros(0, bool)
    ref = np.percentile(rms_db, 95)
    return (rms_db > ref - QUIET_DB) & (rms_db > MIN_DBFS)


def distance(a: np.ndarray, b: np.ndarray, offsets, min_items: int,
             min_cover: float = 0.0) -> tuple[float, int, int] | None:
    """Smallest bit error rate of `b` against `a` shifted by each offset (b[i] ~ a[i + off]), over
    items loud in both; (ber, offset, items compared), or None if no offset compares enough: at
    least `min_items`, and `min_cover` of the shorter's loud items (a shared second at the edges
    of two long examples does not make them copies)."""
    need = max(min_items, int(np.ceil(min_cover * min(int((a != 0).sum()), int((b != 0).sum())))))
    best = None
    for off in offsets:
        x, y = (a[off:], b) if off >= 0 else (a, b[-off:])
        n = min(len(x), len(y))
        if n < need:
            continue
        x, y = x[:n], y[:n]
        both = (x != 0) & (y != 0)
        m = int(both.sum())
        if m < need:
            continue
        ber = float(np.unpackbits((x[both] ^ y[both]).view(np.uint8)).sum()) / (32 * m)
        if best is None or (ber, abs(off)) < (best[0], abs(best[1])):
            best = (ber, off, m)
    return best


def _keys(fp: np.ndarray):
    for i, v in enumerate(fp.tolist()):
        if v:
            yield (v & 0xFFFF, i)
            yield ((v >> 16) | 0x10000, i)  # the upper half, in its own key space


class FingerprintIndex:
    """Incremental near-duplicate audio matching; symmetric (votes and distances do not depend on
    which side asks), so the duplicate graph does not depend on arrival order."""

    def __init__(self, max_ber: float, min_items: int, min_votes: int, min_cover: float):
        self.max_ber, self.min_items, self.min_votes, self.min_cover = max_ber, min_items, min_votes, min_cover
        self.postings: dict[int, list[tuple[str, int]]] = {}
        self.fps: dict[str, np.ndarray] = {}

    def add(self, eid: str, fp) -> None:
        if fp is None or eid in self.fps:
            return
        fp = np.asarray(fp, dtype=np.uint32)
        self.fps[eid] = fp
        for k, i in _keys(fp):
            lst = self.postings.setdefault(k, [])
            if len(lst) < POSTING_CAP:
                lst.append((eid, i))

    def matches(self, eid: str, fp) -> list[tuple[str, float]]:
        """Indexed examples that sound like `fp`: [(id, bit error rate)], best first (ties by id)."""
        if fp is None:
            return []
        fp = np.asarray(fp, dtype=np.uint32)
        votes: Counter = Counter()
        for k, i in _keys(fp):
            for other, j in self.postings.get(k, ()):
                if other != eid:
                    votes[(other, i - j)] += 1
        near: dict[str, float] = {}
        for (other, off), _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):
            if other in near or votes[(other, off)] + votes[(other, off - 1)] + votes[(other, off + 1)] < self.min_votes:
                continue
            d = self.pair(fp, self.fps[other], off)
            if d is not None and d <= self.max_ber:
                near[other] = d
        return sorted(near.items(), key=lambda kv: (kv[1], kv[0]))

    def pair(self, a: np.ndarray, b: np.ndarray, off: int | None = None) -> float | None:
        """Bit error rate of two fingerprints near offset `off` (a[i + off] ~ b[i]); every offset
        when None."""
        offs = range(-len(b) + 1, len(a)) if off is None else range(off - 2, off + 3)
        d = distance(a, b, offs, self.min_items, self.min_cover)
        return None if d is None else d[0]

    def __len__(self) -> int:
        return len(self.fps)
