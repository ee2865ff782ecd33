"""A stage: typed parameters in __init__, model loaded once per worker in setup(), a pure call per item.

As NeMo Curator writes them: a stage takes typed constructor parameters (built from the job
config by `from_config`, the only place that reads the config), declares its resources, checks
its models on the driver in `check()` so a missing model fails the job at start, and loads them
eagerly in `setup()` once per worker.

Items are plain dicts (the work item of one source or one dialogue) whose keys and types
pipelines/core/item.py declares; a stage's `reads` must be present before it runs and its
`writes` present and typed after (else a bug: the item is retried). An item that a previous stage rejected passes through untouched. An `InputError`
raised inside `process` (the input's own fault: undecodable, empty, no speech ...) becomes a
rejection naming the stage and its reason; any other exception is a failure of the stage (a bug,
or the infrastructure): the item is handed on as `retry`, never committed, and the next run
retries it. A bug is never recorded as the data's fault.
The same class runs in a unit test (`stage.run_items([...])`) and as a Ray Data actor pool.
"""

from __future__ import annotations

import dataclasses
import errno
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.core import attempts
from pipelines.core import item as item_contract
from pipelines.core.contracts import rejection_row

# A model stage's worker may die on an item this many times before the item is quarantined.
QUARANTINE_AFTER = 3


class InputError(ValueError):
    """The input itself cannot be used (undecodable, empty, too short, no speech, off-language ...):
    the only exception a stage turns into a rejection. `reason` is the rejection's reason code."""

    def __init__(self, message: str, reason: str = "bad_input"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keeps `reason` across pickling (Ray moves exceptions between processes)
        return (type(self), (str(self), self.reason))


class TransientError(RuntimeError):
    """A failure of the infrastructure, not of the input: retried, never a rejection of the data."""


class ModelMissing(TransientError):
    """A model a stage needs is not available; the message says how to provide it."""


def is_transient(e: BaseException) -> bool:
    """Out of memory (host or CUDA), a missing model, a lost connection, a full or failing disk."""
    if isinstance(e, (TransientError, MemoryError, ConnectionError, TimeoutError)):
        return True
    if type(e).__name__ == "OutOfMemoryError" or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower()):
        return True  # torch.cuda.OutOfMemoryError, and CUDA/cuDNN OOM raised as RuntimeError
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EIO, errno.ENOMEM, errno.EAGAIN)


def _free_memory() -> None:
    import gc
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


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
    # in-process retries of an item that failed transiently, before it is handed back as `retry`
    transient_retries: int = 2
    # the run this stage works for (set by the runner): an attempt marker left by another run is a
    # job that ended (driver killed, cancelled), not a worker that died on the input
    attempt_run: str | None = None
    # what the stage asks for when built in code; from_config overrides it from resources.stages.<name>
    default_resources: Resources = Resources()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # a job's own keys (the tests' toy job) travel with its stage classes
        item_contract.declare(**getattr(cls, "item_fields", {}))
        item_contract.check_declared(cls.__name__, tuple(cls.reads) + tuple(cls.writes))

    def __init__(self, *, resources: Resources | None = None):
        # a stage never holds the job's config: from_config reads its parameters and resources
        if resources is None:
            resources = dataclasses.replace(self.default_resources)
        # the one source of what an engine asks for (Ray actors and tasks, the local runner's threads)
        self.resources = resources
        self.counters = Counters()
        self._ready = False

    # -- to override ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: dict) -> Stage:
        """The stage with its typed parameters read from a job config (its own section only); a
        stage without parameters gets its resources (`resources.stages.<name>`) and nothing else."""
        return cls(resources=Resources.for_stage(cfg, cls.name))

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
            # again where the class was rebuilt from a pickle (cloudpickle fills a by-value class
            # after __init_subclass__ ran on its empty skeleton)
            item_contract.declare(**getattr(type(self), "item_fields", {}))
            self.setup()
            self._ready = True

    def _attempt_file(self, item: dict) -> Path | None:
        """Marker of this stage's attempt at an item, kept until the attempt returns: a worker
        killed mid-item leaves it behind, so its deaths on that input are seen (pipelines.core.attempts)."""
        if not (self.uses_model and item.get("out_dir") and item.get("work_key")):
            return None
        return Path(item["out_dir"]) / "_attempts" / f"{item['work_key']}.{self.name}"

    def __call__(self, item: dict) -> dict:
        self.ensure_setup()
        c = self.counters
        c.items_in += 1
        if item.get("status") in ("rejected", "retry"):
            return item
        missing = [k for k in self.reads if k not in item]
        if missing:
            raise KeyError(f"stage {self.name}: item lacks {missing} (wrong stage order?)")
        t0 = time.perf_counter()
        marker = self._attempt_file(item)
        deaths = attempts.enter(marker, self.attempt_run) if marker is not None else []
        if len(deaths) >= QUARANTINE_AFTER:
            reject(item, stage=self.name, reason="quarantined",
                   detail=f"{item.get('uri')}: the {self.name} worker died {len(deaths)} times on this input "
                          f"({attempts.describe(deaths)})")
            marker.unlink(missing_ok=True)
        else:
            item = self._process_with_retries(item)
            if marker is not None:
                marker.unlink(missing_ok=True)
        dt = time.perf_counter() - t0
        c.seconds += dt
        c.audio_s += float(item.get("duration_s") or 0.0)
        timing = item.setdefault("timings", {}).setdefault(self.name, {"seconds": 0.0, "audio_s": 0.0})
        timing["seconds"] += dt
        timing["audio_s"] += float(item.get("duration_s") or 0.0)
        if item.get("status") == "rejected":
            c.rejected += 1
        elif item.get("status") == "retry":
            c.extra["retry"] = c.extra.get("retry", 0) + 1
        else:
            c.items_out += 1
        return item

    def _process_with_retries(self, item: dict) -> dict:
        c = self.counters
        for attempt in range(self.transient_retries + 1):
            try:
                out = self.process(item)
                if out.get("status") == "ok":
                    item_contract.check_writes(self.name, self.writes, out)
                return out
            except InputError as e:  # the input's fault, and only then: a rejection
                return reject(item, stage=self.name, reason=e.reason, detail=str(e))
            except Exception as e:  # noqa: BLE001 - a failing stage must not stop the job
                c.errors += 1
                detail = f"{type(e).__name__}: {e}"
                transient = is_transient(e)
                if transient and attempt < self.transient_retries:
                    c.extra["transient_retries"] = c.extra.get("transient_retries", 0) + 1
                    _free_memory()
                    continue
                # not the data's fault (a bug, or the infrastructure): left uncommitted, so the
                # next run retries it; a bug is not retried in place, it would fail the same way
                item["status"] = "retry"
                item["retry"] = {"stage": self.name, "reason": type(e).__name__, "detail": detail,
                                 "kind": "transient" if transient else "error"}
                if not transient:
                    c.extra["stage_errors"] = c.extra.get("stage_errors", 0) + 1
                    item["retry"]["trace"] = traceback.format_exc(limit=-3)
                return item
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
