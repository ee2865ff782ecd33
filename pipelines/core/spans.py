"""Time spans [(start_s, end_s)]: the one place their arithmetic lives (VAD regions, speaker
turns, ASR windows, filter masks all use it)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable


def merge(spans: Iterable[tuple[float, float]], gap_s: float = 0.0) -> list[list[float]]:
    """Sorted spans with gaps of at most `gap_s` joined (touching spans join at 0)."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([float(s), float(e)])
    return out


def union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, disjoint spans covering the same time; empty spans dropped."""
    return [(s, e) for s, e in merge(((s, e) for s, e in spans if e > s), 0.0)]


def intersect(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Where both hold, sorted."""
    a, b = union(a), union(b)
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(spans: Iterable[tuple[float, float]], minus: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Time inside `spans` and outside `minus`: sorted, disjoint."""
    cut, out = union(minus), []
    for s, e in union(spans):
        for a, b in cut:
            if b <= s or a >= e:
                continue
            if a > s:
                out.append((s, a))
            s = max(s, b)
        if e > s:
            out.append((s, e))
    return out


def contains(spans: list[tuple[float, float]], t: float) -> bool:
    """`t` inside one of the sorted, disjoint `spans` (ends included)."""
    k = bisect.bisect_right(spans, (t, float("inf"))) - 1
    return k >= 0 and spans[k][0] <= t <= spans[k][1]


def total(spans: Iterable[tuple[float, float]]) -> float:
    """Seconds covered, overlaps counted once."""
    return sum(e - s for s, e in union(spans))
