"""The `synth` config section as typed parameters, defaults from pipelines/core/defaults/20_synth.yaml only.

`synth_section(cfg)` merges the job's `synth` settings over the YAML defaults at every depth, so a
partial override (a test's `{"timeline": {"gap_mean_s": 0.3}}`) keeps the other documented
values. `from_dict` (pipelines/core/typed.py, the converter of every section) fills a dataclass
from one sub-section: a key the dataclass needs and the section lacks, or a key it does not know,
is an error naming it, never a silent default. `SynthSection.from_config(cfg)` types the whole
block once, at job assembly; below it, synthesis reads attributes, never config keys.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pipelines.core.config import section
from pipelines.core.typed import from_dict
from synth.tts.base import TtsParams


def _deep(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _deep(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) and out[k] else v
    return out


def synth_section(cfg: dict) -> dict[str, Any]:
    """The job's `synth` section over its YAML defaults (nested keys merged, not replaced)."""
    return _deep(section({}, "synth"), cfg.get("synth") or {})


Range = tuple[float, float]
IntRange = tuple[int, int]
frozen = dataclasses.dataclass(frozen=True)


@frozen
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


@frozen
class MainVoice:
    """A pinned main-speaker voice (`synth.voices.main.<language>`)."""

    name: str
    pitch: int
    rate: int


@frozen
class VoicesParams:
    """`synth.voices`: bank per language (voice names, or a directory / list of reference clips),
    pitch and rate ranges, the smallest pitch step between speakers, pinned main voices."""

    bank: dict[str, str | tuple[str, ...]]
    pitch: IntRange
    rate: IntRange
    min_pitch_step: int
    main: dict[str, MainVoice]


@frozen
class BuiltinParams:
    """`synth.builtin`: the built-in dialogue generator."""

    turns: IntRange
    sentences_per_turn: IntRange
    three_speakers_prob: float


@frozen
class LlmParams:
    """`synth.llm`: the OpenAI-compatible chat endpoint for "llm" scripts."""

    url: str
    model: str
    temperature: float
    turns: IntRange
    retries: int
    timeout_s: float
    api_key: str | None


@frozen
class GainAug:
    prob: float
    db: Range


@frozen
class NoiseAug:
    prob: float
    snr_db: Range
    color_decay_db: Range


@frozen
class ReverbAug:
    prob: float
    rt60_s: Range
    wet: Range


@frozen
class EchoAug:
    prob: float
    delay_s: Range
    gain_db: Range


@frozen
class BandLimitAug:
    prob: float
    low_hz: Range
    high_hz: Range


AUGMENTATIONS = {"gain": GainAug, "noise": NoiseAug, "reverb": ReverbAug, "echo": EchoAug, "band_limit": BandLimitAug}


def check_augment(cfg: dict) -> None:
    """`synth.augment` must name every augmentation with all its parameters, and nothing else."""
    unknown = sorted(set(cfg) - set(AUGMENTATIONS) - {"enabled"})
    if unknown:
        raise KeyError(f"synth.augment: unknown augmentation(s) {unknown} (have {sorted(AUGMENTATIONS)})")
    for name, kind in AUGMENTATIONS.items():
        if name not in cfg:
            raise KeyError(f"synth.augment.{name}: missing (no default in pipelines/core/defaults)")
        keys = [f.name for f in dataclasses.fields(kind)]
        missing = [k for k in keys if k not in cfg[name]]
        extra = sorted(set(cfg[name]) - set(keys))
        if missing or extra:
            raise KeyError(f"synth.augment.{name}: missing {missing}, unknown {extra}")


@frozen
class AugmentParams:
    """`synth.augment`: the user channel's augmentations, each with its probability and ranges.
    `enabled` is the stage's switch; augment_user_channel applies what it is given."""

    enabled: bool
    gain: GainAug
    noise: NoiseAug
    reverb: ReverbAug
    echo: EchoAug
    band_limit: BandLimitAug

    validate_raw = staticmethod(check_augment)


@frozen
class RoundtripParams:
    """`synth.roundtrip` (RoundTripStage reads its own keys from the section; synthesis needs
    `enabled` and `best_of`, checked here)."""

    enabled: bool
    pad_s: float
    batch_size: int
    pack_sep_s: float | None
    fallback_best_of: int
    best_of: int

    def __post_init__(self):
        if self.fallback_best_of < 1:
            raise ValueError(f"synth.roundtrip.fallback_best_of must be >= 1, got {self.fallback_best_of}")
        if self.best_of < 1:
            raise ValueError(f"synth.roundtrip.best_of must be >= 1, got {self.best_of}")
        if self.best_of > 1 and not self.enabled:
            raise ValueError(f"synth.roundtrip.best_of = {self.best_of} needs synth.roundtrip.enabled: the round "
                             "trip's CER picks the best rendition")


@frozen
class SynthSection:
    """The whole `synth` block, typed."""

    tts: TtsParams
    peak: float
    flac_level: int
    builtin: BuiltinParams
    voices: VoicesParams
    backchannels: dict[str, tuple[str, ...]]  # {language: tokens}; empty: synth/phrasebook.py's
    timeline: TimelineParams
    augment: AugmentParams
    roundtrip: RoundtripParams
    llm: LlmParams

    def __post_init__(self):
        if not 0 <= self.flac_level <= 8:
            raise ValueError(f"synth.flac_level must be a FLAC compression level 0-8, got {self.flac_level}")

    @classmethod
    def from_config(cls, cfg: dict) -> SynthSection:
        return from_dict(cls, synth_section(cfg), "synth")
