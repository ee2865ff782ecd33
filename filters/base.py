"""The filter interface: `measure` computes metrics (models allowed), `decide` judges stored metrics.

Splitting the two is what lets `tandem filter OUT --config new.yaml` re-decide every example from
the metrics kept in its row, without loading a model. A decision that rejects names the filter, a
short machine-readable reason, a human-readable detail and the numbers behind it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from pipelines.core.contracts import rejection_row

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

    def check(self) -> None:
        """Driver-side: raise ModelMissing for a model this filter needs and cannot find."""

    def setup(self, threads: int = 1) -> None:
        """Load models once per worker, before the first example."""

    def measure(self, example: dict, audio: np.ndarray | None,
                regions: list[list[tuple[float, float]]] | None = None) -> dict[str, float]:
        """Metrics of one example; audio is float32 [channels, T] at example['sample_rate'];
        `regions`: per channel, the speech regions curation already found (None: not known)."""
        raise NotImplementedError

    def columns(self, metrics: dict, example: dict) -> None:
        """Set the example's typed columns this filter owns from its metrics (default: none)."""

    def decide(self, metrics: dict, example: dict) -> Decision:
        """Keep or reject from `metrics` alone (plus the example's metadata), by this filter's thresholds."""
        raise NotImplementedError


# A threshold: a number, {real: x, synthetic: y} per kind of data, or {default: x, <lang>: y}.
Threshold = float | dict
KINDS = ("real", "synthetic")


def filter_section(cfg: dict | None, name: str) -> dict[str, Any]:
    """filters.<name> with its YAML defaults under whatever `cfg` sets (key by key)."""
    from pipelines.core.config import section
    defaults = section({}, "filters").get(name)
    if defaults is None:
        raise KeyError(f"config filters.{name}: no such filter section in pipelines/core/defaults/30_filters.yaml")
    return {**defaults, **(section(cfg or {}, "filters").get(name) or {})}


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


def threshold(value: Any, key: str, kind: str | None, language: str | None = None) -> float:
    """The number `value` gives for this kind and language; a missing one is an error naming `key`
    (a NaN threshold would let every example through unchecked)."""
    v = per_kind(value, kind, language)
    if v is None or isinstance(v, bool):
        where = f"{kind} data" + (f" in {language}" if language else "")
        raise ValueError(f"config {key}: no threshold for {where} (got {value!r}); set a number, "
                         "or a `default` in its per-kind/per-language map")
    return float(v)


P = TypeVar("P")


class FilterParams:
    """Base of a filter's typed parameters: a frozen dataclass named after its config section."""

    section: typing.ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: dict):
        return build_params(cls, filter_section(cfg, cls.section), f"filters.{cls.section}")


def build_params(cls: type[P], sec: dict, where: str) -> P:
    """Dataclass `cls` from a filter's config section (pipelines/core/typed.py: every field there,
    typed, not null); each Threshold must also resolve for every kind of data."""
    from pipelines.core.typed import from_dict
    p = from_dict(cls, sec, where, unknown="ignore")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and hints[f.name] == Threshold:
            for kind in KINDS:
                threshold(getattr(p, f.name), f"{where}.{f.name}", kind)
    return p


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


def finite_number(v) -> bool:
    """`v` reads as a finite float (None, NaN, inf, text that is no number: False)."""
    try:
        return v is not None and finite(float(v))
    except (TypeError, ValueError):
        return False


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
