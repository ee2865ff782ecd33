"""A stage: typed parameters in __init__, model loaded once per worker in setup(), a pure call per item.

As NeMo Curator writes them: a stage takes typed constructor parameters (built from the job
config by `from_config`, the only place that reads the config), declares its resources, checks
its models on the driver in `check()` so a missing model fails the job at start, and loads them
eagerly in `setup()` once per worker.

Items are plain dicts (the work item of one source or one dialogue). A stage reads and writes
named keys; an item that a previous stage rejected passes through untouched. An exception inside
`process` becomes a rejection naming the stage and the reason, and the job goes on.
The same class runs in a unit test (`stage.run_items([...])`) and as a Ray Data actor pool.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field

from tandem.pipelines.core.contracts import rejection_row


@dataclass
class Resources:
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    concurrency: int = 1
    batch_size: int = 1
    threads: int = 2

    @classmethod
    def for_stage(cls, cfg: dict, name: str) -> Resources:
        res = cfg.get("resources", {})
        merged = dict(res.get("default_stage", {}))
        merged.update((res.get("stages") or {}).get(name, {}))
        return cls(**{k: v for k, v in merged.items() if k in cls.__dataclass_fields__})


@dataclass
class Counters:
    items_in: int = 0
    items_out: int = 0
    rejected: int = 0
    errors: int = 0
    seconds: float = 0.0
    audio_s: float = 0.0  # seconds of audio this stage processed
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Stage:
    name: str = "stage"
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # stages with a model set this, so the runner gives them an actor pool
    uses_model: bool = False

    def __init__(self, cfg: dict | None = None, *, resources: Resources | None = None):
        # `cfg` is the legacy form: stages not yet given typed parameters read it in setup()
        if cfg is not None:
            self.cfg = cfg
        if resources is None:
            resources = Resources.for_stage(cfg, self.name) if cfg is not None else Resources()
        self.resources = resources
        self.counters = Counters()
        self._ready = False

    # -- to override ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: dict) -> Stage:
        """The stage with its typed parameters read from a job config (its own section only)."""
        return cls(cfg)

    def check(self) -> None:
        """Driver-side, before the job starts: raise ModelMissing (saying how to provide it) for a
        model this stage needs and cannot find, so a bad setup fails the job, not every item."""

    def setup(self) -> None:
        """Load models eagerly; called once per worker, before the first item."""

    def process(self, item: dict) -> dict:
        raise NotImplementedError

    # -- machinery -----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return "cuda" if self.resources.num_gpus > 0 else "cpu"

    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    def __call__(self, item: dict) -> dict:
        self.ensure_setup()
        c = self.counters
        c.items_in += 1
        if item.get("status") == "rejected":
            return item
        missing = [k for k in self.reads if k not in item]
        if missing:
            raise KeyError(f"stage {self.name}: item lacks {missing} (wrong stage order?)")
        t0 = time.perf_counter()
        try:
            item = self.process(item)
        except Exception as e:  # noqa: BLE001 - a bad input must not stop the job
            c.errors += 1
            reject(item, stage=self.name, reason="stage_error", detail=f"{type(e).__name__}: {e}",
                   trace=traceback.format_exc(limit=3))
        dt = time.perf_counter() - t0
        c.seconds += dt
        c.audio_s += float(item.get("duration_s") or 0.0)
        timing = item.setdefault("timings", {}).setdefault(self.name, {"seconds": 0.0, "audio_s": 0.0})
        timing["seconds"] += dt
        timing["audio_s"] += float(item.get("duration_s") or 0.0)
        if item.get("status") == "rejected":
            c.rejected += 1
        else:
            c.items_out += 1
        return item

    def run_items(self, items: list[dict]) -> list[dict]:
        return [self(it) for it in items]


def reject(item: dict, *, stage: str, reason: str, detail: str = "", filter: str | None = None,
           metrics: dict | None = None, language: str | None = None, trace: str | None = None) -> dict:
    """Mark the whole item rejected and record why; later stages pass it through."""
    item["status"] = "rejected"
    item.setdefault("rejections", []).append(
        rejection_row(
            uri=item.get("uri") or "",
            source_id=item.get("source_id"),
            kind=item.get("kind"),
            stage=stage,
            filter=filter or stage,
            reason=reason,
            detail=detail if not trace else f"{detail}\n{trace}",
            language=language,
            duration_s=float(item.get("duration_s") or 0.0),
            metrics=metrics or {},
            config_hash=item.get("cfg_hash"),
        )
    )
    return item
