"""Near-duplicate audio: fingerprint distances of copies against different recordings, on real speech.

    .venv/bin/python bench/fingerprint.py [--clips 8] [--cache ~/.cache/tandem/eval-debs] [--json out.json]

Clips are 5 Debian asterisk prompts (real people, 8 kHz) joined with 0.3 s pauses. Two speakers of
one language recorded the same prompts, so every clip has a *different recording of the same text*.
Copies are the clip resampled, transcoded (MP3 24 kbps, Opus 12 kbps, telephone band MP3 16 kbps),
re-levelled (-9 dB), trimmed (0.37 s off the start, 0.5 s off the end) and all at once; non-copies
are the same text by the other speaker, and other text by the same speaker. Everything is
resampled to 24 kHz first, as ingest does. Real calls (pyannote's sample.wav, ../shared/eval-conv)
add the hardest negatives: other stretches of the same call (same people, same line).

The threshold (`filters.dedup.audio_max_ber`) is chosen on the **tuning** part (Italian: Carlo and
Menardi) and reported on the **reporting** part (French June / Armelle, Spanish Allison / July, the
calls). Distances are bit error rates at the best alignment; recall counts copies the incremental
index finds (its vote path), not only the pairwise distance.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_eval_set as ev  # noqa: E402
from filters.fingerprint import FingerprintIndex, fingerprint  # noqa: E402
from pipelines.core.config import load_config  # noqa: E402

SR = 24000
PAIRS = {"it": ("it_IT_m_Carlo", "it_IT_f_Menardi"), "fr": ("fr_CA_f_June", "fr"), "es": ("es_MX_f_Allison", "es")}
TUNE, REPORT = ("it",), ("fr", "es", "calls")
SHARED = ROOT.parent / "shared" / "eval-conv"


def to24(x: np.ndarray, sr: int) -> np.ndarray:
    from math import gcd
    g = gcd(sr, SR)
    return resample_poly(x, SR // g, sr // g).astype(np.float32)


def ffmpeg(x: np.ndarray, sr: int, args: list[str], fmt: str) -> np.ndarray:
    """x through an FFmpeg encode and back, decoded at 24 kHz mono."""
    enc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
                          *args, "-f", fmt, "pipe:1"], input=x.astype("<f4").tobytes(), capture_output=True, check=True)
    dec = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(SR),
                          "pipe:1"], input=enc.stdout, capture_output=True, check=True)
    return np.frombuffer(dec.stdout, "<f4").copy()


def copies(x: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    tel = ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-b:a", "16k"]
    trim = x[int(0.37 * sr): len(x) - int(0.5 * sr)]
    return {"resample_16k": to24(resample_poly(x, 2, 1).astype(np.float32), 2 * sr),
            "mp3_24k": ffmpeg(x, sr, ["-b:a", "24k"], "mp3"),
            "opus_12k": ffmpeg(x, sr, ["-c:a", "libopus", "-b:a", "12k"], "ogg"),
            "telephone_mp3": ffmpeg(x, sr, tel, "mp3"),
            "gain_-9dB": to24(x * 0.355, sr),
            "trim": to24(trim, sr),
            "trim_opus_gain": ffmpeg(trim * 0.5, sr, ["-c:a", "libopus", "-b:a", "16k"], "ogg")}


def prompt_clips(lang: str, n: int, cache: Path, rng: random.Random):
    root = ev.fetch(ev.PACKAGES[lang], cache)
    base = root / ev.SOUNDS
    a_dir, b_dir = (base / d for d in PAIRS[lang])
    def names(d: Path) -> set[str]:
        return {p.stem for p in d.iterdir() if p.is_file() and p.suffix in (".wav", ".gsm")}
    stems = sorted(names(a_dir) & names(b_dir))

    def load(d: Path, stem: str) -> tuple[np.ndarray, int]:
        p = next(q for q in (d / f"{stem}.wav", d / f"{stem}.gsm") if q.exists())
        x, sr = ev.read_audio(p)
        return ev.trim(x, sr), sr

    def clip(d: Path, sel: list[str]) -> tuple[np.ndarray, int]:
        parts, sr = [], 8000
        for s in sel:
            x, sr = load(d, s)
            parts += [x, np.zeros(int(0.3 * sr), np.float32)]
        return np.concatenate(parts).astype(np.float32), sr

    for _ in range(n):
        sel = rng.sample(stems, 5)
        other = rng.sample([s for s in stems if s not in sel], 5)  # no prompt recording in common
        (a, sr), (b, srb), (c, src) = clip(a_dir, sel), clip(b_dir, sel), clip(a_dir, other)
        yield a, sr, {"same_text_other_speaker": to24(b, srb), "same_speaker_other_text": to24(c, src)}


def call_clips(n: int, rng: random.Random):
    """10 s windows of real calls (mono mix); the non-copy is another window of the same call."""
    import soundfile as sf
    paths = [ev.sample_paths()["wav"], *sorted(SHARED.glob("*.wav")), *sorted(SHARED.glob("*.opus"))]
    for p in paths:
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        w = int(10 * sr)
        for _ in range(max(1, n // len(paths))):
            s = rng.randrange(0, len(x) - 2 * w)
            t = rng.randrange(s + w, len(x) - w)
            yield x[s:s + w], sr, {"other_stretch_same_call": to24(x[t:t + w], sr)}


def measure(part: str, clips, idx_params: dict) -> dict:
    rows = {"copy": {}, "non_copy": {}}
    found, total = 0, 0
    for x, sr, negs in clips:
        fa = fingerprint(to24(x, sr), SR)
        idx = FingerprintIndex(**idx_params)
        idx.add("orig", fa)
        for name, y in copies(x, sr).items():
            fb = fingerprint(y, SR)
            d = idx.pair(fa, fb)
            rows["copy"].setdefault(name, []).append(1.0 if d is None else d)
            total += 1
            found += any(h == "orig" for h, _ in idx.matches("q", fb))
        for name, y in negs.items():
            d = idx.pair(fa, fingerprint(y, SR))
            rows["non_copy"].setdefault(name, []).append(1.0 if d is None else d)
    return {"part": part, "rows": rows, "index_recall": found / max(total, 1), "copies": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tandem" / "eval-debs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    p = load_config()["filters"]["dedup"]
    idx_params = {"max_ber": p["audio_max_ber"], "min_items": p["audio_min_items"], "min_votes": p["audio_min_votes"],
                  "min_cover": p["audio_min_cover"]}
    results = []
    for part, langs in (("tune", TUNE), ("report", REPORT)):
        for lang in langs:
            rng = random.Random(f"{a.seed}-{lang}")
            clips = call_clips(a.clips, rng) if lang == "calls" else prompt_clips(lang, a.clips, a.cache, rng)
            r = measure(part, clips, idx_params)
            r["lang"] = lang
            results.append(r)
            cmax = max(max(v) for v in r["rows"]["copy"].values())
            nmin = min(min(v) for v in r["rows"]["non_copy"].values())
            print(f"[{part}] {lang}: copies max {cmax:.3f}, non-copies min {nmin:.3f}, "
                  f"index recall {r['index_recall']:.2f} ({r['copies']} copies)")
            for kind in ("copy", "non_copy"):
                for name, v in r["rows"][kind].items():
                    print(f"    {kind:8s} {name:24s} mean {np.mean(v):.3f}  min {min(v):.3f}  max {max(v):.3f}")
    tune = [r for r in results if r["part"] == "tune"]
    tmax = max(max(max(v) for v in r["rows"]["copy"].values()) for r in tune)
    tmin = min(min(min(v) for v in r["rows"]["non_copy"].values()) for r in tune)
    print(f"tuning part: copies <= {tmax:.3f}, non-copies >= {tmin:.3f}: midpoint {(tmax + tmin) / 2:.3f}; "
          f"configured audio_max_ber {p['audio_max_ber']}")
    rep = [r for r in results if r["part"] == "report"]
    miss = sum(sum(d > p["audio_max_ber"] for d in v) for r in rep for v in r["rows"]["copy"].values())
    false = sum(sum(d <= p["audio_max_ber"] for d in v) for r in rep for v in r["rows"]["non_copy"].values())
    n_c = sum(len(v) for r in rep for v in r["rows"]["copy"].values())
    n_n = sum(len(v) for r in rep for v in r["rows"]["non_copy"].values())
    print(f"reporting part at {p['audio_max_ber']}: copies missed {miss}/{n_c}, non-copies matched {false}/{n_n}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
