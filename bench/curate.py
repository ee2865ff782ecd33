"""Curation benchmark: stage times over a fixed corpus vs bare faster-whisper in the same run,
and peak memory of ingest+VAD on a 10-min vs a 60-min input.

    .venv/bin/python bench/curate.py [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def corpus(d: Path) -> list[str]:
    from tandem.testing.audio import EN_TURNS_2, EN_TURNS_3, make_conversation, sample_paths, write_audio
    paths = [str(sample_paths()["wav"])]
    for name, turns, seed in [("c2", EN_TURNS_2, 1), ("c3", EN_TURNS_3, 2)]:
        a, _, _ = make_conversation(turns, "en", 24000, seed=seed)
        paths.append(str(write_audio(d / f"{name}.wav", a, 24000)))
    return paths


def bare_whisper(paths: list[str], cfg: dict) -> tuple[float, float]:
    """Seconds and audio seconds of the bare model with word timestamps on the same files."""
    import soundfile as sf
    from faster_whisper import WhisperModel
    from tandem.pipelines.models.asr import _to_16k_mono
    from tandem.pipelines.models.registry import whisper_base_dir
    m = WhisperModel(str(whisper_base_dir(cfg)), device="cpu", compute_type="int8", cpu_threads=2)
    t, audio_s = 0.0, 0.0
    for p in paths:
        x, sr = sf.read(p, dtype="float32")
        a = _to_16k_mono(x, sr)
        t0 = time.perf_counter()
        segs, _ = m.transcribe(a, word_timestamps=True, beam_size=5, condition_on_previous_text=False)
        list(segs)
        t += time.perf_counter() - t0
        audio_s += len(a) / 16000
    return t, audio_s


def memory_child(minutes: float) -> None:
    """Ingest + VAD + diarize on a long espeak conversation; prints peak RSS (MiB)."""
    from tandem.pipelines.core.config import config_hash, load_config
    from tandem.pipelines.curate.chain import make_items
    from tandem.pipelines.curate.diarize import DiarizeStage
    from tandem.pipelines.curate.ingest import IngestStage
    from tandem.pipelines.curate.vad import VadStage

    from tandem.testing.audio import write_long_file
    cfg = load_config()
    with tempfile.TemporaryDirectory() as d:
        p = write_long_file(Path(d) / "long.wav", minutes * 60, 16000)
        (item,) = make_items([str(p)], cfg, config_hash(cfg), d)
        t0 = time.perf_counter()
        for st in (IngestStage.from_config(cfg), VadStage.from_config(cfg), DiarizeStage.from_config(cfg)):
            item = st(item)
        dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"minutes": minutes, "peak_rss_mib": round(rss, 1), "seconds": round(dt, 1),
                      "rtf": round(dt / (minutes * 60), 4), "status": item["status"],
                      "speakers": len({t["speaker"] for t in item.get("turns", [])})}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", type=float, default=None)
    args = ap.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    import torch
    torch.set_num_threads(2)
    from tandem.pipelines.core.config import config_hash, load_config
    from tandem.pipelines.curate.chain import run_local
    cfg = load_config()
    with tempfile.TemporaryDirectory() as d:
        paths = corpus(Path(d))
        base_s, audio_s = bare_whisper(paths, cfg)
        t0 = time.perf_counter()
        items = list(run_local(paths, cfg, config_hash(cfg), d))
        total = time.perf_counter() - t0
    per: dict[str, float] = {}
    for it in items:
        for k, v in it.get("timings", {}).items():
            per[k] = per.get(k, 0.0) + v["seconds"]
    print(f"corpus: {len(paths)} files, {audio_s:.1f} s of audio")
    print(f"bare faster-whisper (base int8, 2 threads, word timestamps): {base_s:.1f} s  RTF {base_s / audio_s:.3f}")
    for k, v in per.items():
        print(f"  stage {k:<10} {v:7.1f} s  RTF {v / audio_s:.3f}")
    print(f"curation chain total: {total:.1f} s  RTF {total / audio_s:.3f}  overhead vs bare ASR x{total / base_s:.2f}")
    print("examples:", sum(len(i.get("examples", [])) for i in items), "statuses:", [i["status"] for i in items])
    if not args.skip_memory:
        for minutes in (10, 60):
            r = subprocess.run([sys.executable, __file__, "--memory-child", str(minutes)], capture_output=True, text=True, check=False)
            print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-2000:])


if __name__ == "__main__":
    main()
