"""Turn-taking of curated real conversation: synth/turntaking.py's measurement (Moshi's IPU, pause,
gap and overlap seconds per minute, on each channel's words) over accepted real examples, next to
Fisher's figures. Overlap near zero on real calls means curation is losing overlapped speech."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tandem.synth.turntaking import FISHER, format_per_minute, measure, per_minute

# Overlap under this share of Fisher's is flagged: real two-party speech always holds some.
LOW_OVERLAP_SHARE = 0.25


def real_turn_taking(word_lists: Iterable[list[dict]]) -> dict:
    """Per-minute figures pooled over examples (each a list of words {channel, start_s, end_s})."""
    ms = [m for m in (measure(list(ws)) for ws in word_lists if ws) if m["span_s"] > 0]
    return {"dialogues": len(ms), "per_minute": per_minute(ms), "fisher": FISHER,
            "overlaps": sum(len(m["overlaps_s"]) for m in ms)}


def curated_turn_taking(out_dir: str | Path) -> dict:
    """real_turn_taking over the accepted real examples committed in `out_dir` (words only read)."""
    from tandem.pipelines.io.files import iter_rows
    from tandem.pipelines.store.commit import file_records
    paths = [Path(out_dir) / r["path"] for r in file_records(out_dir) if r["kind"] == "shards"]
    return real_turn_taking(r["words"] for r in iter_rows(paths, columns=["kind", "words"]) if r["kind"] == "real")


def format_real(tt: dict) -> str:
    if not tt.get("dialogues"):
        return "turn-taking of curated real conversation: no accepted real examples"
    pm = tt["per_minute"]
    lines = [f"curated real conversation, {tt['dialogues']} accepted examples:",
             format_per_minute(pm, label="curated")]
    if pm["overlap"] < LOW_OVERLAP_SHARE * FISHER["overlap"]:
        lines.append(f"  overlap {pm['overlap']:.2f} s per minute, under {LOW_OVERLAP_SHARE:.0%} of Fisher's: "
                     "overlapped speech may be lost (one voice per channel where both talk)")
    return "\n".join(lines)
