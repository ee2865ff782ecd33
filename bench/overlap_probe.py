"""Why a call's overlap is or is not kept: the embedded diarizer's own evidence at each reference
overlap, and what hearing a second speaker at a lower activation would find.

    nice .venv/bin/python bench/overlap_probe.py SNG0072 --shift 1.5 [--sweep]

For a call of ../shared/eval-conv (mixed to mono as bench/conversation.py does, channel 2 moved
by --shift s) prints, per reference overlap run (both channels' VAD active): each channel's level
(dB, 100 ms), the speaker count pyannote's counting step averages over the 5 s chunks, and each
chunk's local-speaker activations there with their clusters. --sweep: for activation thresholds
0.5 to 0.1 (the shipped overlap_onset), the reference overlap the count finds and the false
overlap it finds in one-speaker speech (frame proxy of the full view; seconds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.conversation import CONV, GRID, grid, levels, shifted


def count_runs(seg, frames, act: float, onset: float, n: int) -> np.ndarray:
    """(n,) bool on the 10 ms grid: frames where the chunk-averaged count of local speakers active
    above `act` reaches two (k + onset rounding, as pipelines.models.pyannote_parts)."""
    from pyannote.audio.core.inference import Inference
    from pyannote.core import SlidingWindowFeature
    b = (seg.data > act).astype(np.float32).sum(-1, keepdims=True)
    c = Inference.aggregate(SlidingWindowFeature(b, seg.sliding_window), frames, hamming=False,
                            missing=0.0, skip_average=False)
    v = c.data[:, 0]
    two = (v >= 2) | ((v >= 1) & (v - np.floor(v + 1e-6) >= onset - 1e-6))
    g = np.zeros(n, bool)
    for j in np.flatnonzero(two):
        i = int(c.sliding_window[j].middle / GRID)
        g[i:i + 2] = i < n  # pyannote's frames (~17 ms) onto the 10 ms grid
    return g[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("call")
    ap.add_argument("--shift", type=float, default=0.0)
    ap.add_argument("--sweep", action="store_true")
    a = ap.parse_args(argv)
    import soundfile as sf
    import torch

    from pipelines.core.config import load_config, section, typed_section
    from pipelines.models.diarization import DIAR_SR, DiarizeParams, Diarizer, read_block
    from pipelines.models.overlap import runs
    from pipelines.models.vad import SileroVad
    torch.set_num_threads(1)
    cfg = load_config(None)
    src = next(p for p in CONV.glob(f"{a.call}.*") if p.suffix != ".json")
    x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    x = shifted(x, sr, a.shift) if a.shift else x
    with tempfile.TemporaryDirectory() as work:
        st, mono = Path(work) / "st.wav", Path(work) / "mono.wav"
        sf.write(str(st), x, sr)
        sf.write(str(mono), x.mean(axis=1), sr, subtype="PCM_16")
        vad = SileroVad.from_config(section(cfg, "vad"), threads=1)
        n = int(np.ceil(len(x) / sr / GRID))
        ref = [grid(vad.file_regions(str(st), channel=c), n) for c in (0, 1)]
        wav = read_block(str(mono), 0.0, len(x) / sr)
    lev = levels(x, sr)
    d = Diarizer.load(typed_section(DiarizeParams, cfg, "diarize", cache_dir=None))
    cap = {}
    cl = d.pipeline.clustering
    call = type(cl).__call__

    def keep(self, *args, **kw):
        out = call(self, *args, **kw)
        cap["hard"] = out[0].copy()
        return out

    def hook(name, obj, **kw):
        if name == "segmentation":
            cap["seg"] = obj
        if name == "speaker_counting":
            cap["frames"] = obj.sliding_window
    type(cl).__call__ = keep
    try:
        d.pipeline({"waveform": torch.from_numpy(wav)[None], "sample_rate": DIAR_SR, "uri": a.call},
                   hook=hook, **d._speaker_kw())
    finally:
        type(cl).__call__ = call
    seg, frames, hard = cap["seg"], cap["frames"], cap["hard"]
    both = ref[0] & ref[1]
    onset = float(d.p.overlap_onset)
    for i, j in runs(both):
        t0, t1 = i * GRID, j * GRID
        print(f"overlap {t0:.2f}-{t1:.2f} s  level ch1/ch2 dB {lev[0, i:j].mean():.0f} / {lev[1, i:j].mean():.0f}"
              f"  count >= 2 on {count_runs(seg, frames, d.p.onset, onset, n)[i:j].mean():.2f} of it")
        for c in range(seg.data.shape[0]):
            cs = seg.sliding_window[c].start
            if cs < t1 and cs + seg.sliding_window.duration > t0:
                k0 = max(0, int((t0 - cs) / frames.step))
                k1 = min(seg.data.shape[1], max(k0 + 1, int((t1 - cs) / frames.step)))
                act = seg.data[c, k0:k1]
                print(f"  chunk at {cs:.0f} s: clusters {hard[c].tolist()}  max activation "
                      f"{[round(float(v), 2) for v in act.max(0)]}  both above onset {((act > d.p.onset).sum(1) >= 2).mean():.2f}")
    if a.sweep:
        one = (ref[0] | ref[1]) & ~both
        for act in (0.5, 0.4, 0.3, 0.2, 0.1):
            g = count_runs(seg, frames, act, onset, n)
            print(f"activation {act}: overlap found {(g & both).sum() * GRID:.2f} of {both.sum() * GRID:.2f} s, "
                  f"false in one-speaker speech {(g & one).sum() * GRID:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
