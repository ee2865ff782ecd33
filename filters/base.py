"""The filter interface: `measure` computes metrics (models allowed), `decide` judges stored metrics.

Splitting the two is what lets `tandem filter OUT --config new.yaml` re-decide every example from
the metrics kept in its row, without loading a model. A decision that rejects names the filter, a
short machine-readable reason, a human-readable detail and the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tandem.pipelines.core.contracts import rejection_row

NAN = float("nan")


@dataclass
class Decision:
    keep: bool
    filter: str = ""
    reason: str = ""
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    language: str | None = None  # language as detected, when the filter knows it

    @classmethod
    def ok(cls, filter: str = "") -> Decision:
        return cls(True, filter)

    @classmethod
    def reject(cls, filter: str, reason: str, detail: str, metrics: dict | None = None,
               language: str | None = None) -> Decision:
        return cls(False, filter, reason, detail, dict(metrics or {}), language)


class Filter:
    """One filter. Subclasses set `name`, `applies_to`, and implement measure/decide."""

    name: str = "filter"
    applies_to: tuple[str, ...] = ("real", "synthetic")
    # measure() needs the decoded audio (False: works on text/metadata only)
    needs_audio: bool = True

    def measure(self, example: dict, audio: np.ndarray | None) -> dict[str, float]:
        """Metrics of one example; audio is float32 [channels, T] at example['sample_rate']."""
        raise NotImplementedError

    def decide(self, metrics: dict, example: dict, cfg: dict) -> Decision:
        """Keep or reject from `metrics` alone (plus the example's metadata); `cfg` is the full config."""
        raise NotImplementedError


def section(cfg: dict, name: str) -> dict:
    """cfg['filters'][name], or {} when absent."""
    return ((cfg or {}).get("filters") or {}).get(name) or {}


def per_kind(value: Any, kind: str | None, language: str | None = None) -> Any:
    """A threshold that may be a scalar, {real: x, synthetic: y}, or {default: x, <lang>: y}."""
    if isinstance(value, dict):
        for key in (kind, language):
            if key is not None and key in value:
                return per_kind(value[key], kind, language)
        if "default" in value:
            return per_kind(value["default"], kind, language)
        return None
    return value


def num(metrics: dict, key: str) -> float:
    """A stored metric as float; NaN when missing (not measured)."""
    v = metrics.get(key)
    if v is None:
        return NAN
    try:
        return float(v)
    except (TypeError, ValueError):
        return NAN


def finite(x: float) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def fmt(x: float, nd: int = 3) -> str:
    return "nan" if not finite(x) else f"{x:.{nd}g}"


def first_rejection(decisions: Iterable[Decision]) -> Decision | None:
    for d in decisions:
        if not d.keep:
            return d
    return None


def rejection_for(example: dict, decision: Decision, *, uri: str, stage: str = "filter",
                  also: list[Decision] | None = None, metrics: dict | None = None, **extra: Any) -> dict:
    """A REJECTION_SCHEMA row for an example rejected by `decision` (other failed checks in the detail)."""
    detail = decision.detail
    others = [d for d in (also or []) if d is not decision and not d.keep]
    if others:
        detail += " | also: " + "; ".join(f"{d.filter}:{d.reason}" for d in others)
    m = dict(metrics if metrics is not None else decision.metrics)
    sids = example.get("source_ids") or []
    return rejection_row(
        uri=uri or "", source_id=sids[0] if sids else None, example_id=example.get("example_id"),
        kind=example.get("kind"), stage=stage, filter=decision.filter, reason=decision.reason,
        detail=detail, language=decision.language or example.get("lid_language") or example.get("language"),
        duration_s=float(example.get("duration_s") or 0.0),
        metrics={k: float(v) for k, v in m.items() if _isnum(v)}, **extra)


def _isnum(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
