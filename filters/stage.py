"""FilterStage: measure every enabled filter on each example, decide, move rejects aside.

Rejected examples leave `item["examples"]` for `item["rejected_examples"]` (audio kept) with one
rejection row each (the first failing filter; the others in its detail). `decide_example` is the
model-free half that `tandem filter` re-runs on stored metrics.
"""

from __future__ import annotations

import json
import math

from filters.base import Decision, Filter, finite_number, first_rejection, rejection_for
from filters.language import LanguageFilter, LanguageParams
from filters.quality import QualityFilter, QualityParams
from filters.trust import TrustFilter, TrustParams
from pipelines.core import spans
from pipelines.core.stage import Resources, Stage
from pipelines.models.asr import AsrParams, build_asr, check_asr
from pipelines.models.cache import ModelsParams

FILTERS = {"quality": QualityFilter, "language": LanguageFilter, "trust": TrustFilter}
PARAMS = {"quality": QualityParams, "language": LanguageParams, "trust": TrustParams}

# quality metric -> example column
COLUMNS = {"q.snr_db": "snr_db", "q.dnsmos_ovrl": "dnsmos_ovrl", "q.clipping": "clipping_ratio",
           "q.bandwidth_hz": "bandwidth_hz"}


def enabled_filters(cfg: dict) -> tuple[str, ...]:
    from pipelines.core.config import section
    names = tuple(section(cfg, "filters")["enabled"] or ())
    for n in names:
        if n not in FILTERS:
            raise ValueError(f"filters.enabled: unknown filter {n!r}; known: {sorted(FILTERS)}")
    return names


def build_filters(cfg: dict, asr=None) -> list[Filter]:
    """The enabled filters with their thresholds from `cfg` (what `tandem filter` re-decides with)."""
    out: list[Filter] = []
    for n in enabled_filters(cfg):
        f = FILTERS[n].from_config(cfg)
        if hasattr(f, "asr"):
            f.asr = asr
        out.append(f)
    return out


def stored_metrics(example: dict) -> dict[str, float]:
    """The metrics of an example row: JSON text as stored in shards, a dict in memory, or
    (key, value) pairs; null (NaN when stored) comes back as NaN."""
    m = example.get("metrics") or {}
    if isinstance(m, str):
        m = json.loads(m)
    elif isinstance(m, list):
        m = dict(m)
    out = {}
    for k, v in m.items():
        try:
            out[k] = math.nan if v is None else float(v)
        except (TypeError, ValueError):
            continue
    return out


def decide_example(example: dict, filters: list[Filter], metrics: dict | None = None) -> list[Decision]:
    """Every filter's decision (`build_filters` at assembly) from stored metrics alone (no model)."""
    m = stored_metrics(example) if metrics is None else metrics
    return [f.decide(m, example) for f in filters if example.get("kind") in f.applies_to]


class FilterStage(Stage):
    """Quality, language and transcript-trust filters over the examples of one item.

    ASR is loaded only when a filter needs it: Whisper's language detection (language.audio_lid:
    true) or a round-trip CER the synthesis job did not compute. Real examples carry the languages
    their transcription found per segment, so by default the stage runs no ASR at all.
    """

    name = "filter"
    reads = ("examples",)
    writes = ("examples", "rejected_examples", "rejections")
    uses_model = True

    def __init__(self, enabled: tuple[str, ...], *, quality: QualityParams | None = None,
                 language: LanguageParams | None = None, trust: TrustParams | None = None,
                 asr: AsrParams | None = None, models: ModelsParams | None = None, resources: Resources | None = None):
        """`asr`: the ASR the filters run (None: none needed); `models`: the model cache."""
        super().__init__(resources=resources)
        given = {"quality": quality, "language": language, "trust": trust}
        missing = [n for n in enabled if given.get(n) is None]
        if missing:
            raise ValueError(f"FilterStage: filters {missing} enabled without their parameters")
        self.enabled = tuple(enabled)
        self.params = {n: given[n] for n in self.enabled}
        self.asr_params = asr
        self.models = models

    @classmethod
    def from_config(cls, cfg: dict) -> FilterStage:
        from pipelines.core.config import section
        enabled = enabled_filters(cfg)
        kw = {n: PARAMS[n].from_config(cfg) for n in enabled}
        # a synthetic example arrives with its round-trip CER unless the synth job skipped that stage
        roundtrip_done = bool(section(cfg, "synth")["roundtrip"]["enabled"])
        needs_asr = ("language" in kw and kw["language"].needs_asr) or \
            ("trust" in kw and kw["trust"].compute_roundtrip and not roundtrip_done)
        return cls(enabled, **kw, asr=AsrParams.from_config(cfg) if needs_asr else None,
                   models=ModelsParams.from_config(cfg), resources=Resources.for_stage(cfg, cls.name))

    def _filters(self, asr=None) -> list[Filter]:
        return [FILTERS[n](self.params[n], asr=asr) for n in self.enabled]

    def check(self) -> None:
        for f in self._filters():
            f.check()
        if self.asr_params is not None:
            check_asr(self.asr_params, self.models)

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        asr = None
        if self.asr_params is not None:
            asr = build_asr(self.asr_params, self.models, device=self.device, threads=self.resources.threads)
        self.filters = self._filters(asr)
        for f in self.filters:
            f.setup(self.resources.threads)

    def measure(self, example: dict, item: dict | None = None) -> dict[str, float]:
        from pipelines.io.audio import decode_flac
        audio = None
        if any(f.needs_audio or getattr(f, "asr", None) is not None for f in self.filters):
            try:
                audio, sr = decode_flac(example["audio"])
            except Exception as e:
                raise ValueError(f"example {example.get('example_id')}: audio does not decode as FLAC ({e})") from e
            example["sample_rate"] = example.get("sample_rate") or sr
        m = stored_metrics(example)
        regions = upstream_regions(example, item or {})
        for f in self.filters:
            if example.get("kind") in f.applies_to:
                m.update(f.measure(example, audio, regions))
        if example.get("kind") == "real" and regions:
            # measured, never decided on: the report and `tandem curate` pool them
            m.update(turn_metrics(regions))
        return m

    def process(self, item: dict) -> dict:
        kept, rejected = [], list(item.get("rejected_examples") or [])
        rejections = item.setdefault("rejections", [])
        extra = self.counters.extra
        for ex in item.get("examples") or []:
            m = self.measure(ex, item)
            decisions = decide_example(ex, self.filters, m)
            fill_columns(ex, m, self.filters)
            d = first_rejection(decisions)
            if d is None:
                kept.append(ex)
                extra["kept"] = extra.get("kept", 0) + 1
                continue
            rejected.append(ex)
            key = f"rejected_{d.reason}"
            extra[key] = extra.get(key, 0) + 1
            rejections.append(rejection_for(ex, d, uri=item.get("uri") or "", also=decisions,
                                            config_hash=ex.get("config_hash")))
        item["examples"] = kept
        item["rejected_examples"] = rejected
        return item


def fill_columns(example: dict, metrics: dict, filters: list[Filter]) -> None:
    """Quality columns and LID columns from the metrics; the full map into `metrics`."""
    for k, col in COLUMNS.items():
        if k in metrics:
            example[col] = metrics[k]
    if "q.speech_ratio" in metrics and not finite_number(example.get("speech_ratio")):
        example["speech_ratio"] = metrics["q.speech_ratio"]
    if "t.roundtrip_cer" in metrics and not finite_number(example.get("roundtrip_cer")):
        example["roundtrip_cer"] = metrics["t.roundtrip_cer"]
    for f in filters:
        f.columns(metrics, example)
    example["metrics"] = {k: float(v) for k, v in metrics.items()}


def turn_metrics(regions: list[list[tuple[float, float]]]) -> dict[str, float]:
    """`tt.*`: Moshi's turn-taking totals (s) of one real example from what each channel carries
    (pipelines/core/turntaking.py's measure on the channels' speech regions): the words alone lose the
    overlap, as Whisper writes one voice where two talk."""
    from pipelines.core.turntaking import measure
    t = measure([{"channel": c, "start_s": s, "end_s": e} for c, rs in enumerate(regions) for s, e in rs])
    return {f"tt.{k}": float(t[k]) for k in ("span_s", "ipu_s", "pause_s", "gap_s", "overlap_s")}


def upstream_regions(example: dict, item: dict) -> list[list[tuple[float, float]]] | None:
    """Per channel of a real example, the speech regions (example time) the curation VAD found,
    restricted to what assembly put on that channel: for a two-channel source that channel's own
    VAD; for a mono one the VAD of the file within the turns and words of the channel's
    speakers (channel 0 the main speaker, as assembly masks them). None when the item carries no
    VAD (synthetic examples): the quality filter then runs its own."""
    speech = item.get("speech")
    if speech is None or example.get("kind") != "real":
        return None
    p = example.get("params") or {}
    p = json.loads(p) if isinstance(p, str) else p
    if "span" not in p:
        return None
    t0, t1 = (float(v) for v in p["span"])
    if p.get("two_channel"):
        per = [[tuple(r) for r in item["speech_ch"][c]] for c in (0, 1)]
    else:
        main = p["main_speaker"]
        own: list[list[tuple[float, float]]] = [[], []]
        for t in item.get("turns") or []:
            own[0 if t["speaker"] == main else 1].append((t["start_s"], t["end_s"]))
        for w in example.get("words") or []:
            own[int(w["channel"])].append((w["start_s"] + t0, w["end_s"] + t0))
        per = [spans.intersect([tuple(r) for r in speech], sp) for sp in own]
    return [[(max(s, t0) - t0, min(e, t1) - t0) for s, e in rs if e > t0 and s < t1] for rs in per]
