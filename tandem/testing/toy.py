"""Cheap, deterministic stages and items for testing and benchmarking the runner without models.

A toy item synthesizes a short two-channel tone from its key (`ToyTone`), a model-like stage
encodes it to FLAC and computes an FFT metric (`ToyWork`, an actor pool under Ray), and
`ToyAssemble` makes one example row per item (rejecting every k-th item, to exercise rejections).

Faults for tests: TANDEM_TOY_FAULT="<stage>:<mode>:<index>:<marker path>" (several joined by
";") makes that stage fire once, on the item with that index, in whichever process handles it.
The marker file is created exclusively when the fault fires, so a retried item does not fire
again. Modes: `exit` (os._exit(1) of the worker), `kill` (SIGKILL of the worker), `driver`
(SIGKILL of the driver whose pid is in TANDEM_TOY_DRIVER_PID), `raise` (an exception in the stage). The runner forwards TANDEM_*
variables to Ray workers.

`python -m tandem.testing.toy OUT --items N ...` runs a toy job through `ray_jobs.runner.run_job`
(used by the crash tests, the cluster guide and `ray job submit`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.core.config import config_hash, load_config
from pipelines.core.contracts import example_row, source_row, stable_hash, work_key
from pipelines.core.stage import Resources, Stage, reject
from pipelines.io.audio import encode_flac

FAULT_ENV = "TANDEM_TOY_FAULT"
DRIVER_PID_ENV = "TANDEM_TOY_DRIVER_PID"
TOY_SAMPLE_RATE = 24000


# the toy job's own item keys, declared by each stage class (a class pickled by value, as Ray
# sends those of a `python -m` main module, declares them again where it is rebuilt)
TOY_FIELDS = {"toy_key": (str,), "pcm": (np.ndarray,), "flac": (bytes,), "flatness": (float,)}

def make_items(n: int, cfg: dict, *, start: int = 0, duration_s: float = 1.0, sleep_s: float = 0.0,
               reject_every: int = 0, prefix: str = "toy", out_dir: str | None = None) -> Iterator[dict]:
    """Work items toy-<start> .. toy-<start+n-1>; lazily made, like a real job's factory. With
    `out_dir`, model stages keep attempt markers there, as a real job's items do."""
    h = config_hash(cfg)
    for i in range(start, start + n):
        key = f"{prefix}-{i}"
        yield {"uri": f"toy://{key}", "kind": "synthetic", "work_key": work_key(key, h),
               "seed": int(cfg.get("seed", 0)) + i, "status": "ok", "rejections": [], "timings": {},
               "index": i, "toy_key": key, "duration_s": float(duration_s), "sleep_s": float(sleep_s),
               "reject_every": int(reject_every), **({"out_dir": str(out_dir)} if out_dir else {})}


def items_from_uris(uris, cfg: dict, *, duration_s: float = 1.0) -> Iterator[dict]:
    """Toy items named by input files toy-<i>.wav (an input listing's item factory)."""
    for u in uris:
        yield from make_items(1, cfg, start=int(Path(u).stem.rsplit("-", 1)[1]), duration_s=duration_s)


def expected_example_ids(n: int, cfg: dict, *, start: int = 0, reject_every: int = 0,
                         prefix: str = "toy") -> set[str]:
    """The example ids a clean toy job over the same items commits as accepted."""
    h = config_hash(cfg)
    return {_example_id(f"{prefix}-{i}", h) for i in range(start, start + n)
            if not _rejected(i, reject_every)}


def _example_id(key: str, h: str) -> str:
    return stable_hash(key, 0, h)


def _rejected(index: int, every: int) -> bool:
    return every > 0 and index % every == every - 1


def maybe_fault(stage: str, item: dict) -> None:
    """Fire a fault of TANDEM_TOY_FAULT meant for `stage` once, at the item with that index."""
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(";")):
        where, mode, index, marker = spec.split(":", 3)
        if where == stage and int(item.get("index", -1)) == int(index):
            _fire(mode, index, marker)


def _fire(mode: str, index: str, marker: str) -> None:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, json.dumps({"pid": os.getpid(), "mode": mode, "index": int(index)}).encode())
    os.fsync(fd)
    os.close(fd)
    if mode == "exit":
        os._exit(1)
    elif mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "driver":
        os.kill(int(os.environ[DRIVER_PID_ENV]), signal.SIGKILL)
        time.sleep(5)  # the driver is gone; do not race ahead of it
    elif mode == "raise":
        raise RuntimeError(f"toy fault at item {index}")  # a bug in a stage, not the input's fault
    else:
        raise ValueError(f"{FAULT_ENV}: unknown mode {mode!r} (exit | kill | driver | raise)")


class ToyTone(Stage):
    """A two-channel tone whose pitch comes from the item key (int16, compact for transport)."""

    item_fields = TOY_FIELDS
    name = "toy_tone"
    reads = ("toy_key", "duration_s")
    writes = ("pcm", "sample_rate")

    def process(self, item: dict) -> dict:
        maybe_fault(self.name, item)
        sr = TOY_SAMPLE_RATE
        n = int(item["duration_s"] * sr)
        rng = np.random.default_rng(int(stable_hash(item["toy_key"], n=8), 16))
        f0 = 120.0 + 400.0 * rng.random()
        t = np.arange(n, dtype=np.float64) / sr
        ch0 = 0.3 * np.sin(2 * np.pi * f0 * t)
        ch1 = 0.2 * np.sin(2 * np.pi * 1.5 * f0 * t) + 0.01 * rng.standard_normal(n)
        item["pcm"] = (np.stack([ch0, ch1]) * 32767).astype(np.int16)
        item["sample_rate"] = sr
        item["source_id"] = stable_hash("toy-source", item["toy_key"], n=32)
        return item


class ToyWork(Stage):
    """Model-like stage: FLAC encode plus an FFT-heavy metric; optional sleep; fault injection."""

    item_fields = TOY_FIELDS
    name = "toy_work"
    reads = ("pcm", "sample_rate")
    writes = ("flac", "flatness")
    uses_model = True
    setups = 0  # per process: how many times setup() ran here

    def setup(self) -> None:
        type(self).setups += 1
        self.window = np.hanning(2048)

    def process(self, item: dict) -> dict:
        maybe_fault(self.name, item)
        x = item["pcm"].astype(np.float32) / 32767
        item["flac"] = encode_flac(x, item["sample_rate"])
        frames = np.lib.stride_tricks.sliding_window_view(x[0], 2048)[::512] * self.window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
        flat = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
        item["flatness"] = float(np.mean(flat))
        if item.get("sleep_s"):
            time.sleep(item["sleep_s"])
        item["toy_pid"] = os.getpid()
        del item["pcm"]
        return item


class ToyAssemble(Stage):
    """One example row and the source row per item; every k-th item is rejected with a reason."""

    item_fields = TOY_FIELDS
    name = "toy_assemble"
    reads = ("flac", "flatness")
    writes = ("examples", "source")

    def __init__(self, cfg_hash: str, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.cfg_hash = cfg_hash

    def process(self, item: dict) -> dict:
        h = self.cfg_hash
        sr = item["sample_rate"]
        dur = float(item["duration_s"])
        item["source"] = source_row(source_id=item["source_id"], uri=item["uri"], kind="synthetic",
                                    format="toy", orig_sample_rate=sr, orig_channels=2,
                                    duration_s=dur, bytes=len(item["flac"]))
        if _rejected(int(item["index"]), int(item.get("reject_every") or 0)):
            reject(item, stage=self.name, reason="toy_reject", detail=f"{item['toy_key']}: every k-th",
                   metrics={"flatness": item["flatness"]})
            return item
        item["examples"] = [example_row(
            example_id=_example_id(item["toy_key"], h), kind="synthetic", language="en",
            duration_s=dur, sample_rate=sr, num_samples=int(dur * sr), audio=item.pop("flac"),
            text_ch0=item["toy_key"], text_ch1="", speakers=["a", "b"], num_speakers=2,
            metrics={"flatness": item["flatness"]}, seed=int(item["seed"]),
            source_ids=[item["source_id"]],
            source_spans=[{"source_id": item["source_id"], "start_s": 0.0, "end_s": dur}],
            config_hash=h)]
        return item


def toy_stages(cfg: dict) -> list[Stage]:
    return [ToyTone(resources=Resources.for_stage(cfg, ToyTone.name)),
            ToyWork(resources=Resources.for_stage(cfg, ToyWork.name)),
            ToyAssemble(config_hash(cfg), resources=Resources.for_stage(cfg, ToyAssemble.name))]


def toy_config(**resources) -> dict:
    """Default config with small commits and the toy stages' resource requests (2-core friendly)."""
    cfg = load_config(overrides={"shards": {"max_items_per_commit": 4}})
    cfg["resources"].update(progress=False, **resources)
    return cfg


def _kill_before_commit(n: int) -> None:
    from pipelines.store import writer
    from pipelines.store.commit import COMMITS
    write_json = writer.write_json_atomic
    seen = [0]

    def dying(obj, path):
        if Path(path).parent.name == COMMITS:
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return write_json(obj, path)
    writer.write_json_atomic = dying


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.toy", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output directory")
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--duration", type=float, default=1.0, help="seconds of audio per item")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds ToyWork sleeps per item")
    p.add_argument("--reject-every", type=int, default=0)
    p.add_argument("--commit-every", type=int, default=4, help="shards.max_items_per_commit")
    p.add_argument("--config", help="YAML config (resources, shards ...)")
    p.add_argument("--address", help="Ray address (head host:port, or auto)")
    p.add_argument("--local", action="store_true", help="no Ray: in-process, sequential")
    p.add_argument("--concurrency", type=int, help="ToyWork actor pool size")
    p.add_argument("--work-cpus", type=float, help="CPUs per ToyWork actor")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--kill-before-commit", type=int, default=0,
                   help="test fault: SIGKILL this process after the N-th commit's files are staged, "
                        "before its manifest (the commit point) is written")
    args = p.parse_args(argv)
    if args.kill_before_commit:
        _kill_before_commit(args.kill_before_commit)
    os.environ[DRIVER_PID_ENV] = str(os.getpid())
    cfg = load_config(args.config, overrides={"shards": {"max_items_per_commit": args.commit_every}})
    res = cfg["resources"]
    res["progress"] = bool(args.progress)
    if args.local:
        res["local"] = True
    work = dict((res.get("stages") or {}).get("toy_work", {}))
    if args.concurrency:
        work["concurrency"] = args.concurrency
    if args.work_cpus:
        work["num_cpus"] = args.work_cpus
    if work:
        res["stages"] = {**(res.get("stages") or {}), "toy_work": work}
    from ray_jobs.runner import InfraFailure, run_job
    items = make_items(args.items, cfg, start=args.start, duration_s=args.duration, sleep_s=args.sleep,
                       reject_every=args.reject_every, out_dir=args.out)
    try:
        out = run_job("toy", items, toy_stages(cfg), cfg, Path(args.out),
                      argv=["python", "-m", "tandem.testing.toy", *(argv if argv is not None else sys.argv[1:])],
                      address=args.address)
    except InfraFailure as e:  # as the tandem CLI: one line, exit 3
        print(f"toy: error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps({k: out[k] for k in ("run_id", "items", "skipped", "examples", "commits")}))
    from ray_jobs.jobs import report_retries
    return report_retries(out)  # items left for a rerun make a non-zero exit, as the tandem CLI


if __name__ == "__main__":
    sys.exit(main())
