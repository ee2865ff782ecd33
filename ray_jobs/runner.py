"""The job runner: work items through stages (in-process, or on Ray Data) into the atomic writer.

`run_job` records the run, skips work keys an earlier run already committed, runs the stages and
streams finished items into `pipelines.store.writer.JobWriter`, which commits them in atomic
groups. The catalog follows the commits through `catalogs.publish.CatalogPublisher`, which never
writes the file researchers hold and never fails the job. A killed driver leaves only committed
work visible; the next run over the same output skips it, so every expected example lands
exactly once.

On Ray the workers do the heavy part (`ray_jobs.execute`): the input listing is read in blocks,
each stage is one `map_batches` operator (an actor pool for stages with a model, tasks for the
others), and a last operator writes finished items as parts into the output's staging area. The
driver receives the parts' manifests and commits them; it never touches audio. Requests come
from `resources.stages.<name>` and are checked against the cluster before anything starts,
because a chain whose requests do not fit stalls instead of failing (docs/CLUSTER.md). Killed
workers are retried by Ray: actors restart and the batch they held runs again; the driver takes
each work item from one part only, so a retry never duplicates.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from catalogs.publish import CatalogPublisher
from pipelines.core.config import config_hash, config_json, section
from pipelines.core.contracts import utc_now
from pipelines.core.stage import Stage
from pipelines.store.commit import OutputError
from pipelines.store.writer import JobWriter, write_run_record
from ray_jobs.execute import Executor, LocalExecutor, RayExecutor, _address_from_argv, init_ray, start_index
from ray_jobs.progress import StageTable, format_stage_table
from tandem import __version__

VERSIONS_OF = ("ray", "pyarrow", "duckdb", "numpy", "torch", "faster-whisper", "pyannote.audio")


# ---- the run record -------------------------------------------------------------------------------

def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "tandem": __version__}
    for name in VERSIONS_OF:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def start_record(run_id: str, job: str, cfg: dict, argv: list[str] | None) -> dict:
    """A run's record as it starts (status running); every job writes this one shape."""
    return {"run_id": run_id, "job": job, "started_at": utc_now(), "finished_at": None, "status": "running",
            "config_hash": config_hash(cfg), "config": config_json(cfg), "pipeline_version": __version__,
            "versions": json.dumps(library_versions(), sort_keys=True), "stages": "[]",
            "argv": json.dumps(list(argv if argv is not None else sys.argv))}


def _write_record(out_dir: Path, record: dict) -> None:
    try:
        write_run_record(out_dir, record)
    except OSError as e:
        raise OutputError(f"cannot write the run record under {out_dir}: {e.strerror or e}") from None


# ---- infrastructure failures ----------------------------------------------------------------------

# errors of the storage, not of the job or its data: the job ends with one line and exit status 3
INFRA_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
# bytes kept free for closing the run record when the output's disk fills up
RESERVE_BYTES = 256 * 1024


class InfraFailure(OutputError):
    """The job ended on a failure of the infrastructure (a full or failing disk); what was committed
    is whole and a rerun continues. The CLI prints the message as one line and exits 3."""

    exit_code = 3


def infra_cause(e: BaseException) -> OSError | None:
    """The storage error behind `e`, also when a Ray task raised it (RayTaskError.cause) or it is
    chained (__cause__, __context__); None for any other failure."""
    todo, seen = [e], set()
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in INFRA_ERRNOS:
            return x
        todo += [x.__cause__, x.__context__, getattr(x, "cause", None)]
    return None


def _reserve_path(out_dir: Path, run_id: str) -> Path:
    return out_dir / "runs" / f".reserve-{run_id}"


def _reserve(out_dir: Path, run_id: str) -> None:
    """Hold a little space for the run record's last write (stale reserves of killed runs go)."""
    for old in (out_dir / "runs").glob(".reserve-*"):
        old.unlink(missing_ok=True)
    try:
        with open(_reserve_path(out_dir, run_id), "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)
    except OSError:
        _reserve_path(out_dir, run_id).unlink(missing_ok=True)  # no room even for that: best effort


# ---- the job ----------------------------------------------------------------------------------------

def run_job(job: str, items: Iterable[dict], stages: list[Stage], cfg: dict, out_dir: str | Path, *,
            argv: list[str] | None = None, summarize: Callable | None = None, dedup: Any = None,
            address: str | None = None) -> dict:
    """Run `stages` over `items` into `out_dir` (shards + catalog); returns the run's summary.

    Items whose `work_key` is already committed in `out_dir` are skipped (resume). `summarize`,
    when given, is called as `summarize(out_dir, run_id)` after the catalog is up to date and its
    result is returned under "summary". `dedup` (None: off) turns on exact and near-duplicate
    matching in the writer's index (`filters.dedup.DedupParams`, or anything else for the config's).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    for s in stages:  # a missing model fails the job here, before any item is touched
        s.check()
    res = section(cfg, "resources")
    local = bool(res["local"])
    progress = bool(res["progress"])
    h = config_hash(cfg)
    run_id = new_run_id()
    catalog = CatalogPublisher(out_dir, max_share=float(section(cfg, "catalog")["publish_max_share"]))
    started_ray = False
    try:
        if not local:
            started_ray = init_ray(cfg, address or _address_from_argv(argv))
        factory = None if local else (lambda d: start_index(str(out_dir), d))
        writer = JobWriter.from_config(out_dir, cfg, run_id=run_id, job=job, config_hash=h, dedup=dedup,
                           on_commit=catalog.ingest, index_factory=factory)
        try:
            engine = LocalExecutor() if local else RayExecutor.from_config(cfg, progress)
            return _run_held(job, items, stages, cfg, out_dir, argv, summarize, writer, catalog,
                             run_id=run_id, h=h, engine=engine, t0=t0)
        finally:
            writer.release()  # after the last record and catalog publication: they are the holder's too
    finally:
        if started_ray:
            import ray
            ray.shutdown()


def _run_held(job, items, stages, cfg, out_dir, argv, summarize, writer, catalog, *, run_id, h,
              engine: Executor, t0) -> dict:
    """The job while its writer holds the output's lock."""
    record = start_record(run_id, job, cfg, argv)
    _write_record(out_dir, record)
    _reserve(out_dir, run_id)
    for s in stages:  # attempt markers of this run tell a worker death from a job that ended
        s.attempt_run = run_id
    caught_up = catalog.catch_up()
    catalog.publish(force=True)
    table = StageTable([s.name for s in stages])
    try:
        for row in engine.run(items, stages, writer):
            table.add(row)
        writer.commit()
        writer.settle()  # each duplicate cluster keeps its canonical example, whatever the arrival order
        writer.drop_unclaimed()  # a part written by a worker that died before handing it over
        totals = dict(writer.totals)
    except BaseException as e:
        cause = infra_cause(e)
        record.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                      finished_at=utc_now(), stages=json.dumps(table.as_list()))
        why = (cause.strerror or os.strerror(cause.errno)) if cause is not None else ""
        if cause is not None:
            record["error"] = f"{why}: {cause.filename or out_dir}"
        _reserve_path(out_dir, run_id).unlink(missing_ok=True)  # frees room for this last record
        try:
            _write_record(out_dir, record)
            if cause is None:  # on a full disk the copy would fail too; `catalog build` repairs it
                catalog.publish(force=True)
        except Exception as rec_err:  # noqa: BLE001 - the original error matters more
            print(f"tandem: could not record the failed run: {rec_err}", file=sys.stderr)
        if cause is not None and not isinstance(e, KeyboardInterrupt):
            where = f" ({cause.filename})" if getattr(cause, "filename", None) else ""
            raise InfraFailure(f"{out_dir}: {why}{where}; the job stopped, "
                               f"what it committed is whole (run {run_id} recorded as failed). Free space or fix "
                               "the disk, then rerun the same command to continue.") from None
        raise
    _reserve_path(out_dir, run_id).unlink(missing_ok=True)
    counts = writer.index.stats()

    stage_rows = table.as_list()
    record.update(status="finished", finished_at=utc_now(), stages=json.dumps(stage_rows))
    # items left uncommitted for the next run, by kind: `error` (a bug in a stage) or `transient`
    record["uncommitted"] = {k: sum(1 for r in writer.retry if (r.get("kind") or "transient") == k)
                             for k in ("error", "transient")}
    _write_record(out_dir, record)
    catalog.publish(force=True)
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
               "settled": totals["settled"],
               "retry": writer.retry,
               "wall_s": wall, "recovered": {**writer.recovered, "catalog_commits": caught_up},
               "catalog": {"problems": list(catalog.problems), "publications": catalog.publications,
                           "seconds": round(catalog.seconds, 4)}}
    if summarize is not None:
        summary["summary"] = summarize(out_dir, run_id)
    return summary
