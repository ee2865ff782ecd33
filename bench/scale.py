"""The data path at scale, on the real curation chain (ingest, VAD, diarization, ASR, assembly,
filters, dedup) over real speech: what the driver costs, how the job spreads over nodes, how memory
grows with the input, and how many GPUs one driver could feed.

    .venv/bin/python bench/scale.py                       # about 10 minutes on 2 busy cores
    .venv/bin/python bench/scale.py --clips 10 --clip-s 20 --json /tmp/scale.json

Corpus: the real-speech evaluation set (tools/build_eval_set.py: Debian asterisk voices, LibriVox,
pyannote's call), cut into `--clip-s` second clips. Figures, each measured in this run:
  1. driver CPU-seconds (this process only: Ray's own daemons and the workers are children) and
     bytes the driver receives (the parts' manifests), per hour of committed audio, next to the
     workers' compute (the stages' own seconds);
  2. wall time of the same job on a local cluster of 1 node, then 2 nodes (1 CPU each, each
     stage's pool as large as the node count);
  3. peak RSS of the driver and of all Ray processes as the number of inputs grows tenfold;
  4. the projected ceiling: GPUs one driver core can keep busy, from 1. and a GPU that runs the
     whole chain at `--gpu-rtx` times real time.
Each job runs as its own driver process (`--one`), so every figure is that driver's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clips(ev: Path, n: int, clip_s: float, out: Path) -> Path:
    """`n` clips of real speech, cut in order from the set's recordings (cycled), as 16 kHz WAV."""
    import soundfile as sf
    from pipelines.io.audio import load
    if not (ev / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_eval_set.py"), "--out", str(ev)], check=True)
    files = sorted((ev / "audio").glob("*.wav"))
    out.mkdir(parents=True, exist_ok=True)
    made, k = 0, 0
    while made < n:
        sr = 16000
        a = load(str(files[k % len(files)]), sr, channels=1)[:, 0]
        step = int(clip_s * sr)
        for start in range(0, len(a) - step + 1, step):
            if made >= n:
                break
            sf.write(out / f"c{made:05d}.wav", a[start:start + step], sr)
            made += 1
        k += 1
    return out


def load_default_commit_items() -> int:
    from pipelines.core.config import load_config
    return int(load_config()["shards"]["max_items_per_commit"])


def job_config(nodes: int, threads: int) -> list[str]:
    """--set pairs: every stage (and the part writer) a small CPU share and one worker per node."""
    return [f"resources.default_stage={{num_cpus: 0.1, concurrency: {nodes}, batch_size: 1, threads: {threads}}}",
            "resources.progress=false", "shards.max_items_per_commit=8"]


class PeakRss(threading.Thread):
    """Peak RSS of this process, and of it plus all its descendants (a local Ray's processes)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.driver = self.total = 0
        self.stop = threading.Event()

    def run(self):
        import psutil
        me = psutil.Process()
        while not self.stop.is_set():
            d = _rss(me)
            t = d + sum(_rss(c) for c in me.children(recursive=True))
            self.driver, self.total = max(self.driver, d), max(self.total, t)
            self.stop.wait(0.2)


def _rss(p) -> int:
    try:
        return p.memory_info().rss
    except Exception:  # noqa: BLE001 - the process ended between listing and reading
        return 0


def one(args) -> int:
    """One curation job in this process; prints its figures as JSON on the last line."""
    import psutil
    import ray
    from pipelines.core.config import load_config, parse_overrides
    from pipelines.store.writer import JobWriter
    from ray_jobs.jobs import run_curate
    cfg = load_config(overrides=parse_overrides(job_config(args.nodes, args.threads)))
    if args.address:
        ray.init(address=args.address, logging_level="warning", log_to_driver=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 << 20, logging_level="warning",
                 log_to_driver=False)
    received = []
    real_add_part = JobWriter.add_part

    def counted(self, part):
        received.append(len(json.dumps(part)))
        return real_add_part(self, part)
    JobWriter.add_part = counted
    me = psutil.Process()
    rss = PeakRss()
    rss.start()
    main0 = sum(t.user_time + t.system_time for t in me.threads() if t.id == threading.main_thread().native_id)
    c0, t0 = me.cpu_times(), time.perf_counter()
    res = run_curate(args.input, args.out, cfg, argv=["bench"])
    c1, wall = me.cpu_times(), time.perf_counter() - t0
    # the main thread commits (manifests, catalog, the index's answers); Ray Data's executor
    # schedules the operators from its own threads, at a cost that follows wall time
    main_id = threading.main_thread().native_id
    main_cpu = sum(t.user_time + t.system_time for t in me.threads() if t.id == main_id) - main0
    rss.stop.set()
    rss.join()
    stage_s = sum(r["seconds"] for r in res["stages"])
    print(json.dumps({
        "inputs": len(list(Path(args.input).glob("*.wav"))), "items": res["items"], "examples": res["examples"],
        "audio_s": res["audio_s"], "wall_s": wall, "driver_cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
        "driver_bytes": sum(received), "parts": len(received), "stage_s": stage_s,
        "driver_main_thread_cpu_s": main_cpu, "catalog_s": res["catalog"]["seconds"],
        "driver_peak_rss": rss.driver, "total_peak_rss": rss.total, "commits": res["commits"]}))
    ray.shutdown()
    return 0


def run_one(inp: Path, out: Path, *, nodes: int = 1, threads: int = 1, address: str | None = None,
            env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--input", str(inp), "--out", str(out),
           "--nodes", str(nodes), "--threads", str(threads)] + (["--address", address] if address else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.startswith("{")]
    if r.returncode or not lines:
        raise RuntimeError(f"bench job failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])


def on_cluster(inp: Path, work: Path, nodes: int) -> dict:
    from ray_jobs.cluster import cluster_env, start_cluster, stop_cluster
    root = Path(tempfile.mkdtemp(prefix="tsc", dir="/tmp"))
    try:
        c = start_cluster(root, nodes=nodes, cpus=1, object_store_bytes=150 << 20, dashboard=False)
        return run_one(inp, work / f"out-{nodes}n", nodes=nodes, address=c.address, env=cluster_env())
    finally:
        stop_cluster(root)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=3, help="inputs of the driver and node runs (memory: x1, x10)")
    p.add_argument("--clip-s", type=float, default=6.0, help="seconds of real speech per input")
    p.add_argument("--gpu-rtx", type=float, default=80.0, help="times real time one GPU runs the whole chain")
    p.add_argument("--eval", default=str(ROOT / "eval_data"), help="the real-speech set (built if missing)")
    p.add_argument("--skip-nodes", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    # one job (internal)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input")
    p.add_argument("--out")
    p.add_argument("--address")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.one:
        return one(args)
    work = Path(tempfile.mkdtemp(prefix="tandem-scale-"))
    try:
        small = clips(Path(args.eval), args.clips, args.clip_s, work / "in-1x")
        big = clips(Path(args.eval), 10 * args.clips, args.clip_s, work / "in-10x")
        figures = {"cores": os.cpu_count(), "load_avg_at_start": round(os.getloadavg()[0], 1),
                   "clip_s": args.clip_s}
        runs = {"1x": run_one(small, work / "out-1x"), "10x": run_one(big, work / "out-10x")}
        figures["runs"] = runs
        b = runs["10x"]
        h = b["audio_s"] / 3600
        figures["driver"] = {
            "committed_audio_h": round(h, 4), "driver_cpu_s_per_audio_h": round(b["driver_cpu_s"] / h, 1),
            "driver_bytes_per_audio_h": round(b["driver_bytes"] / h), "driver_bytes_per_example":
                round(b["driver_bytes"] / max(1, b["examples"])),
            "driver_cpu_share_of_worker_compute": round(b["driver_cpu_s"] / max(1e-9, b["stage_s"]), 4),
            "driver_cpu_s_per_commit": round(b["driver_cpu_s"] / max(1, b["commits"]), 3)}
        s = runs["1x"]
        # the split: the commit path (main thread) per audio, the executor threads per wall second
        figures["driver"].update(
            main_thread_cpu_s_per_audio_h=round(b["driver_main_thread_cpu_s"] / h, 1),
            catalog_s_per_audio_h=round(b["catalog_s"] / h, 1),
            executor_cpu_s_per_wall_s=round((b["driver_cpu_s"] - b["driver_main_thread_cpu_s"]) / b["wall_s"], 4))
        # what the driver spends per extra second of audio (fixed start-up costs cancel out)
        marginal = (b["driver_cpu_s"] - s["driver_cpu_s"]) / max(1e-9, b["audio_s"] - s["audio_s"])
        figures["driver"]["marginal_driver_cpu_s_per_audio_h"] = round(marginal * 3600, 1)
        # the driver's ceiling: audio seconds one driver core can commit per second, over a GPU's rate
        whole = b["audio_s"] / max(1e-9, b["driver_cpu_s"])
        figures["projection"] = {
            "gpu_rtx": args.gpu_rtx, "audio_s_per_driver_cpu_s_whole_run": round(whole, 1),
            "gpus_per_driver_core_whole_run": round(whole / args.gpu_rtx, 1),
            "audio_s_per_driver_cpu_s_marginal": round(1 / max(marginal, 1e-9), 1),
            "gpus_per_driver_core_marginal": round(1 / max(marginal, 1e-9) / args.gpu_rtx, 1)}
        # with the executor's share per wall second apart: a core saturates when
        # executor + commit path = 1, i.e. audio rate = (1 - executor) / (commit CPU per audio s)
        per_audio = b["driver_main_thread_cpu_s"] / b["audio_s"]
        ex = figures["driver"]["executor_cpu_s_per_wall_s"]
        figures["projection"]["audio_s_per_s_commit_path_ceiling"] = round((1 - ex) / max(per_audio, 1e-9), 1)
        figures["projection"]["gpus_per_driver_core_commit_path"] = round((1 - ex) / max(per_audio, 1e-9)
                                                                          / args.gpu_rtx, 1)
        # the commit path costs per commit (manifest, catalog, index answers), so its ceiling grows
        # with the audio one commit carries: at the default commit size (64 items of this length)
        per_commit = ((b["driver_main_thread_cpu_s"] - s["driver_main_thread_cpu_s"])
                      / max(1, b["commits"] - s["commits"]))
        default_items = int(load_default_commit_items())
        audio_per_commit = default_items * b["audio_s"] / max(1, b["items"])
        rate = (1 - ex) * audio_per_commit / max(per_commit, 1e-3)
        figures["projection"].update(
            main_thread_cpu_s_per_commit=round(per_commit, 3), default_items_per_commit=default_items,
            audio_s_per_default_commit=round(audio_per_commit, 1),
            audio_s_per_s_at_default_commits=round(rate), gpus_per_driver_core_at_default_commits=round(rate / args.gpu_rtx))
        figures["memory"] = {"driver_peak_mb": [round(s["driver_peak_rss"] / 2**20), round(b["driver_peak_rss"] / 2**20)],
                             "all_ray_peak_mb": [round(s["total_peak_rss"] / 2**20), round(b["total_peak_rss"] / 2**20)],
                             "driver_growth_x10": round(b["driver_peak_rss"] / s["driver_peak_rss"], 2),
                             "all_growth_x10": round(b["total_peak_rss"] / s["total_peak_rss"], 2)}
        if not args.skip_nodes:
            n1, n2 = on_cluster(small, work, 1), on_cluster(small, work, 2)
            figures["nodes"] = {"1_node_wall_s": round(n1["wall_s"], 1), "2_nodes_wall_s": round(n2["wall_s"], 1),
                                "speedup": round(n1["wall_s"] / n2["wall_s"], 2),
                                "audio_s": round(n1["audio_s"], 1)}
        figures["load_avg_at_end"] = round(os.getloadavg()[0], 1)
        print(json.dumps(figures, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
