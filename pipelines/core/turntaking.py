"""Turn-taking measured the way Moshi compared its dialogues with real conversation.

Moshi (arXiv 2410.00037, Table 9), after dGSLM (Nguyen et al. 2022), on each channel's speech
activity: an IPU (inter-pausal unit) is speech of one speaker bridged over silences shorter than
0.2 s; a pause is a silence of both channels between two IPUs of the same speaker; a gap is a
silence of both between IPUs of different speakers; overlap is time where both speak. Each is a
total in seconds per minute of conversation (IPU time summed over the two channels, so with
overlap it can exceed what any one channel says). Activity comes from the word times (the planned
figures) or from each channel's VAD regions of the rendered audio (synth/audiotiming.py: the
figures compared with Fisher); the minute is measured from the first speech to the last (lead-in
and tail silences are not conversation), and the figures pool over dialogues by total time.
"""

from __future__ import annotations

import itertools

import numpy as np

# Fisher ground truth, seconds per minute (Moshi Table 9).
FISHER = {"ipu": 53.5, "pause": 5.5, "gap": 4.4, "overlap": 3.6}
BRIDGE_S = 0.2
STEP_S = 0.01
KEYS = ("ipu", "pause", "gap", "overlap")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs where `mask` is True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def activity(words: list[dict], step_s: float = STEP_S, bridge_s: float = BRIDGE_S) -> np.ndarray:
    """bool [2, frames]: each channel's IPUs (its words, silences shorter than `bridge_s` filled)."""
    return region_activity([[(w["start_s"], w["end_s"]) for w in words if int(w["channel"]) == ch] for ch in (0, 1)],
                           step_s, bridge_s)


def region_activity(regions: list, step_s: float = STEP_S, bridge_s: float = BRIDGE_S) -> np.ndarray:
    """bool [2, frames]: IPUs from each channel's (start_s, end_s) spans (words, or VAD speech
    regions of the rendered audio), silences shorter than `bridge_s` filled."""
    end = max((float(e) for rs in regions for _, e in rs), default=0.0)
    n = int(np.ceil(end / step_s)) + 1
    act = np.zeros((2, n), dtype=bool)
    for ch, rs in enumerate(regions):
        for s, e in rs:
            a, b = round(float(s) / step_s), round(float(e) / step_s)
            act[ch, a:max(b, a + 1)] = True
    bridge = round(bridge_s / step_s)
    for ch in (0, 1):
        runs = _runs(act[ch])
        for (_, e0), (s1, _) in itertools.pairwise(runs):
            if s1 - e0 < bridge:
                act[ch, e0:s1] = True
    return act


def measure(words: list[dict], step_s: float = STEP_S, bridge_s: float = BRIDGE_S) -> dict:
    """One dialogue's turn-taking from its words ({channel, start_s, end_s}); see measure_activity."""
    return measure_activity(activity(words, step_s, bridge_s), step_s)


def measure_regions(regions: list, step_s: float = STEP_S, bridge_s: float = BRIDGE_S) -> dict:
    """One dialogue's turn-taking from each channel's speech regions (VAD on the rendered audio)."""
    return measure_activity(region_activity(regions, step_s, bridge_s), step_s)


def measure_activity(act: np.ndarray, step_s: float = STEP_S) -> dict:
    """One dialogue's turn-taking from its IPU activity (bool [2, frames], region_activity).

    Returns totals in seconds (span_s, ipu_s, pause_s, gap_s, overlap_s) and the events behind
    them: pause and overlap lengths, and floor-transfer offsets (next speaker's start minus the
    previous speaker's end at each change of floor: positive a gap, negative an overlap).
    """
    anyc = act[0] | act[1]
    if not anyc.any():
        return {"span_s": 0.0, "ipu_s": 0.0, "pause_s": 0.0, "gap_s": 0.0, "overlap_s": 0.0,
                "pauses_s": [], "overlaps_s": [], "fto_s": []}
    idx = np.flatnonzero(anyc)
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    pauses, gaps, ftos = [], [], []
    for s, e in _runs(~anyc[lo:hi]):
        s, e = s + lo, e + lo
        before = {ch for ch in (0, 1) if act[ch, s - 1]}
        after = {ch for ch in (0, 1) if act[ch, e]}
        (pauses if before & after else gaps).append((e - s) * step_s)
        if not before & after:
            ftos.append((e - s) * step_s)
    overlaps = [(e - s) * step_s for s, e in _runs(act[0] & act[1])]
    # overlapped floor transfers: an IPU starts while the other channel speaks and outlasts it
    for ch in (0, 1):
        other = act[1 - ch]
        for s, e in _runs(act[ch]):
            if s > 0 and other[s - 1] and other[s]:
                o_end = s + int(np.argmin(other[s:])) if not other[s:].all() else len(other)
                if o_end < e:
                    ftos.append(-(o_end - s) * step_s)
    return {
        "span_s": round((hi - lo) * step_s, 3),
        "ipu_s": round(float(act.sum()) * step_s, 3),
        "pause_s": round(sum(pauses), 3),
        "gap_s": round(sum(gaps), 3),
        "overlap_s": round(sum(overlaps), 3),
        "pauses_s": [round(x, 3) for x in pauses],
        "overlaps_s": [round(x, 3) for x in overlaps],
        "fto_s": [round(x, 3) for x in ftos],
    }


def per_minute(measures: list[dict]) -> dict:
    """Pooled seconds per minute of IPU, pause, gap, overlap over dialogues' `measure` results."""
    span = sum(m["span_s"] for m in measures)
    if span <= 0:
        return {k: float("nan") for k in KEYS} | {"minutes": 0.0}
    return {k: 60.0 * sum(m[f"{k}_s"] for m in measures) / span for k in KEYS} | {"minutes": span / 60.0}


def off_fisher(pm: dict) -> dict:
    """Relative difference of each per-minute figure from Fisher's."""
    return {k: (pm[k] - FISHER[k]) / FISHER[k] for k in KEYS}


def format_per_minute(pm: dict, label: str = "measured") -> str:
    """Measured IPU / pause / gap / overlap per minute next to Fisher's, one table."""
    if not pm.get("minutes"):
        return "turn-taking (s per minute): no speech measured"
    rel = off_fisher(pm)
    lines = [f"turn-taking, s per minute over {pm['minutes']:.1f} min of dialogue (Moshi Table 9 definitions)",
             f"  {'':8} {label:>9} {'Fisher':>7} {'diff':>7}"]
    for k in KEYS:
        lines.append(f"  {k:8} {pm[k]:9.1f} {FISHER[k]:7.1f} {100 * rel[k]:+6.0f}%")
    return "\n".join(lines)
