"""Overlapped speech on top of an exclusive diarization (one speaker per instant).

pyannote's segmentation model is multi-label: its "full" diarization holds every speaker active in
a frame (the frame's speaker count comes from the segmentation, the speakers from the local
speaker -> global cluster mapping), its "exclusive" one only the strongest. The tandem diarizer
keeps the exclusive assignment (the window pass that lowers DER on non-overlapped speech) and adds,
where the full view has two or more speakers, each speaker other than the exclusive one there as an
overlap turn. Both channels of the two-channel split then carry that stretch.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.01  # grid of the overlap computation (pyannote's frames are about 17 ms)

Turn = tuple[float, float, str]


def clip_turns(turns: list[Turn], duration_s: float) -> list[Turn]:
    """Turns cut to [0, duration_s], empty ones dropped. pyannote zero-pads the last 5 s chunk and
    its reconstruction can run past the end of the audio (by up to a chunk)."""
    out = []
    for s, e, lab in turns:
        s, e = max(0.0, s), min(duration_s, e)
        if e > s:
            out.append((s, e, lab))
    return out


def activity(turns: list[Turn], labels: list[str], n: int) -> np.ndarray:
    """(n, len(labels)) bool: frame f is active for label k when one of k's turns covers
    [f, f+1) * FRAME_S for at least half the frame (rounded edges)."""
    a = np.zeros((n, len(labels)), bool)
    idx = {lab: i for i, lab in enumerate(labels)}
    for s, e, lab in turns:
        i, j = max(0, round(s / FRAME_S)), min(n, round(e / FRAME_S))
        if j > i:
            a[i:j, idx[lab]] = True
    return a


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame index pairs of the True runs of a 1-d bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def overlap_turns(exclusive: list[Turn], full: list[Turn], duration_s: float,
                  min_s: float = 0.0) -> list[Turn]:
    """Turns of the speakers that the full view has active beside the exclusive speaker of a frame,
    in frames where the full view has at least two speakers and the exclusive view has speech.
    Runs shorter than `min_s` are dropped. Labels are shared by both views."""
    labels = sorted({lab for *_, lab in exclusive} | {lab for *_, lab in full})
    n = int(np.ceil(duration_s / FRAME_S - 1e-9))
    if len(labels) < 2 or n <= 0:
        return []
    fa = activity(full, labels, n)
    ea = activity(exclusive, labels, n)
    two = (fa.sum(axis=1) >= 2) & ea.any(axis=1)
    extra = fa & ~ea & two[:, None]
    out = []
    for k, lab in enumerate(labels):
        for i, j in runs(extra[:, k]):
            if (j - i) * FRAME_S >= min_s - 1e-9:
                out.append((i * FRAME_S, min(duration_s, j * FRAME_S), lab))
    return sorted(out)


def exclusive_of(full: list[Turn], duration_s: float) -> list[Turn]:
    """One speaker per frame from a full view alone (a pipeline without an exclusive output):
    in overlapped frames the speaker with the longest turn there keeps the frame."""
    labels = sorted({lab for *_, lab in full})
    n = int(np.ceil(duration_s / FRAME_S - 1e-9))
    if not labels or n <= 0:
        return []
    cur = np.full(n, -1)
    for s, e, lab in sorted(full, key=lambda t: t[0] - t[1]):  # longest first
        i, j = max(0, round(s / FRAME_S)), min(n, round(e / FRAME_S))
        seg = cur[i:j]
        seg[seg < 0] = labels.index(lab)
    out = []
    for k, lab in enumerate(labels):
        out += [(i * FRAME_S, min(duration_s, j * FRAME_S), lab) for i, j in runs(cur == k)]
    return sorted(out)
