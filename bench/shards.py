"""Shard write/read throughput against plain soundfile FLAC encode/decode of the same audio.

    .venv/bin/python bench/shards.py [--examples 64] [--seconds 10]

Write path = FLAC encode + row building + Parquet shard commit (atomic) + catalog ingest.
Read path = streaming row groups + FLAC decode. Baselines: soundfile encode / decode alone,
in the same process, on the same audio. Ratios near 1 mean the shard machinery costs little.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time

import numpy as np
import soundfile as sf
from catalogs import catalog, publish
from pipelines.core.contracts import example_row, source_row, stable_hash
from pipelines.io.audio import decode_flac, encode_flac
from pipelines.store.commit import committed_files, iter_examples
from pipelines.store.writer import JobWriter

SR = 24000


def speechlike(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Two channels of syllable-rate modulated, band-limited noise: compresses like speech, not silence."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.empty((2, n), dtype=np.float32)
    for ch in range(2):
        x = rng.standard_normal(n)
        x = np.convolve(x, np.hanning(24) / 12, mode="same")
        env = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6.28))) * (rng.uniform(size=1) + 0.2)
        out[ch] = (0.2 * x * env).astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    clips = [speechlike(rng, args.seconds) for _ in range(args.examples)]
    audio_s = args.examples * args.seconds

    # baseline: soundfile alone. Every figure is the best of --repeat runs, so the order of the
    # measurements (cold caches) does not decide the ratio.
    base_enc = base_dec = write_s = read_s = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        blobs = []
        for a in clips:
            buf = io.BytesIO()
            sf.write(buf, a.T, SR, format="FLAC", subtype="PCM_16")
            blobs.append(buf.getvalue())
        base_enc = min(base_enc, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in blobs:
            sf.read(io.BytesIO(b), dtype="float32", always_2d=True)
        base_dec = min(base_dec, time.perf_counter() - t0)
        w_s, r_s, nbytes = run_shards(clips, args)
        write_s, read_s = min(write_s, w_s), min(read_s, r_s)
    report(args, audio_s, nbytes, base_enc, write_s, base_dec, read_s)


def run_shards(clips, args):
    out = tempfile.mkdtemp(prefix="tandem-bench-")
    try:
        cfg = {"shards": {"target_bytes": 64 << 20, "row_group_rows": 8, "max_items_per_commit": 10_000}}
        t0 = time.perf_counter()
        w = JobWriter.from_config(out, cfg, run_id="bench", job="bench", config_hash="bench",
                             on_commit=lambda m: publish.ingest_commit(out, m))
        for i, a in enumerate(clips):
            ex = example_row(example_id=stable_hash("b", i), kind="synthetic", language="en",
                             duration_s=args.seconds, sample_rate=SR, num_samples=a.shape[1],
                             audio=encode_flac(a, SR), source_ids=[str(i)])
            w.add({"work_key": str(i), "uri": f"bench:{i}", "kind": "synthetic", "status": "ok",
                   "examples": [ex], "rejections": [], "source": source_row(source_id=str(i))})
        w.close()
        write_s = time.perf_counter() - t0
        nbytes = sum(p.stat().st_size for p in committed_files(out, "shards"))
        t0 = time.perf_counter()
        n = 0
        for row in iter_examples(out, columns=["example_id", "audio", "words"]):
            decode_flac(row["audio"])
            n += 1
        read_s = time.perf_counter() - t0
        assert n == args.examples
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return write_s, read_s, nbytes


def report(args, audio_s, nbytes, base_enc, write_s, base_dec, read_s):
    print(f"corpus: {args.examples} examples x {args.seconds:.0f} s, 2 ch, {SR} Hz = {audio_s:.0f} s of audio; "
          f"shards {nbytes / 1e6:.1f} MB")
    print(f"{'path':<34}{'seconds':>9}{'x realtime':>12}{'MB/s':>8}")
    for name, s in (("soundfile FLAC encode (baseline)", base_enc), ("shard write (encode+commit)", write_s),
                    ("soundfile FLAC decode (baseline)", base_dec), ("shard read (stream+decode)", read_s)):
        print(f"{name:<34}{s:>9.2f}{audio_s / s:>12.0f}{nbytes / 1e6 / s:>8.1f}")
    print(f"ratio write/baseline-encode: {write_s / base_enc:.2f}  (1.00 = no overhead)")
    print(f"ratio read/baseline-decode:  {read_s / base_dec:.2f}")


if __name__ == "__main__":
    main()
