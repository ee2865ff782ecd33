"""What `tandem synth` prints at the end: the turn-taking of the dialogues it made, measured with
Moshi's definitions (pipelines/core/turntaking.py) on their rendered audio (per-channel VAD, before the
augmentation adds echo and noise: synth/audiotiming.py) next to the planned figures (their words),
the augmented audio's and Fisher's; how the words sit on the audio; and the speaker-change offsets
against the configured targets."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
from synth.audiotiming import error_table
from pipelines.core.turntaking import FISHER, KEYS, per_minute


def _q(x: list[float], q: float) -> float:
    return float(np.quantile(x, q)) if x else float("nan")


def summarize(example_rows: Iterable[dict]) -> dict:
    """Turn-taking over example rows (reads only `params`): per-minute figures, event lengths and
    the configured targets."""
    offs, reg, ints, n_changes = [], [], 0, 0
    bcs = utts = 0
    targets: dict = {}
    measures: list[dict] = []
    planned: list[dict] = []
    augmented: list[dict] = []
    word_audio: list[dict] = []
    word_vad: list[dict] = []
    labels: dict[str, float] = {}
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
            planned.append(p["turn_taking"])
        # the audio's figures; examples made before they were measured count by their words
        heard = p.get("turn_taking_audio") or p.get("turn_taking")
        if heard:
            measures.append(heard)
            augmented.append(p.get("turn_taking_augmented") or heard)
        if p.get("word_audio"):
            word_audio.append(p["word_audio"])
            word_vad.append(p["word_vad"])
        for lab in p.get("audio_labels") or []:
            labels[lab["label"]] = labels.get(lab["label"], 0.0) + lab["end_s"] - lab["start_s"]
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
        "per_minute_planned": per_minute(planned), "per_minute_augmented": per_minute(augmented),
        "word_audio": error_table(word_audio) if word_audio else None,
        "word_vad": error_table(word_vad) if word_vad else None, "audio_labels_s": labels,
        "backchannels_per_minute": bcs / pm["minutes"] if pm["minutes"] else float("nan"),
        "fto_median_s": _q([x for m in measures for x in m.get("fto_s", [])], 0.5),
        "pause_median_s": _q([x for m in measures for x in m.get("pauses_s", [])], 0.5),
        "overlap_median_s": _q([x for m in measures for x in m.get("overlaps_s", [])], 0.5),
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
        format_columns(s),
        (f"  over {s['dialogues']} dialogues: floor-transfer offset median {ms(s['fto_median_s'])}, "
         f"pause median {ms(s['pause_median_s'])}, overlap median {ms(s['overlap_median_s'])}"),
        (f"  backchannels {s['backchannels_per_minute']:.1f} per minute ({pct(s['backchannel_share'])} of "
         f"utterances; Switchboard ~19%)"),
        (f"  speaker changes {s['speaker_changes']}: drawn gap median {ms(s['regular_gap_median_s'])} "
         f"(target {ms(s['target_gap_mean_s'])}), IQR {ms(s['regular_gap_iqr_s'])} "
         f"(target {ms(s['target_gap_iqr_s'])}), interruptions {pct(s['interruption_rate'])} "
         f"(target {pct(s['target_interruption_prob'])})"),
    ]
    for key, what in (("word_audio", "sound"), ("word_vad", "VAD")):
        wa = s.get(key)
        if wa and wa["ipus"]:
            lines.append(f"  words vs {what} ({wa['ipus']} IPUs, {what} minus words): start mean "
                         f"{ms(wa['start_mean_s'])}, |err| mean {ms(wa['start_abs_mean_s'])} p95 "
                         f"{ms(wa['start_abs_p95_s'])}; end mean {ms(wa['end_mean_s'])}, |err| mean "
                         f"{ms(wa['end_abs_mean_s'])} p95 {ms(wa['end_abs_p95_s'])}; {what} outside words "
                         f"{wa['outside_words_s']:.1f} s, {wa['unheard_ipus']} IPUs unheard")
    if s.get("audio_labels_s"):
        lines.append("  augmentation audible on channel 1 where its speaker is silent (labelled, not overlap): "
                     + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(s["audio_labels_s"].items())))
    return "\n".join(lines)


def format_columns(s: dict) -> str:
    """Audio (the figure), planned (words) and augmented audio per minute next to Fisher's."""
    pm = s["per_minute"]
    if not pm.get("minutes"):
        return "turn-taking (s per minute): no speech measured"
    cols = [("audio", pm), ("planned", s.get("per_minute_planned") or {}),
            ("augmented", s.get("per_minute_augmented") or {})]
    lines = [(f"turn-taking, s per minute over {pm['minutes']:.1f} min of dialogue (Moshi Table 9 definitions; "
              "audio: silero VAD per channel before augmentation)"),
             "  " + f"{'':8}" + "".join(f" {c:>9}" for c, _ in cols) + f" {'Fisher':>7} {'audio diff':>10}"]
    for k in KEYS:
        vals = "".join(f" {v[k]:9.1f}" if v.get(k) == v.get(k) and k in v else f" {'n/a':>9}" for _, v in cols)
        lines.append(f"  {k:8}{vals} {FISHER[k]:7.1f} {100 * (pm[k] - FISHER[k]) / FISHER[k]:+9.0f}%")
    return "\n".join(lines)
