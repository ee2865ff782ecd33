"""Stages on the workers: in-process, or as Ray Data operators (actor pools for model stages).

On Ray the whole data path runs in the workers: the input listing is read in blocks, a first
operator drops work already committed (asking the run's `CommitIndex` actor), the stages run,
and a last operator writes each batch of finished items as a part into the output's staging
area (`pipelines.store.part`). The driver receives only the parts' small manifests.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

from pipelines.core.config import section
from pipelines.core.contracts import stable_hash
from pipelines.core.stage import Resources, Stage
from pipelines.io.inputs import small_blocks
from pipelines.store.part import PartSpec, write_part

# Worker-side environment the driver passes on (model cache dir, test fault injection ...).
FORWARD_ENV_PREFIX = "TANDEM_"
# ... and the Hugging Face hub settings: the token for gated models (pyannote), where the hub
# cache lives, whether the job runs offline (models.offline), where NLTK data is.
FORWARD_ENV_NAMES = ("HF_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "NLTK_DATA")
# A task that keeps killing its worker fails the job after this many retries. Actor calls retry
# without limit (Ray Data's default): a node that dies makes every call to its actors fail fast
# ("unavailable") until the cluster declares it dead and restarts them elsewhere, so any finite
# count can run out before the restart.
TASK_RETRIES = 3

# CPUs asked by the operators that only move small rows (claim)
LIGHT_CPUS = 0.01
# the name under resources.stages of the operator that writes the parts
WRITE_STAGE = "write"


class ResourceFitError(RuntimeError):
    """The stages ask for more than the cluster has; Ray Data would stall instead of failing."""



# ---- stages on the workers -------------------------------------------------------------------------

def _stage_payload(stage: Stage) -> bytes:
    """The stage, configured but not set up, as bytes a worker can rebuild it from."""
    if getattr(stage, "_ready", False):
        raise ValueError(f"stage {stage.name}: already set up on the driver; pass a fresh instance "
                         "(models load once per worker, never on the driver)")
    import cloudpickle
    try:
        return cloudpickle.dumps(stage)
    except (TypeError, AttributeError, pickle.PicklingError) as e:
        raise TypeError(f"stage {stage.name} ({type(stage).__qualname__}) cannot be sent to Ray "
                        f"workers: {e}") from None


def _build_stage(payload: bytes, threads: int | None = None) -> Stage:
    if threads:
        # torch / CTranslate2 / BLAS start one thread per core unless told the actor's share
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    return pickle.loads(payload)


def _apply(stage: Stage, batch: dict) -> dict:
    import numpy as np
    # the batch through run_items (streamed): a stage may overlap one item's work with the next's (synthesis)
    out = [pickle.dumps(it, protocol=5) for it in stage.run_items(pickle.loads(raw) for raw in batch["payload"])]
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
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIX) or k in FORWARD_ENV_NAMES}


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
    res = section(cfg, "resources")
    addr = address or res["address"] or os.environ.get("RAY_ADDRESS")
    kw = {"log_to_driver": True, "configure_logging": True, "logging_level": "warning"}
    if addr:
        ray.init(address=addr, **kw)
    else:
        ray.init(num_cpus=res["num_cpus"], include_dashboard=False, **kw)
    return True


def stage_requests(stages: list[Stage]) -> list[tuple[Stage, Resources]]:
    """What each stage asks Ray for: its own `resources`, set where the stage was built."""
    return [(s, s.resources) for s in stages]


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


class ActorIndex:
    """The run's `CommitIndex` living in an actor: the same methods, from the driver or a worker."""

    def __init__(self, handle):
        self.handle = handle

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "handle":
            raise AttributeError(name)
        import ray
        method = getattr(self.handle, name)
        return lambda *args: ray.get(method.remote(*args))


def start_index(out_dir: str, dedup) -> ActorIndex:
    """The index actor, on the driver's node (it lives and dies with the job), loaded before use."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from pipelines.store.index import CommitIndex
    node = ray.get_runtime_context().get_node_id()
    handle = ray.remote(CommitIndex).options(
        num_cpus=0, max_restarts=0, max_concurrency=1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(out_dir, dedup)
    ray.get(handle.ping.remote())  # a committed file that cannot be read fails the job here
    return ActorIndex(handle)


def _claim_fn(batch: dict, index: ActorIndex) -> dict:
    """Drop work committed by an earlier run or claimed by another block (an input named twice)."""
    import numpy as np
    keys = [str(k) for k in batch["work_key"]]
    keep = np.asarray(index.claim(keys, stable_hash("claim", keys)), dtype=bool)
    return {"work_key": np.asarray(batch["work_key"])[keep], "payload": np.asarray(batch["payload"])[keep]}


def _write_fn(batch: dict, spec: PartSpec, index: ActorIndex) -> dict:
    """Finished items to a part in staging; only its manifest goes on to the driver."""
    import numpy as np
    items = [pickle.loads(raw) for raw in batch["payload"]]
    if not items:
        return {"part": np.array([], dtype=object)}
    return {"part": np.array([json.dumps(write_part(items, spec, index))], dtype=object)}


def source_dataset(items: Any, block_rows: int):
    """Items as a dataset of {work_key, payload} in blocks of at most `block_rows` (a retry redoes
    one block): read by Ray Data when the source can (`to_dataset`), else from the driver's list."""
    import ray
    if hasattr(items, "to_dataset"):
        ds = items.to_dataset()
    else:
        rows = [{"work_key": it["work_key"], "payload": pickle.dumps(it, protocol=5)} for it in items]
        if not rows:
            return None
        blocks = -(-len(rows) // max(1, block_rows))
        if blocks <= 4096:
            # from_items splits evenly, so these blocks hold at most block_rows already: no
            # repartition operator (its task per block started a worker process each on a busy
            # node, one of which aborted on its idle exit, "Mutex corrupt", in Ray 2.60)
            return ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ray.data.from_items(rows, override_num_blocks=4096)
    return small_blocks(ds, block_rows)


def _run_ray(items: Any, stages: list[Stage], write: Resources, progress: bool, index: ActorIndex,
             spec: PartSpec, part_items: int) -> Iterator[dict]:
    """Run the chain on Ray; yields the parts' manifests as they are written."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    requests = stage_requests(stages)
    # the last operator writes the parts (FLAC decode for dedup hashes, Parquet): `write` is its request
    node_cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    check_fit([*requests, (SimpleNamespace(name=WRITE_STAGE), write)], ray.cluster_resources(), node_cpus)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    try:  # model actors hold ~1 GiB each by design; the detector repeats that every 30 s
        ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
    except AttributeError:
        pass
    ctx.enable_operator_progress_bars = bool(progress)
    ctx.print_on_execution_start = bool(progress)

    biggest_batch = max([r.batch_size for _, r in requests] + [1])
    # small blocks: items stream to the writer as they finish, and a retry redoes little
    ds = source_dataset(items, biggest_batch)
    if ds is None:
        return
    env = _forward_env()
    light: dict[str, Any] = {"batch_format": "numpy", "num_cpus": LIGHT_CPUS, "max_retries": TASK_RETRIES}
    if env:
        light["runtime_env"] = {"env_vars": env}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(_claim_fn, fn_kwargs={"index": index}, batch_size=None,
                            compute=TaskPoolStrategy(size=2), **light)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(_write_fn, fn_kwargs={"spec": spec, "index": index}, batch_size=max(1, part_items),
                            compute=TaskPoolStrategy(size=max(1, write.concurrency)),
                            **{**light, "num_cpus": write.num_cpus})
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for raw in batch["part"]:
            yield json.loads(raw)


def run_local(items: Iterable[dict], stages: list[Stage], index) -> Iterator[dict]:
    """The chain in-process: committed or repeated work keys skipped, then every stage."""
    for n, item in enumerate(items):
        if not index.claim([item["work_key"]], f"local-{n}")[0]:
            continue
        for stage in stages:
            item = stage(item)
        yield item


# ---- the engine interface -----------------------------------------------------------------------

class Executor:
    """Runs a chain of stages over items into a job's writer (datatrove's executor shape): each
    engine claims work through `writer.index`, runs every stage, and hands finished work to the
    writer, yielding one timing row per finished item (the progress table's input)."""

    name = "executor"

    def run(self, items: Any, stages: list[Stage], writer) -> Iterator[dict]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """In this process, item by item; the writer stages and commits items itself."""

    name = "local"

    def run(self, items: Any, stages: list[Stage], writer) -> Iterator[dict]:
        for item in run_local(items, stages, writer.index):
            writer.add(item)
            yield item


class RayExecutor(Executor):
    """Ray Data operators (actor pools for model stages); workers write parts into the writer's
    staging area and the driver adopts their manifests."""

    name = "ray"

    def __init__(self, write: Resources, part_items: int, progress: bool):
        """`write`: the part writer's resources; `part_items`: items per part (shards.max_items_per_commit)."""
        self.write, self.part_items, self.progress = write, int(part_items), progress

    @classmethod
    def from_config(cls, cfg: dict, progress: bool) -> RayExecutor:
        return cls(Resources.for_stage(cfg, WRITE_STAGE), int(section(cfg, "shards")["max_items_per_commit"]), progress)

    def run(self, items: Any, stages: list[Stage], writer) -> Iterator[dict]:
        for part in _run_ray(items, stages, self.write, self.progress, writer.index, writer.spec, self.part_items):
            if writer.add_part(part):
                yield from part["stats"]
