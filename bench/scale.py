"""Runner scaling, memory and overhead on the toy corpus (real compute: FLAC encode + FFT metric).

Every figure is measured in this run against a baseline from the same run:
  1. throughput with the model-like stage on 1 vs 2 actors (same items, same config hash);
  2. peak RSS of the driver and of the whole Ray process tree as the input grows tenfold;
  3. overhead: the bare stage calls in a loop vs the runner in-process vs the runner on Ray.

    .venv/bin/python bench/scale.py                 # about 3 minutes on 2 busy cores
    .venv/bin/python bench/scale.py --items 24 --duration 60 --rss-items 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tandem.ray_jobs.runner import run_job

from tandem.testing.toy import make_items, toy_config, toy_stages


class PeakRss:
    """Samples the RSS of this process and of all its descendants (local Ray's GCS, raylet and
    workers are started under the driver) every `every` seconds; keeps the peaks."""

    def __init__(self, every: float = 0.1):
        self.every = every
        self.driver = 0
        self.total = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                d = me.memory_info().rss
                tot = d
                for ch in me.children(recursive=True):
                    try:
                        tot += ch.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                self.driver, self.total = max(self.driver, d), max(self.total, tot)
            except psutil.NoSuchProcess:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def bare_loop(n: int, duration: float) -> float:
    """The stages called directly, one item after another: no runner, no writer, no Ray."""
    cfg = toy_config(local=True)
    stages = toy_stages(cfg)
    t0 = time.perf_counter()
    for item in make_items(n, cfg, duration_s=duration):
        for s in stages:
            item = s(item)
    return time.perf_counter() - t0


def job(n: int, duration: float, *, local: bool = False, concurrency: int = 1, work_cpus: float = 0.5) -> dict:
    # every stage scales, not only the model one: a single task slot for the others would cap the chain
    cfg = toy_config(local=local, stages={"toy_work": {"num_cpus": work_cpus, "concurrency": concurrency},
                                          "toy_tone": {"num_cpus": 0.25, "concurrency": concurrency},
                                          "toy_assemble": {"num_cpus": 0.25, "concurrency": concurrency}})
    cfg["shards"]["max_items_per_commit"] = 16
    out = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    try:
        t0 = time.perf_counter()
        res = run_job("bench", make_items(n, cfg, duration_s=duration), toy_stages(cfg), cfg, out)
        res["wall_s"] = time.perf_counter() - t0
        assert res["examples"] == n, res
        return res
    finally:
        shutil.rmtree(out, ignore_errors=True)


def mb(b: int) -> str:
    return f"{b / 2**20:,.0f} MB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=24, help="items of the throughput corpus")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per throughput item")
    p.add_argument("--rss-items", type=int, default=30, help="small input for the memory check (x10 after)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    import ray
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 << 20, logging_level="warning",
             log_to_driver=False)
    figures: dict = {"cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}
    n, dur = args.items, args.duration
    audio_h = n * dur / 3600

    # warm-up: the first Ray Data job pays for worker start-up and imports
    job(4, 1.0, concurrency=2)

    # 1. scaling: same corpus, 1 then 2 workers per stage (2 x (0.5 + 0.25 + 0.25) = 2 CPUs at most)
    bare = bare_loop(n, dur)
    one = job(n, dur, concurrency=1)
    two = job(n, dur, concurrency=2)
    local = job(n, dur, local=True)
    figures["throughput"] = {
        "items": n, "audio_s_per_item": dur,
        "bare_loop_s": round(bare, 2), "runner_local_s": round(local["wall_s"], 2),
        "ray_1_actor_s": round(one["wall_s"], 2), "ray_2_actors_s": round(two["wall_s"], 2),
        "scaling_2_vs_1": round(one["wall_s"] / two["wall_s"], 2),
        "audio_h_per_h_1_actor": round(audio_h / (one["wall_s"] / 3600), 1),
        "audio_h_per_h_2_actors": round(audio_h / (two["wall_s"] / 3600), 1),
        "overhead_local_vs_bare": round(local["wall_s"] / bare, 2),
        "overhead_ray2_vs_bare": round(two["wall_s"] / bare, 2),
        "toy_work_s_in_stage_1_actor": next(r["seconds"] for r in one["stages"] if r["stage"] == "toy_work"),
    }

    # 2. memory as the input grows tenfold (1 s items: the per-item bookkeeping dominates)
    mem = {}
    for k in (args.rss_items, 10 * args.rss_items):
        with PeakRss() as rss:
            res = job(k, 1.0, concurrency=2)
        mem[k] = {"driver_peak": rss.driver, "total_peak": rss.total, "wall_s": round(res["wall_s"], 2)}
    small, big = mem[args.rss_items], mem[10 * args.rss_items]
    figures["memory"] = {str(k): {kk: (mb(v) if "peak" in kk else v) for kk, v in m.items()} for k, m in mem.items()}
    figures["memory"]["driver_growth_x10"] = round(big["driver_peak"] / small["driver_peak"], 2)
    figures["memory"]["total_growth_x10"] = round(big["total_peak"] / small["total_peak"], 2)
    ray.shutdown()

    t = figures["throughput"]
    print(f"\nmachine: {figures['cores']} cores, load average {figures['load_avg_at_start']:.1f} at start")
    print(f"throughput, {n} items x {dur:g} s audio (FLAC encode + FFT flatness per item):")
    print(f"  bare stage loop (baseline)  {t['bare_loop_s']:7.2f} s")
    print(f"  runner, in-process          {t['runner_local_s']:7.2f} s   x{t['overhead_local_vs_bare']} of baseline")
    print(f"  runner, Ray, 1 actor        {t['ray_1_actor_s']:7.2f} s   {t['audio_h_per_h_1_actor']} h audio/h")
    print(f"  runner, Ray, 2 actors       {t['ray_2_actors_s']:7.2f} s   {t['audio_h_per_h_2_actors']} h audio/h"
          f"   x{t['overhead_ray2_vs_bare']} of baseline")
    print(f"  scaling 2 actors vs 1: {t['scaling_2_vs_1']}x")
    print("memory (peak RSS), 1 s items:")
    for k, m in mem.items():
        print(f"  {k:5d} items: driver {mb(m['driver_peak'])}, driver + Ray processes {mb(m['total_peak'])}, "
              f"{m['wall_s']} s")
    print(f"  x10 input -> driver x{figures['memory']['driver_growth_x10']}, "
          f"total x{figures['memory']['total_growth_x10']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
