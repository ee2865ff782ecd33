"""The job runner: work items through stages (in-process, or on Ray Data) into the atomic writer.

`run_job` records the run, skips work keys an earlier run already committed, runs the stages and
streams finished items into `pipelines.shards.JobWriter`, which commits them in atomic groups and
updates the DuckDB catalog after each commit. A killed driver leaves only committed work visible;
the next run over the same output skips it, so every expected example lands exactly once.

On Ray, each stage is one `map_batches` operator over a dataset of pickled items: stages with a
model run as an actor pool (the stage is set up once per actor), the others as tasks. Requests
come from `resources.stages.<name>` (`pipelines.stage.Resources`) and are checked on the driver
against the cluster before anything starts, because a chain whose requests do not fit stalls
instead of failing (docs/CLUSTER.md). Killed workers are retried by Ray: actors restart, and the
batch they held runs again; items are committed by the driver only, so a retry never duplicates.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import platform
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalogs.catalog import build, catalog_path, ingest_commit, query, refresh_meta
from pipelines import __version__
from pipelines.config import config_hash, config_json
from pipelines.shards import JobWriter, OutputError, manifests, write_run_record
from pipelines.stage import Resources, Stage

# Worker-side environment the driver passes on (model cache dir, test fault injection ...).
FORWARD_ENV_PREFIX = "TANDEM_"
# A task that keeps killing its worker fails the job after this many retries. Actor calls retry
# without limit (Ray Data's default): a node that dies makes every call to its actors fail fast
# ("unavailable") until the cluster declares it dead and restarts them elsewhere, so any finite
# count can run out before the restart.
TASK_RETRIES = 3
VERSIONS_OF = ("ray", "pyarrow", "duckdb", "numpy", "torch", "faster-whisper", "pyannote.audio")


class ResourceFitError(RuntimeError):
    """The stages ask for more than the cluster has; Ray Data would stall instead of failing."""


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


# ---- the run record -------------------------------------------------------------------------------

def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "tandem": __version__}
    for name in VERSIONS_OF:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _write_record(out_dir: Path, record: dict) -> None:
    try:
        write_run_record(out_dir, record)
    except OSError as e:
        raise OutputError(f"cannot write the run record under {out_dir}: {e.strerror or e}") from None


def _catalog_call(out_dir: Path, fn: Callable, *args: Any) -> None:
    """Catalog updates that fail for lack of space or permission are output errors too."""
    import duckdb
    try:
        fn(out_dir, *args)
    except (OSError, duckdb.Error) as e:
        raise OutputError(f"cannot update the catalog {catalog_path(out_dir)}: {e}; committed shards are "
                          f"intact, rebuild the catalog with `tandem catalog build {out_dir}`") from None


def catch_up_catalog(out_dir: Path) -> int:
    """Ingest commits the catalog missed (a driver killed between a commit and its catalog
    update); returns how many. A missing catalog is rebuilt from the shards."""
    ms = manifests(out_dir)
    if not ms:
        return 0
    if not catalog_path(out_dir).exists():
        _catalog_call(out_dir, lambda d: build(d))
        return len(ms)
    _, rows = query(out_dir, "SELECT commit_id FROM commits")
    known = {r[0] for r in rows}
    missing = [m for m in ms if m["commit_id"] not in known]
    for m in missing:
        _catalog_call(out_dir, ingest_commit, m)
    return len(missing)


# ---- stages on the workers -------------------------------------------------------------------------

def _stage_payload(stage: Stage) -> bytes:
    """The stage, configured but not set up, as bytes a worker can rebuild it from."""
    if getattr(stage, "_ready", False):
        raise ValueError(f"stage {stage.name}: already set up on the driver; pass a fresh instance "
                         "(models load once per worker, never on the driver)")
    import cloudpickle
    try:
        return cloudpickle.dumps(("instance", stage))
    except (TypeError, AttributeError, pickle.PicklingError) as e:
        try:
            return cloudpickle.dumps(("class", (type(stage), stage.cfg)))
        except (TypeError, AttributeError, pickle.PicklingError):
            raise TypeError(f"stage {stage.name} ({type(stage).__qualname__}) cannot be sent to Ray "
                            f"workers: {e}") from None


def _build_stage(payload: bytes, threads: int | None = None) -> Stage:
    if threads:
        # torch / CTranslate2 / BLAS start one thread per core unless told the actor's share
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    how, obj = pickle.loads(payload)
    return obj if how == "instance" else obj[0](obj[1])


def _apply(stage: Stage, batch: dict) -> dict:
    import numpy as np
    out = []
    for raw in batch["payload"]:
        out.append(pickle.dumps(stage(pickle.loads(raw)), protocol=5))
    return {"work_key": np.asarray(batch["work_key"]), "payload": np.array(out, dtype=object)}


_TASK_STAGES: dict[bytes, Stage] = {}


def _task_fn(batch: dict, payload: bytes) -> dict:
    """A non-model stage as a Ray task; the built stage is reused by later tasks in this worker."""
    stage = _TASK_STAGES.get(payload)
    if stage is None:
        stage = _TASK_STAGES[payload] = _build_stage(payload)
    return _apply(stage, batch)


class _StageActor:
    """A model stage as an actor: built and set up once, then called batch after batch."""

    def __init__(self, payload: bytes, threads: int):
        self.stage = _build_stage(payload, threads)
        self.stage.ensure_setup()

    def __call__(self, batch: dict) -> dict:
        return _apply(self.stage, batch)


# ---- Ray --------------------------------------------------------------------------------------------

def _forward_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIX)}


def _address_from_argv(argv: list[str] | None) -> str | None:
    argv = list(argv or [])
    for i, a in enumerate(argv):
        if a == "--address" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--address="):
            return a.split("=", 1)[1]
    return None


def init_ray(cfg: dict, address: str | None = None) -> bool:
    """Connect to `address` (or resources.address, or $RAY_ADDRESS) or start a local Ray.

    Returns True when this call initialised Ray (so the caller shuts it down), False when the
    process was already connected (a test fixture, a notebook).
    """
    import ray
    if ray.is_initialized():
        return False
    res = cfg.get("resources", {})
    addr = address or res.get("address") or os.environ.get("RAY_ADDRESS")
    kw = {"log_to_driver": True, "configure_logging": True, "logging_level": "warning"}
    if addr:
        ray.init(address=addr, **kw)
    else:
        ray.init(num_cpus=res.get("num_cpus"), include_dashboard=False, **kw)
    return True


def stage_requests(stages: list[Stage], cfg: dict) -> list[tuple[Stage, Resources]]:
    return [(s, Resources.for_stage(cfg, s.name)) for s in stages]


def check_fit(requests: list[tuple[Stage, Resources]], cluster: dict[str, float],
              node_cpus: list[float] | None = None) -> None:
    """Fail early when the stages' CPU/GPU requests cannot all run at once on this cluster."""
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    need_cpu = sum(r.num_cpus * max(1, r.concurrency) for _, r in requests)
    need_gpu = sum(r.num_gpus * max(1, r.concurrency) for _, r in requests)
    lines = [f"  {s.name}: {r.concurrency} x {r.num_cpus} CPU" + (f", {r.num_gpus} GPU" if r.num_gpus else "")
             for s, r in requests]
    how = ("lower resources.stages.<stage>.num_cpus or .concurrency in the config, or give Ray more "
           "logical CPUs (resources.num_cpus)")
    if need_cpu > cpus + 1e-9:
        raise ResourceFitError(f"the stages ask for {need_cpu:g} CPUs but the Ray cluster has {cpus:g}; "
                               "Ray Data would stall rather than fail.\n" + "\n".join(lines) + f"\nFix: {how}.")
    if need_gpu > gpus + 1e-9:
        raise ResourceFitError(f"the stages ask for {need_gpu:g} GPUs but the Ray cluster has {gpus:g}.\n"
                               + "\n".join(lines) + "\nFix: set num_gpus to 0 for CPU-only runs.")
    if node_cpus:
        biggest = max(node_cpus)
        for s, r in requests:
            if r.num_cpus > biggest + 1e-9:
                raise ResourceFitError(f"stage {s.name} asks {r.num_cpus:g} CPUs per worker but the largest "
                                       f"node has {biggest:g}. Fix: {how}.")


def _run_ray(items: Iterable[dict], stages: list[Stage], cfg: dict, progress: bool) -> Iterator[dict]:
    import ray
    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    requests = stage_requests(stages, cfg)
    node_cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    check_fit(requests, ray.cluster_resources(), node_cpus)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    try:  # model actors hold ~1 GiB each by design; the detector repeats that every 30 s
        ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
    except AttributeError:
        pass
    ctx.enable_operator_progress_bars = bool(progress)
    ctx.print_on_execution_start = bool(progress)

    rows = [{"work_key": it["work_key"], "payload": pickle.dumps(it, protocol=5)} for it in items]
    if not rows:
        return
    biggest_batch = max([r.batch_size for _, r in requests] + [1])
    # small blocks: items stream to the writer as they finish, and a retry redoes little
    blocks = max(1, min(len(rows), 4096, -(-len(rows) // biggest_batch)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    del rows
    env = _forward_env()
    for stage, r in requests:
        payload = _stage_payload(stage)
        common: dict[str, Any] = {"batch_size": max(1, r.batch_size), "batch_format": "numpy",
                                  "num_cpus": r.num_cpus}
        if r.num_gpus:
            common["num_gpus"] = r.num_gpus
        if env:
            common["runtime_env"] = {"env_vars": env}
        with warnings.catch_warnings():
            # retry limits have no named parameter yet; ray_remote_args is the only way in 2.60
            warnings.simplefilter("ignore", DeprecationWarning)
            if stage.uses_model:
                ds = ds.map_batches(_StageActor, fn_constructor_args=(payload, max(1, int(r.threads))),
                                    compute=ActorPoolStrategy(size=max(1, r.concurrency)),
                                    max_restarts=-1, max_task_retries=-1, **common)
            else:
                ds = ds.map_batches(_task_fn, fn_kwargs={"payload": payload},
                                    compute=TaskPoolStrategy(size=max(1, r.concurrency)),
                                    max_retries=TASK_RETRIES, **common)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for raw in batch["payload"]:
            yield pickle.loads(raw)


def _run_local(items: Iterable[dict], stages: list[Stage]) -> Iterator[dict]:
    for item in items:
        for stage in stages:
            item = stage(item)
        yield item


# ---- the job ----------------------------------------------------------------------------------------

def run_job(job: str, items: Iterable[dict], stages: list[Stage], cfg: dict, out_dir: str | Path, *,
            argv: list[str] | None = None, summarize: Callable | None = None, dedup: Any = None,
            address: str | None = None) -> dict:
    """Run `stages` over `items` into `out_dir` (shards + catalog); returns the run's summary.

    Items whose `work_key` is already committed in `out_dir` are skipped (resume). `summarize`,
    when given, is called as `summarize(out_dir, run_id)` after the catalog is up to date and its
    result is returned under "summary". `dedup` is handed to the writer (near-duplicate index).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    res = cfg.get("resources", {})
    local = bool(res.get("local"))
    progress = bool(res.get("progress", True))
    h = config_hash(cfg)
    run_id = new_run_id()
    writer = JobWriter(out_dir, cfg, run_id=run_id, job=job, config_hash=h, dedup=dedup,
                       on_commit=lambda m: _catalog_call(out_dir, ingest_commit, m))
    record = {"run_id": run_id, "job": job, "started_at": _now(), "finished_at": None, "status": "running",
              "config_hash": h, "config": config_json(cfg), "pipeline_version": __version__,
              "versions": json.dumps(library_versions(), sort_keys=True), "stages": "[]",
              "argv": json.dumps(list(argv if argv is not None else sys.argv))}
    _write_record(out_dir, record)
    caught_up = catch_up_catalog(out_dir)
    _catalog_call(out_dir, refresh_meta)

    committed = writer.committed_work_keys()
    counts = {"skipped": 0, "repeated": 0}

    def pending() -> Iterator[dict]:
        seen: set[str] = set()
        for it in items:
            k = it["work_key"]
            if k in committed or k in seen:
                counts["skipped"] += 1
                continue
            seen.add(k)
            yield it

    table = StageTable([s.name for s in stages])
    started_ray = False
    try:
        if local:
            results = _run_local(pending(), stages)
        else:
            started_ray = init_ray(cfg, address or _address_from_argv(argv))
            results = _run_ray(pending(), stages, cfg, progress)
        done: set[str] = set()
        for item in results:
            if item["work_key"] in done:  # a re-emitted item; the writer already has it
                counts["repeated"] += 1
                continue
            done.add(item["work_key"])
            table.add(item)
            writer.add(item)
            # an item rejected after ingest still has its decoded work file; its life ends here
            if item.get("work_path") and not (cfg.get("examples") or {}).get("keep_work", False):
                Path(item["work_path"]).unlink(missing_ok=True)
        totals = writer.close()
    except BaseException as e:
        record.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                      finished_at=_now(), stages=json.dumps(table.as_list()))
        try:
            _write_record(out_dir, record)
            _catalog_call(out_dir, refresh_meta)
        except Exception as rec_err:  # noqa: BLE001 - the original error matters more
            print(f"tandem: could not record the failed run: {rec_err}", file=sys.stderr)
        raise
    finally:
        if started_ray:
            import ray
            ray.shutdown()

    stage_rows = table.as_list()
    record.update(status="finished", finished_at=_now(), stages=json.dumps(stage_rows))
    _write_record(out_dir, record)
    _catalog_call(out_dir, refresh_meta)
    wall = time.perf_counter() - t0
    from rich.console import Console
    Console(stderr=True, width=None if sys.stderr.isatty() else 120).print(format_stage_table(
        stage_rows, title=f"{job} {run_id}: {totals['items']} items, {counts['skipped']} skipped, "
                          f"{totals['examples']} examples, {wall:.1f} s"))
    summary = {"run_id": run_id, "job": job, "out_dir": str(out_dir), "config_hash": h,
               "items": totals["items"], "skipped": counts["skipped"], "repeated": counts["repeated"],
               "examples": totals["examples"], "rejected_examples": totals["rejected_examples"],
               "rejections": totals["rejections"], "duplicates": totals["duplicates"],
               "commits": totals["commits"], "audio_s": totals["audio_s"], "stages": stage_rows,
               "wall_s": wall, "recovered": {**writer.recovered, "catalog_commits": caught_up}}
    if summarize is not None:
        summary["summary"] = summarize(out_dir, run_id)
    return summary
