"""Turn-taking of curated real conversation: pipelines/core/turntaking.py's measurement (Moshi's IPU, pause,
gap and overlap seconds per minute) over accepted real examples, next to Fisher's figures, on what
each channel carries (the filter stage's `tt.*` metrics). Overlap near zero on real calls means
curation is losing overlapped speech."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pipelines.core.turntaking import FISHER, format_per_minute, measure, per_minute

# Overlap under this share of Fisher's is flagged: real two-party speech always holds some.
LOW_OVERLAP_SHARE = 0.25


KEYS_S = ("span_s", "ipu_s", "pause_s", "gap_s", "overlap_s")


def example_measure(row: dict) -> dict | None:
    """One accepted real example's turn-taking totals: the filter stage's `tt.*` metrics (what each
    channel's audio carries), else measured on its words (older outputs; loses overlap)."""
    m = row.get("metrics") or {}
    m = json.loads(m) if isinstance(m, str) else m
    if all(m.get(f"tt.{k}") is not None for k in KEYS_S):
        return {k: float(m[f"tt.{k}"]) for k in KEYS_S} | {"source": "channels"}
    return measure(list(row["words"])) | {"source": "words"} if row.get("words") else None


def real_turn_taking(rows: Iterable[dict]) -> dict:
    """Per-minute figures pooled over example rows ({metrics, words})."""
    ms = [m for m in map(example_measure, rows) if m and m["span_s"] > 0]
    return {"dialogues": len(ms), "per_minute": per_minute(ms), "fisher": FISHER,
            "measured_on": sorted({m["source"] for m in ms})}


def curated_turn_taking(out_dir: str | Path) -> dict:
    """real_turn_taking over the accepted real examples committed in `out_dir` (audio never read)."""
    from pipelines.io.files import iter_rows
    from pipelines.store.commit import file_records
    paths = [Path(out_dir) / r["path"] for r in file_records(out_dir) if r["kind"] == "shards"]
    return real_turn_taking(r for r in iter_rows(paths, columns=["kind", "metrics", "words"]) if r["kind"] == "real")


def format_real(tt: dict) -> str:
    if not tt.get("dialogues"):
        return "turn-taking of curated real conversation: no accepted real examples"
    pm = tt["per_minute"]
    on = " and ".join(tt.get("measured_on") or ["words"])
    lines = [f"curated real conversation, {tt['dialogues']} accepted examples (measured on {on}):",
             format_per_minute(pm, label="curated")]
    if pm["overlap"] < LOW_OVERLAP_SHARE * FISHER["overlap"]:
        lines.append(f"  overlap {pm['overlap']:.2f} s per minute, under {LOW_OVERLAP_SHARE:.0%} of Fisher's: "
                     "overlapped speech may be lost (one voice per channel where both talk)")
    return "\n".join(lines)
