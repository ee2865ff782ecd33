"""The `synth` config section as typed parameters, defaults from pipelines/core/defaults/20_synth.yaml only.

`synth_section(cfg)` merges the job's `synth` settings over the YAML defaults at every depth, so a
partial override (a test's `{"timeline": {"gap_mean_s": 0.3}}`) keeps the other documented
values. `from_dict` fills a dataclass from one sub-section: a key the dataclass needs and the
section lacks, or a key it does not know, is an error naming it, never a silent default.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from pipelines.core.config import section


def _deep(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _deep(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) and out[k] else v
    return out


def synth_section(cfg: dict) -> dict[str, Any]:
    """The job's `synth` section over its YAML defaults (nested keys merged, not replaced)."""
    return _deep(section({}, "synth"), cfg.get("synth") or {})


def from_dict(cls: type, d: dict, where: str):
    """Dataclass `cls` from mapping `d` (a config sub-section named `where` in messages)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise KeyError(f"config {where}: unknown key(s) {unknown} (known: {sorted(names)})")
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            raise KeyError(f"config {where}.{f.name}: missing (no default in pipelines/core/defaults)")
        v, t = d[f.name], hints[f.name]
        if t in (int, float, str, bool):
            if v is None:
                raise ValueError(f"config {where}.{f.name}: must be set (got null)")
            v = t(v)
        elif typing.get_origin(t) is tuple:
            v = tuple(float(x) for x in v)
            if len(v) != 2 or v[0] > v[1]:
                raise ValueError(f"config {where}.{f.name}: expected a [low, high] range, got {d[f.name]}")
        kw[f.name] = v
    return cls(**kw)


Range = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class TimelineParams:
    """`synth.timeline` (meanings in 20_synth.yaml)."""

    lead_in_s: Range
    tail_s: float
    gap_mean_s: float
    gap_std_s: float
    gap_min_s: float
    gap_max_s: float
    max_overlap_frac: float
    pause_median_s: float
    pause_sigma: float
    pause_min_s: float
    pause_max_s: float
    backchannel_prob: float
    backchannel_delay_s: Range
    backchannel_overlap_prob: float
    backchannel_at: Range
    interruption_prob: float
    interruption_min_words: int
    interruption_at: Range
    interruption_reaction_s: Range

    @classmethod
    def from_config(cls, cfg: dict) -> TimelineParams:
        return from_dict(cls, synth_section(cfg)["timeline"], "synth.timeline")

    def replace(self, **kw) -> TimelineParams:
        return dataclasses.replace(self, **kw)
