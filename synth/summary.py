"""What `tandem synth` prints at the end: the turn-taking of the dialogues it made, measured on their
words with Moshi's definitions (synth/turntaking.py) next to Fisher's, and the speaker-change
offsets against the configured targets."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
from tandem.synth.turntaking import format_per_minute, per_minute


def _q(x: list[float], q: float) -> float:
    return float(np.quantile(x, q)) if x else float("nan")


def summarize(example_rows: Iterable[dict]) -> dict:
    """Turn-taking over example rows (reads only `params`): per-minute figures, event lengths and
    the configured targets."""
    offs, reg, ints, n_changes = [], [], 0, 0
    bcs = utts = 0
    targets: dict = {}
    measures: list[dict] = []
    n = 0
    for r in example_rows:
        p = r.get("params")
        p = json.loads(p) if isinstance(p, str) else (p or {})
        t = p.get("timeline")
        if not t:
            continue
        n += 1
        targets = targets or p.get("targets") or {}
        if p.get("turn_taking"):
            measures.append(p["turn_taking"])
        for o, i in zip(t["offsets_s"], t["interrupted"]):
            offs.append(o)
            n_changes += 1
            if i:
                ints += 1
            else:
                reg.append(o)
        bcs += t.get("backchannels", 0)
        utts += t.get("utterances", 0)
    pm = per_minute(measures)
    mu, sd = targets.get("gap_mean_s"), targets.get("gap_std_s")
    return {
        "dialogues": n, "speaker_changes": n_changes, "per_minute": pm,
        "backchannels_per_minute": bcs / pm["minutes"] if pm["minutes"] else float("nan"),
        "fto_median_s": _q([x for m in measures for x in m["fto_s"]], 0.5),
        "pause_median_s": _q([x for m in measures for x in m["pauses_s"]], 0.5),
        "overlap_median_s": _q([x for m in measures for x in m["overlaps_s"]], 0.5),
        "regular_gap_median_s": _q(reg, 0.5), "regular_gap_iqr_s": _q(reg, 0.75) - _q(reg, 0.25),
        "interruption_rate": ints / n_changes if n_changes else float("nan"),
        "backchannels": bcs, "utterances": utts,
        "backchannel_share": bcs / (bcs + utts) if bcs + utts else float("nan"),
        "target_gap_mean_s": mu, "target_gap_iqr_s": 1.349 * sd if sd else float("nan"),
        "target_interruption_prob": targets.get("interruption_prob"),
    }


def format_summary(summary: dict) -> str:
    """The summary as a few aligned lines for the end of `tandem synth`."""
    s = summary
    if not s.get("dialogues"):
        return "synth turn-taking: no dialogues"

    def ms(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{1000 * x:+.0f} ms"

    def pct(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    lines = [
        format_per_minute(s["per_minute"]),
        (f"  over {s['dialogues']} dialogues: floor-transfer offset median {ms(s['fto_median_s'])}, "
         f"pause median {ms(s['pause_median_s'])}, overlap median {ms(s['overlap_median_s'])}"),
        (f"  backchannels {s['backchannels_per_minute']:.1f} per minute ({pct(s['backchannel_share'])} of "
         f"utterances; Switchboard ~19%)"),
        (f"  speaker changes {s['speaker_changes']}: drawn gap median {ms(s['regular_gap_median_s'])} "
         f"(target {ms(s['target_gap_mean_s'])}), IQR {ms(s['regular_gap_iqr_s'])} "
         f"(target {ms(s['target_gap_iqr_s'])}), interruptions {pct(s['interruption_rate'])} "
         f"(target {pct(s['target_interruption_prob'])})"),
    ]
    return "\n".join(lines)
