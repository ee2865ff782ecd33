"""Per-stage figures of a run: items in/out, rejected, seconds, real-time factor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---- per-stage figures ----------------------------------------------------------------------------

@dataclass
class StageRow:
    stage: str
    items_in: int = 0
    items_out: int = 0
    rejected: int = 0  # whole items this stage rejected
    rejections: int = 0  # rejection rows naming this stage (whole items and single examples)
    seconds: float = 0.0
    audio_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        rtf = self.seconds / self.audio_s if self.audio_s > 0 else None
        return {"stage": self.stage, "items_in": self.items_in, "items_out": self.items_out,
                "rejected": self.rejected, "rejections": self.rejections,
                "seconds": round(self.seconds, 4), "audio_s": round(self.audio_s, 3),
                "rtf": None if rtf is None else round(rtf, 5)}


class StageTable:
    """Aggregates per-stage figures from finished items' `timings` and `rejections`.

    Under Ray the stage objects live in workers, so their counters never reach the driver; the
    item itself carries what each stage did to it.
    """

    def __init__(self, stage_names: list[str]):
        self.order = list(stage_names)
        self.rows = {n: StageRow(n) for n in self.order}

    def _row(self, name: str) -> StageRow:
        if name not in self.rows:
            self.rows[name] = StageRow(name)
            self.order.append(name)
        return self.rows[name]

    def add(self, item: dict) -> None:
        timings = item.get("timings") or {}
        last = None
        for name in self.order:
            t = timings.get(name)
            if t is None:
                continue
            row = self.rows[name]
            row.items_in += 1
            row.items_out += 1
            row.seconds += float(t.get("seconds") or 0.0)
            row.audio_s += float(t.get("audio_s") or 0.0)
            last = row
        if item.get("status") == "rejected" and last is not None:
            # a rejected item passes later stages untouched: the last stage that timed it rejected it
            last.items_out -= 1
            last.rejected += 1
        for r in item.get("rejections") or []:
            self._row(r.get("stage") or "unknown").rejections += 1

    def as_list(self) -> list[dict]:
        return [self.rows[n].as_dict() for n in self.order]


def format_stage_table(rows: list[dict], title: str = "stages") -> Any:
    from rich.table import Table
    t = Table(title=title)
    for col in ("stage", "items in", "items out", "rejected", "rejections", "seconds", "audio s", "RTF"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for r in rows:
        t.add_row(r["stage"], str(r["items_in"]), str(r["items_out"]), str(r["rejected"]),
                  str(r["rejections"]), f"{r['seconds']:.2f}", f"{r['audio_s']:.1f}",
                  "-" if r["rtf"] is None else f"{r['rtf']:.4f}")
    return t
