"""Real conversation through the two-channel split: DER, overlap kept, channel purity.

    nice .venv/bin/python bench/conversation.py [--old] [--turns-only] [--variant K=V[,K=V]] [--json F]

Inputs: the real two-party calls of ../shared/eval-conv/ (stereo, one party per channel) and
pyannote's sample call (sample.rttm). Each call is mixed to mono and run through the curation
chain in-process (`curation_stages`: ingest, vad, diarize, transcribe, assemble; what `tandem
curate` runs before the filters), and the assembled examples' two-channel FLAC audio is decoded
and placed at its span: that is what the user gets. `--turns-only` stops after diarize and builds
the channels from the turns as assembly masks them (main speaker by exclusive speech; no words):
fast, for tuning.

Reference: per channel, silero VAD (the curation VAD's settings) on that channel; the sample's RTTM.
The calls hold almost no overlap (SNG0072 0.0 s, SNG0480 0.0 s, MUL1011 0.75 s by VAD), so each is
also mixed with its second channel moved by `--shift` seconds (default +1.5 and -1.5: the right
party answers 1.5 s earlier, or later): the same real voices, now talking over each other at turn
changes (2 to 23% of speech overlapped); id `SNG0072+1.5`, reference shifted alike.
Per file, on a 10 ms grid, collar 0:
- DER: pyannote.metrics over the diarization turns (overlap turns included), collar 0.
- overlap kept: share of reference overlap time (both reference speakers active) where both output
  channels carry audio.
- purity: share of each reference speaker's solo speech carried on exactly its own channel (the one
  most of it lands on alone), over its solo speech carried at all, time-weighted over speakers.
- carried: share of reference solo speech on any output channel.
- gap_kept_db / gap_missed_db: median level gap (dB, 100 ms power, one channel against the other)
  over the reference overlap kept / missed: how far under the louder voice the quieter one is.
`--old` adds the exclusive split of before (diarize.keep_overlap=false, overlap_onset=0.5) as a
second variant.
Tuning files (thresholds chosen there): sample, SNG0072; reporting: SNG0480, MUL1011.

Measured 2026-12-04 (whole chain, default config, then --old): reporting files SNG0480+1.5,
SNG0480-1.5, MUL1011+1.5, MUL1011-1.5: overlap kept 0.904/0.912/0.750/0.791 (before 0.039/0.026/
0.134/0.040), DER 0.074/0.068/0.097/0.088 (before 0.224/0.245/0.138/0.151), purity 0.951/0.962/
0.947/0.953; unshifted SNG0480 and MUL1011 DER 0.056/0.063, purity 0.993/0.987 (MUL1011's 0.8 s
of reference overlap, two backchannels, is not heard: kept 0.0). Tuning: sample kept 0.968 (0.0),
DER 0.056 (0.120).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONV = ROOT.parent / "shared" / "eval-conv"
GRID = 0.01
FILES = [("sample", "tuning"), ("SNG0072", "tuning"), ("SNG0480", "reporting"), ("MUL1011", "reporting")]


def shifted(x: np.ndarray, sr: int, shift_s: float) -> np.ndarray:
    """Stereo `x` with channel 1 moved `shift_s` earlier (negative: later), zeros where it ran out."""
    k = round(abs(shift_s) * sr)
    y = np.zeros_like(x)
    y[:, 0] = x[:, 0]
    if shift_s >= 0:
        y[:len(x) - k, 1] = x[k:, 1]
    else:
        y[k:, 1] = x[:len(x) - k, 1]
    return y


def load_inputs(work: Path, vad, shifts: list[float]) -> list[dict]:
    """Mono mixes written to `work` with their reference turns {start_s, end_s, speaker}."""
    import soundfile as sf
    from pipelines.io.rttm import read_rttm

    from tandem.testing.audio import sample_paths
    out = []
    for fid, part in FILES:
        if fid == "sample":
            p = sample_paths()
            out.append({"id": fid, "part": part, "mono": str(p["wav"]), "ref": read_rttm(p["rttm"])})
            continue
        src = next(p for p in CONV.glob(f"{fid}.*") if p.suffix != ".json")
        x0, sr = sf.read(str(src), dtype="float32", always_2d=True)
        for sh in [0.0, *shifts]:
            x, name = (shifted(x0, sr, sh), f"{fid}{sh:+g}") if sh else (x0, fid)
            stereo = work / f"{name}_stereo.wav"
            sf.write(str(stereo), x, sr)
            ref = [{"start_s": s, "end_s": e, "speaker": f"CH{c}"}
                   for c in (0, 1) for s, e in vad.file_regions(str(stereo), channel=c)]
            mono = work / f"{name}.wav"
            sf.write(str(mono), x.mean(axis=1), sr, subtype="PCM_16")
            out.append({"id": name, "part": part, "mono": str(mono), "ref": ref, "levels": levels(x, sr)})
    return out


def levels(x: np.ndarray, sr: int) -> np.ndarray:
    """(2, frames) dB of each channel on the 10 ms grid, power averaged over 100 ms around each
    frame (a word's level, not a syllable's)."""
    hop = round(GRID * sr)
    k = len(x) // hop
    p = (x[:k * hop].reshape(k, hop, 2) ** 2).mean(axis=1).T
    p = np.stack([np.convolve(c, np.ones(10) / 10, mode="same") for c in p])
    return 10 * np.log10(p + 1e-10)


def grid(turns: list[tuple[float, float]], n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    for s, e in turns:
        a, b = max(0, round(s / GRID)), min(n, round(e / GRID))
        m[a:b] = True
    return m


def channels_from_examples(examples: list[dict], n: int) -> np.ndarray:
    """(2, n) bool: where each output channel carries audio (energy above a tenth of the louder
    channel's; masked-out audio is exact zeros)."""
    import soundfile as sf
    ch = np.zeros((2, n), bool)
    for ex in examples:
        x, sr = sf.read(io.BytesIO(ex["audio"]), dtype="float32", always_2d=True)
        t0 = float(ex["source_spans"][0]["start_s"])
        hop = round(GRID * sr)
        k = len(x) // hop
        e = (x[:k * hop].reshape(k, hop, 2) ** 2).mean(axis=1)
        top = e.max(axis=1, keepdims=True)
        on = (e > 0.1 * top) & (top > 1e-12)
        a = round(t0 / GRID)
        b = min(n, a + k)
        ch[:, a:b] |= on[:b - a].T
    return ch


def channels_from_turns(turns: list[dict], n: int, seed: int) -> np.ndarray:
    from pipelines.curate.assemble import pick_main
    main = pick_main(turns, "most_speech", seed)
    return np.stack([grid([(t["start_s"], t["end_s"]) for t in turns if (t["speaker"] == main) == (c == 0)], n)
                     for c in (0, 1)])


def scores(ref: list[dict], turns: list[dict], ch: np.ndarray, n: int, lev: np.ndarray | None = None) -> dict:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    a, b = Annotation(), Annotation()
    for t in ref:
        a[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for i, t in enumerate(turns):
        b[Segment(t["start_s"], t["end_s"]), i] = t["speaker"]
    der = DiarizationErrorRate(collar=0.0)(a, b)
    spk = sorted({t["speaker"] for t in ref})
    m = {k: grid([(t["start_s"], t["end_s"]) for t in ref if t["speaker"] == k], n) for k in spk}
    both = np.sum([m[k] for k in spk], axis=0) >= 2
    kept = float((both & ch[0] & ch[1]).sum() / both.sum()) if both.sum() >= 10 else None  # < 0.1 s: n/a
    pure = carried = solo_all = 0
    for k in spk:
        solo = m[k] & ~both
        on = [int((solo & ch[c] & ~ch[1 - c]).sum()) for c in (0, 1)]
        pure += max(on)
        carried += int((solo & (ch[0] | ch[1])).sum())
        solo_all += int(solo.sum())
    hyp_ov = np.zeros(n, bool)
    for t in turns:
        if t.get("overlap"):
            hyp_ov |= grid([(t["start_s"], t["end_s"])], n)
    gaps = {}
    if lev is not None and kept is not None:  # how far under the louder voice the quieter one is
        m_ = min(n, lev.shape[1])
        gap = np.abs(lev[0, :m_] - lev[1, :m_])
        on = both[:m_] & ch[0, :m_] & ch[1, :m_]
        for key, sel in (("gap_kept_db", on), ("gap_missed_db", both[:m_] & ~on)):
            gaps[key] = round(float(np.median(gap[sel])), 1) if sel.sum() >= 10 else None
    return {**gaps, "der": round(float(der), 3), "overlap_kept": None if kept is None else round(kept, 3),
            "purity": round(pure / max(1, carried), 3), "carried": round(carried / max(1, solo_all), 3),
            "ref_overlap_s": round(both.sum() * GRID, 1), "hyp_overlap_s": round(hyp_ov.sum() * GRID, 1),
            "speakers": len({t["speaker"] for t in turns})}


def run(inputs: list[dict], cfg: dict, turns_only: bool, log=print) -> list[dict]:
    import soundfile as sf
    from pipelines.core.config import config_hash
    from pipelines.curate.chain import curation_stages, make_items
    stages = curation_stages(cfg)
    if turns_only:
        stages = [s for s in stages if s.name in ("ingest", "vad", "diarize")]
    h = config_hash(cfg)
    res = []
    with tempfile.TemporaryDirectory() as out:
        for f in inputs:
            t0 = time.perf_counter()
            item = next(make_items([f["mono"]], cfg, h, out))
            for st in stages:
                item = st(item)
            n = int(np.ceil(sf.info(f["mono"]).duration / GRID))
            r = {"id": f["id"], "part": f["part"], "status": item.get("status"),
                 "seconds": round(time.perf_counter() - t0, 1)}
            if "turns" not in item:
                r["error"] = "; ".join(x.get("detail", "")[:300] for x in item.get("rejections") or [])
            else:
                turns = item["turns"]
                ch = (channels_from_turns(turns, n, int(item["seed"])) if turns_only
                      else channels_from_examples(item.get("examples") or [], n))
                r.update(scores(f["ref"], turns, ch, n, f.get("levels")))
                r["examples"] = len(item.get("examples") or [])
            log(json.dumps(r))
            res.append(r)
    return res


def table(variants: list[str], per: list[list[dict]]) -> str:
    cols = ("der", "overlap_kept", "purity", "carried", "ref_overlap_s", "hyp_overlap_s", "speakers",
            "gap_kept_db", "gap_missed_db")
    lines = ["| variant | file | part | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for v, rs in zip(variants, per):
        for r in rs:
            lines.append(f"| {v} | {r['id']} | {r['part']} | " + " | ".join(str(r.get(c, r.get("error", "")))
                                                                              for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--old", action="store_true", help="also the exclusive split of before")
    ap.add_argument("--turns-only", action="store_true", help="stop after diarize (fast, for tuning)")
    ap.add_argument("--only", nargs="*", default=None, help="file ids (shifted ones included)")
    ap.add_argument("--shift", type=float, nargs="*", default=[1.5, -1.5],
                    help="also each call with its second channel moved this many seconds earlier")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch
    from pipelines.core.config import load_config, parse_overrides, section
    from pipelines.models.vad import SileroVad
    torch.set_num_threads(1)
    variants = [a.set] + [a.set + v.split(",") for v in a.variant]
    if a.old:
        variants.append(a.set + ["diarize.keep_overlap=false", "diarize.overlap_onset=0.5"])
    with tempfile.TemporaryDirectory() as work:
        vad = SileroVad.from_config(section(load_config(a.config), "vad"), threads=1)
        inputs = [f for f in load_inputs(Path(work), vad, a.shift) if not a.only or f["id"] in a.only]
        per = []
        for v in variants:
            print("variant:", v or "default", file=sys.stderr)
            per.append(run(inputs, load_config(a.config, parse_overrides(v)), a.turns_only,
                           log=lambda s: print(s, file=sys.stderr)))
    names = [",".join(v) or "default" for v in variants]
    print(table(names, per))
    if a.json:
        a.json.write_text(json.dumps({"variants": names, "results": per}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
