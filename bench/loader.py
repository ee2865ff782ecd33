"""Loader throughput and start-up against raw FLAC decoding of the same bytes, in one run.

    python bench/loader.py [--examples 96] [--seconds 10] [--crop 5] [--workers 2]

Prints examples/s and delivered audio-seconds/s for: raw (read each row group's audio column,
decode every FLAC), the loader in-process (one worker's view) with whole examples, random crops
(seek: only the crop is decoded), chunks, resampling, and torchdata's StatefulDataLoader with
--workers processes. Then the time to the first item: raw, a fresh epoch, and resumes half way
through an epoch (same layout, and elastic onto other numbers of ranks and workers).
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
    from pipelines.core import contracts
    from pipelines.io.audio import encode_flac

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


def raw_decode(paths: list[Path], crop_s: float | None = None) -> tuple[int, float]:
    """Read each row group's audio column and decode every FLAC (or a random `crop_s` window of it,
    by seeking: soundfile alone, no loader logic)."""
    import io

    import pyarrow.parquet as pq
    import soundfile as sf
    rng = np.random.default_rng(0)
    n, secs = 0, 0.0
    for p in paths:
        pf = pq.ParquetFile(p)
        for rg in range(pf.num_row_groups):
            for b in pf.read_row_group(rg, columns=["audio"]).column(0).to_pylist():
                with sf.SoundFile(io.BytesIO(b)) as f:
                    k = f.frames if crop_s is None else min(f.frames, round(crop_s * f.samplerate))
                    f.seek(int(rng.integers(f.frames - k + 1)))
                    x = f.read(k, dtype="float32", always_2d=True)
                n += 1
                secs += len(x) / f.samplerate
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
    from pipelines.train import ShardDataset
    n, secs = 0, 0.0
    for ex in ShardDataset(paths, **kw):
        n += 1
        secs += ex["audio"].shape[1] / ex["sample_rate"]
    return n, secs


def dataloader_pass(paths, workers: int, **kw) -> tuple[float, float, int, float]:
    """StatefulDataLoader: (start-up s to the first batch, steady seconds after it, examples, audio s)."""
    from pipelines.train import ShardDataset, collate
    from torchdata.stateful_dataloader import StatefulDataLoader
    n, secs = 0, 0.0
    t0 = time.perf_counter()
    t1 = None
    for b in StatefulDataLoader(ShardDataset(paths, **kw), batch_size=4, num_workers=workers, collate_fn=collate):
        if t1 is None:
            t1 = time.perf_counter()
            continue
        n += len(b["example_id"])
        secs += float(b["audio_lengths"].sum()) / b["sample_rate"][0]
    return t1 - t0, time.perf_counter() - t1, n, secs


def first_item_s(paths, state=None, workers: int = 0, **kw) -> float:
    """Seconds from building the dataset (and loading `state`) to the first example or batch."""
    from pipelines.train import ShardDataset, collate
    from torchdata.stateful_dataloader import StatefulDataLoader
    t = time.perf_counter()
    ds = ShardDataset(paths, **kw)
    if state is not None:
        ds.load_state_dicts(state)
    if workers:
        next(iter(StatefulDataLoader(ds, batch_size=1, num_workers=workers, collate_fn=collate)))
    else:
        next(iter(ds))
    return time.perf_counter() - t


def half_epoch_states(paths, ranks: int, workers: int, **kw) -> list[dict]:
    """Loader states of `ranks` ranks x `workers` workers stopped about half way through the epoch."""
    from pipelines.train import ShardDataset, collate
    from torchdata.stateful_dataloader import StatefulDataLoader
    states = []
    for r in range(ranks):
        ds = ShardDataset(paths, rank=r, world_size=ranks, **kw)
        dl = StatefulDataLoader(ds, batch_size=1, num_workers=workers, collate_fn=collate)
        half = sum(ds.slot_rows(ranks * workers)[r * workers:(r + 1) * workers]) // 2
        for k, _ in enumerate(dl, start=1):
            if k == half:
                break
        states.append(dl.state_dict())
    return states


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--crop", type=float, default=5.0, help="random crop length (s)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    from pipelines.train.tokens import ByteTokenizer
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
        record("raw: read row groups + decode all FLAC", dt, n, secs)
        dt, (n, secs) = timed(lambda: raw_decode(paths, args.crop))
        record(f"raw: read row groups + seek, decode {args.crop:g} s crops", dt, n, secs)
        tok = ByteTokenizer()
        c = f"{args.crop:g} s"
        variants = [
            ("loader: whole examples", {}),
            ("loader: whole examples + text tokens", {"tokenizer": tok}),
            (f"loader: random {c} crops (seek, decode crop only)", {"max_duration_s": args.crop}),
            (f"loader: random {c} crops + text tokens", {"tokenizer": tok, "max_duration_s": args.crop}),
            ("loader: 2 s chunks + tokens", {"tokenizer": tok, "max_duration_s": 2.0, "crop": "chunk"}),
            ("loader: resample to 16 kHz + tokens", {"tokenizer": tok, "sample_rate": 16000}),
        ]
        for name, kw in variants:
            dt, (n, secs) = timed(lambda kw=kw: loader_pass(paths, **kw))
            record(name, dt, n, secs)
        w = args.workers
        startup, dt, n, secs = dataloader_pass(paths, w, tokenizer=tok)
        record(f"StatefulDataLoader {w} workers + tokens (all workers)", dt, n, secs)
        record(f"StatefulDataLoader {w} workers + tokens (per worker)", dt, n, secs, w)
        base = rows[0][2]
        print(f"{'':54s} {'examples/s':>11s} {'audio s/s':>10s} {'vs raw':>7s}")
        for name, eps, aps in rows:
            print(f"{name:54s} {eps:11.1f} {aps:10.0f} {aps / base:7.2f}")

        # start-up: to the first item, fresh and resumed half way through the epoch
        t_raw, _ = timed(lambda: raw_first(paths))
        fresh0, _ = timed(lambda: (first_item_s(paths), None)[1])
        states = half_epoch_states(paths, 2, 2)
        same = [first_item_s(paths, state=[states[0]], rank=0, world_size=2, workers=2) for _ in range(2)]
        elastic1 = [first_item_s(paths, state=states) for _ in range(3)]
        elastic3 = [first_item_s(paths, state=states, rank=0, world_size=3, workers=1) for _ in range(2)]
        fresh_w = [first_item_s(paths, rank=0, world_size=2, workers=2) for _ in range(2)]
        print()
        print(f"{'start-up to the first item':54s} {'seconds':>11s}")
        for name, v in [("raw: open a shard, read a row group, decode one FLAC", t_raw),
                        ("loader in-process, fresh epoch", fresh0),
                        ("loader in-process, elastic resume (2x2 -> 1x1, half epoch)", min(elastic1)),
                        ("StatefulDataLoader 2 workers, fresh epoch", min(fresh_w)),
                        ("StatefulDataLoader 2 workers, resume same layout (half)", min(same)),
                        ("StatefulDataLoader 1 worker, elastic (2x2 -> 3x1, half)", min(elastic3))]:
            print(f"{name:54s} {v:11.3f}")
        print(f"DataLoader start-up to first batch in the rate run: {startup:.2f} s (not in the rates above)")
    return 0


def raw_first(paths) -> tuple[int, float]:
    import pyarrow.parquet as pq
    from pipelines.io.audio import decode_flac
    pf = pq.ParquetFile(paths[0])
    x, sr = decode_flac(pf.read_row_group(0, columns=["audio"]).column(0)[0].as_py())
    return 1, x.shape[1] / sr


if __name__ == "__main__":
    sys.exit(main())
