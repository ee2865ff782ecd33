"""Assembling a job: its item factory, its stages (filters last), the writer's dedup, the runner."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipelines.core.config import section


def filter_stages(cfg: dict) -> list:
    from filters.stage import FilterStage
    return [FilterStage.from_config(cfg)] if section(cfg, "filters")["enabled"] else []


def dedup_index(out_dir, cfg: dict):
    """The dedup settings the writer's index matches with (None: filters off, no dedup)."""
    if not section(cfg, "filters")["enabled"]:
        return None
    from filters.dedup import DedupParams
    return DedupParams.from_config(cfg)


def run_curate(input_spec: str, out_dir: str | Path, cfg: dict, argv: list[str] | None = None) -> dict:
    import functools

    from pipelines.core.config import config_hash
    from pipelines.curate.chain import curation_stages, make_items
    from pipelines.io.inputs import InputListing
    from ray_jobs.runner import run_job
    h = config_hash(cfg)
    # on Ray the listing is read and turned into items by the workers, block by block
    items = InputListing(input_spec, functools.partial(make_items, cfg=cfg, cfg_hash=h, out_dir=str(out_dir)))
    stages = curation_stages(cfg) + filter_stages(cfg)

    def real_rows(out, run_id):
        # turn-taking of every accepted real example in OUT (a rerun that skips everything still shows it)
        from catalogs.turns import curated_turn_taking
        return curated_turn_taking(out)

    res = run_job("curate", items, stages, cfg, out_dir, argv=argv or sys.argv,
                  dedup=dedup_index(out_dir, cfg), summarize=real_rows)
    if res.get("summary") is not None:
        from catalogs.turns import format_real
        print(format_real(res["summary"]))
    return res


def run_synth(scripts: str | None, out_dir: str | Path, cfg: dict, *, count: int, seed: int | None,
              languages: list[str] | None, argv: list[str] | None = None) -> dict:
    from pipelines.core.config import config_hash
    from ray_jobs.runner import run_job
    from synth.job import format_summary, make_items, summarize, synthesis_stages
    if seed is not None:
        cfg["seed"] = seed
    if languages:
        bad = sorted(set(languages) - set(cfg["languages"]))
        if bad:
            raise ValueError(f"--languages {bad} not in the accepted set {cfg['languages']} (config `languages`)")
    h = config_hash(cfg)
    items = make_items(scripts, count, cfg["seed"], languages or list(cfg["languages"]), cfg, h, str(out_dir))
    stages = synthesis_stages(cfg) + filter_stages(cfg)
    def run_rows(out, run_id):
        # the turn-taking figures of this run's dialogues, accepted or filtered out
        from pipelines.io.files import iter_rows
        from pipelines.store.commit import file_records
        paths = [Path(out) / r["path"] for r in file_records(out)
                 if r["run_id"] == run_id and r["kind"] in ("shards", "rejected")]
        return summarize(iter_rows(paths, columns=["params"]))

    t0 = time.perf_counter()
    res = run_job("synth", items, stages, cfg, out_dir, argv=argv or sys.argv,
                  dedup=dedup_index(out_dir, cfg), summarize=run_rows)
    wall_s = time.perf_counter() - t0
    if res.get("summary") is not None:
        print(format_summary(res["summary"]))
        print(throughput_line(res["summary"]["per_minute"]["minutes"] * 60.0, wall_s, cfg))
    return res


def throughput_line(dialogue_s: float, wall_s: float, cfg: dict) -> str:
    """Dialogue-hours made per wall-hour of the whole command (start-up included) and per CPU-hour
    (wall time x the CPUs Ray was given: a local Ray's `resources.num_cpus`, else every core;
    on a cluster, the cluster's CPUs), and per GPU-hour when stages asked for GPUs."""
    import os
    res = cfg.get("resources") or {}
    if res.get("address"):
        import ray
        cpus = float(ray.cluster_resources().get("CPU", 0.0)) if ray.is_initialized() else 0.0
    else:
        cpus = float(res.get("num_cpus") or os.cpu_count() or 1)
    gpus = sum(float((st or {}).get("num_gpus") or 0) * float((st or {}).get("concurrency") or 1)
               for st in (res.get("stages") or {}).values())
    hours, wall_h = dialogue_s / 3600.0, max(wall_s, 1e-9) / 3600.0
    parts = [f"throughput: {hours * 60:.1f} min of dialogue in {wall_s:.0f} s: "
             f"{hours / wall_h:.2f} dialogue-hours per wall-hour"]
    if cpus:
        parts.append(f"{hours / (wall_h * cpus):.2f} per CPU-hour ({cpus:g} CPUs)")
    if gpus:
        parts.append(f"{hours / (wall_h * gpus):.2f} per GPU-hour ({gpus:g} GPUs)")
    return ", ".join(parts)


def report_retries(res: dict) -> int:
    """Exit status of a job command: 3 when items failed (transiently, or by an error in a stage)
    and were left uncommitted for a rerun; each is listed, errors first."""
    retry = res.get("retry") or []
    if not retry:
        return 0
    errors = [r for r in retry if r.get("kind") == "error"]
    transient = [r for r in retry if r.get("kind") != "error"]
    if errors:
        # a stage raised something that is not a named input fault: a bug, never the data's fault
        print(f"\n{len(errors)} item(s) failed with an error inside a stage (not a fault of the input) and "
              "were not committed; fix the stage, then rerun the same command to retry them:", file=sys.stderr)
        for r in errors[:20]:
            print(f"  {r.get('uri')}: {r.get('stage')}: {r.get('detail')}", file=sys.stderr)
            trace = (r.get("trace") or "").strip().splitlines()
            for line in trace[-3:-1]:
                print(f"      {line.strip()}", file=sys.stderr)
    if transient:
        print(f"\n{len(transient)} item(s) failed for transient reasons and were not committed; "
              "rerun the same command to retry them:", file=sys.stderr)
        for r in transient[:20]:
            print(f"  {r.get('uri')}: {r.get('stage')}: {r.get('detail')}", file=sys.stderr)
    return 3
