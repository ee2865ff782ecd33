"""The curation chain side by side with WhisperX alone, on real speech of people, in one run.

    .venv/bin/python bench/curate.py [--device cpu|cuda] [--minutes 10] [--memory]
        [--set asr.backend=whisperx --set asr.align_model=DIR ...]

Corpus: the real-speech evaluation set (tools/build_eval_set.py: Debian asterisk voices, LibriVox,
pyannote's call; built if missing), concatenated per language into one long recording of about
`--minutes` minutes (a single multi-speaker file, as a user would feed a long interview).
Baseline: WhisperX's own batched transcription of the same file (`whisperx.load_model(...).transcribe`,
the bundled Whisper base, its own VAD, `batch_size` as configured), what a data engineer would run
instead of tandem. Then the tandem chain with the given config: RTF per stage and its ratio to the
baseline, whole-chain hours of audio per device-hour. `--memory` adds peak RSS of the whole chain as
one recording grows from 2 to 20 minutes and as the number of files grows tenfold (child processes).
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

ROOT = Path(__file__).resolve().parents[1]


def eval_set(path: Path) -> dict:
    if not (path / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_eval_set.py"), "--out", str(path)], check=True)
    return json.loads((path / "manifest.json").read_text())


def long_recording(ev: Path, manifest: dict, language: str, minutes: float, out: Path, sr: int = 16000) -> Path:
    """The set's files of one language, looped in order until `minutes`, written block by block."""
    import numpy as np
    import soundfile as sf

    from pipelines.io.audio import load
    files = [f for f in manifest["files"] if f["language"] == language]
    left = int(minutes * 60 * sr)
    with sf.SoundFile(str(out), "w", samplerate=sr, channels=1, subtype="PCM_16") as w:
        while left > 0:
            for f in files:
                x = load(ev / f["wav"], sr, channels=1)[:, 0]
                x = np.concatenate([x, np.zeros(int(0.8 * sr), np.float32)])[:left]
                w.write(x)
                left -= len(x)
                if left <= 0:
                    break
    return out


def whisperx_baseline(path: Path, cfg: dict, device: str) -> dict:
    """WhisperX alone: load once, then time its batched transcription of the file."""
    import whisperx

    from pipelines.models.asr_base import AsrParams
    from pipelines.models.cache import ModelsParams
    from pipelines.models.registry import whisper_base_dir
    a = AsrParams.from_config(cfg)
    model_dir = str(a.model or whisper_base_dir(ModelsParams.from_config(cfg)))
    compute = a.compute_type if device == "cpu" else "float16"
    model = whisperx.load_model(model_dir, device, compute_type=compute, threads=2, vad_method="pyannote")
    audio = whisperx.load_audio(str(path))
    t0 = time.perf_counter()
    res = model.transcribe(audio, batch_size=int(a["batch_size"]))
    dt = time.perf_counter() - t0
    words = sum(len(s["text"].split()) for s in res["segments"])
    return {"seconds": dt, "audio_s": len(audio) / 16000, "segments": len(res["segments"]), "words": words,
            "model": model_dir, "batch_size": int(a["batch_size"])}


def chain(paths: list[str], cfg: dict, workdir: str) -> dict:
    """The tandem chain (curation + filters) in process; per-stage seconds from the items' timings."""
    from pipelines.core.config import config_hash
    from pipelines.curate.chain import curation_stages, make_items
    from ray_jobs.jobs import filter_stages
    stages = curation_stages(cfg) + filter_stages(cfg)
    for s in stages:
        s.check()
        s.ensure_setup()  # model loading is start-up, not per-hour cost
    t0 = time.perf_counter()
    items, rss_after, words = [], [], 0
    for it in make_items(paths, cfg, config_hash(cfg), workdir):
        for s in stages:
            it = s(it)
        words += sum(len(ex["words"]) for ex in it.get("examples", []))
        it.pop("examples", None)  # the bench keeps timings, not audio: its own memory stays flat
        items.append(it)
        rss_after.append(_current_rss_mib())
    total = time.perf_counter() - t0
    per: dict[str, float] = {}
    for it in items:
        for k, v in it.get("timings", {}).items():
            per[k] = per.get(k, 0.0) + v["seconds"]
    return {"seconds": total, "stages": per, "words": words, "statuses": [i["status"] for i in items],
            "reasons": [r["reason"] for i in items for r in i.get("rejections", [])], "rss_after": rss_after}


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * resource.getpagesize() / 2**20, 1)


def memory_child(minutes: float, files: int, device: str, overrides: list[str]) -> None:
    """Whole chain over `files` copies of a `minutes`-long real recording; prints peak RSS (MiB)."""
    from pipelines.core.config import load_config, parse_overrides
    cfg = _config(device, overrides, load_config, parse_overrides)
    ev = ROOT / "eval_data"
    man = eval_set(ev)
    with tempfile.TemporaryDirectory() as d:
        base = long_recording(ev, man, "en", minutes, Path(d) / "long0.wav")
        paths = [str(base)]
        for i in range(1, files):  # distinct files (a copy would be deduplicated): gain changes the hash
            import numpy as np
            import soundfile as sf
            x, sr = sf.read(str(base), dtype="float32")
            p = Path(d) / f"long{i}.wav"
            sf.write(str(p), x * float(np.float32(0.9 - 0.01 * i)), sr, subtype="PCM_16")
            paths.append(str(p))
        r = chain(paths, cfg, d)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # peak: the whole run; rss_after: resident memory after each file (steady state after the first,
    # which allocates the models' working memory: onnxruntime and CTranslate2 keep their arenas)
    print(json.dumps({"minutes": minutes, "files": files, "peak_rss_mib": round(rss, 1), "rss_after_mib": r["rss_after"],
                      "rtf": round(r["seconds"] / (minutes * 60 * files), 4), "statuses": r["statuses"]}))


def _config(device: str, overrides: list[str], load_config, parse_overrides) -> dict:
    over = parse_overrides(overrides)
    if device == "cuda":  # every model stage on the GPU
        st = over.setdefault("resources", {}).setdefault("stages", {})
        for name in ("vad", "diarize", "transcribe", "filter"):
            st.setdefault(name, {})["num_gpus"] = 1
    return load_config(overrides=over)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--language", default="fr", help="language of the long recording (en es fr it)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--eval", type=Path, default=ROOT / "eval_data")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--memory", action="store_true", help="also peak RSS as inputs grow (slow)")
    ap.add_argument("--memory-child", nargs=2, type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.device, args.overrides)
        return
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/curate.py: --device cuda but torch sees no CUDA device")
    torch.set_num_threads(2)
    from pipelines.core.config import load_config, parse_overrides
    cfg = _config(args.device, args.overrides, load_config, parse_overrides)
    man = eval_set(args.eval)
    with tempfile.TemporaryDirectory() as d:
        path = long_recording(args.eval, man, args.language, args.minutes, Path(d) / f"long_{args.language}.wav")
        base = whisperx_baseline(path, cfg, args.device)
        r = chain([str(path)], cfg, d)
    audio_s, b = base["audio_s"], base["seconds"]
    print(f"real speech: one {audio_s / 60:.1f}-min {args.language} recording from {args.eval} "
          f"(device {args.device}, torch threads 2)")
    print(f"{'':<34}{'seconds':>9}{'RTF':>8}{'x WhisperX':>12}")
    print(f"{'WhisperX batched transcription':<34}{b:>9.1f}{b / audio_s:>8.3f}{1.0:>12.2f}"
          f"   ({base['words']} words, batch {base['batch_size']})")
    asr = r["stages"].get("transcribe", 0.0)
    for k, v in r["stages"].items():
        print(f"  tandem stage {k:<20}{v:>9.1f}{v / audio_s:>8.3f}{v / b:>12.2f}")
    print(f"{'tandem chain (curate + filters)':<34}{r['seconds']:>9.1f}{r['seconds'] / audio_s:>8.3f}"
          f"{r['seconds'] / b:>12.2f}   ({r['words']} words)")
    flt = r["stages"].get("filter", 0.0)
    print(f"filter stage / ASR: {flt / asr:.2f}" if asr else "no transcribe stage timing")
    print(f"whole chain: {audio_s / r['seconds']:.1f} hours of audio per {args.device} hour")
    print("statuses:", r["statuses"], "rejections:", r["reasons"])
    if args.memory:
        for minutes, files in ((2, 1), (20, 1), (2, 10)):
            cmd = [sys.executable, __file__, "--device", args.device, "--memory-child", str(minutes), str(files)]
            cmd += [x for o in args.overrides for x in ("--set", o)]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            print(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-2000:])


if __name__ == "__main__":
    main()
