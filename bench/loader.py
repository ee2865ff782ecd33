"""Loader throughput against raw FLAC decoding of the same bytes, measured in the same run.

    python bench/loader.py [--examples 48] [--seconds 10] [--workers 2]

Prints examples/s and audio-seconds/s for: raw (read each row group's audio column, decode every
FLAC), the loader in-process (one worker's view) with several options, and a DataLoader with
--workers processes (per worker). The ratio to raw says what the loader's work costs on top.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(d: Path, n: int, seconds: float, sr: int, per_shard: int = 8) -> list[Path]:
    from tandem.pipelines.core import contracts
    from tandem.pipelines.io.audio import encode_flac

    from tandem.testing.loader import synthetic_words, write_shard
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for i in range(n):
        words = synthetic_words(int(seconds * 2.5), seconds, rng)
        t = np.arange(int(seconds * sr)) / sr
        # speech-like enough for FLAC: tones with a wobble plus noise (pure tones compress too well)
        audio = np.stack([0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(3 * t)) * t),
                          0.3 * np.sin(2 * np.pi * (240 + 60 * np.sin(2 * t)) * t)])
        audio += 0.05 * rng.standard_normal(audio.shape)
        rows.append(contracts.example_row(
            example_id=f"bench{i:05d}", kind="synthetic", language="en", duration_s=seconds, sample_rate=sr,
            num_samples=audio.shape[1], audio=encode_flac(audio.astype(np.float32), sr), words=words))
        if len(rows) == per_shard:
            paths.append(write_shard(d / f"shard-{len(paths):04d}.parquet", rows, row_group_size=8))
            rows = []
    if rows:
        paths.append(write_shard(d / f"shard-{len(paths):04d}.parquet", rows, row_group_size=8))
    return paths


def raw_decode(paths: list[Path]) -> tuple[int, float]:
    import pyarrow.parquet as pq
    from tandem.pipelines.io.audio import decode_flac
    n, secs = 0, 0.0
    for p in paths:
        pf = pq.ParquetFile(p)
        for rg in range(pf.num_row_groups):
            for b in pf.read_row_group(rg, columns=["audio"]).column(0).to_pylist():
                x, sr = decode_flac(b)
                n += 1
                secs += x.shape[1] / sr
    return n, secs


def timed(fn, repeat: int = 3):
    """(best seconds of `repeat` runs, result): best, because the machine may be shared."""
    best, out = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, out


def loader_pass(paths, **kw) -> tuple[int, float]:
    from tandem.pipelines.train import ShardDataset
    n, secs = 0, 0.0
    for ex in ShardDataset(paths, **kw):
        n += 1
        secs += ex["audio"].shape[1] / ex["sample_rate"]
    return n, secs


def dataloader_pass(paths, workers: int, **kw) -> tuple[float, float, int, float]:
    """(start-up s, steady seconds, examples, audio s) after the first batch (worker start-up apart)."""
    from tandem.pipelines.train import ShardDataset, collate
    from torch.utils.data import DataLoader
    n, secs = 0, 0.0
    t0 = time.perf_counter()
    t1 = None
    for b in DataLoader(ShardDataset(paths, **kw), batch_size=4, num_workers=workers, collate_fn=collate):
        if t1 is None:
            t1 = time.perf_counter()
            continue
        n += len(b["example_id"])
        secs += float(b["audio_lengths"].sum()) / b["sample_rate"][0]
    return t1 - t0, time.perf_counter() - t1, n, secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    from tandem.pipelines.train.tokens import ByteTokenizer
    torch.set_num_threads(1)
    sr = 24000
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        paths = make_data(Path(tmp), args.examples, args.seconds, sr)
        size = sum(p.stat().st_size for p in paths)
        print(f"data: {args.examples} examples x {args.seconds:g} s, 24 kHz stereo FLAC, {len(paths)} shards, "
              f"{size / 1e6:.1f} MB, row groups of 8")
        rows = []

        def record(name, dt, n, secs, workers=1):
            rows.append((name, n / dt / workers, secs / dt / workers))

        dt, (n, secs) = timed(lambda: raw_decode(paths))
        record("raw: read row groups + decode FLAC", dt, n, secs)
        tok = ByteTokenizer()
        variants = [
            ("loader: whole examples", {}),
            ("loader: + text tokens", {"tokenizer": tok}),
            ("loader: random 5 s crops + tokens", {"tokenizer": tok, "max_duration_s": 5.0}),
            ("loader: 2 s chunks + tokens", {"tokenizer": tok, "max_duration_s": 2.0, "crop": "chunk"}),
            ("loader: resample to 16 kHz + tokens", {"tokenizer": tok, "sample_rate": 16000}),
        ]
        for name, kw in variants:
            dt, (n, secs) = timed(lambda kw=kw: loader_pass(paths, **kw))
            record(name, dt, n, secs)
        startup, dt, n, secs = dataloader_pass(paths, args.workers, tokenizer=tok)
        record(f"DataLoader {args.workers} workers + tokens (per worker)", dt, n, secs, args.workers)
        base = rows[0][2]
        print(f"{'':48s} {'examples/s':>11s} {'audio s/s':>10s} {'vs raw':>7s}")
        for name, eps, aps in rows:
            print(f"{name:48s} {eps:11.1f} {aps:10.0f} {aps / base:7.2f}")
        print(f"DataLoader start-up to first batch: {startup:.2f} s (not in the rate above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
