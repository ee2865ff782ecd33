"""How DNSMOS' window hop moves its score on real speech (the measurement behind filters.quality.dnsmos_hop_s).

    .venv/bin/python bench/dnsmos_hop.py [--files N] [--hop 9.01]

Each file of the real-speech set (tools/build_eval_set.py) is split onto two channels by its
reference RTTM, clean and with white noise at 20/10/5 dB, as `bench/realspeech.py --calibrate`
does; every channel's speech is scored on all 9.01 s windows 1 s apart (speechmos' hop) and the
overall MOS compared: the every-second mean, speechmos' own windows (its float rounding skips
some), and `--hop` spread windows (their starts taken on the 1 s grid).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    import soundfile as sf
    from realspeech import GRID, _mask
    from filters.quality import QualityFilter
    from pipelines.core.config import load_config
    from pipelines.io.rttm import read_rttm
    from pipelines.models.dnsmos import _POLY, WINDOW_S, Dnsmos
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval", type=Path, default=ROOT / "eval_data")
    ap.add_argument("--files", type=int, default=0, help="first N files only (0: all)")
    ap.add_argument("--hop", type=float, default=9.01)
    a = ap.parse_args()
    clips: list[tuple[str, np.ndarray]] = []
    length = int(WINDOW_S * 16000)

    def every_second(n: int) -> list[int]:  # speechmos' grid: full windows from 0, 1 s apart
        return [k * 16000 for k in range(int(np.floor(n / 16000) - WINDOW_S) + 1) if k * 16000 + length <= n]

    class Recorder(Dnsmos):
        def score_many(self, xs):
            clips.extend((cond, r) for r in self.raw_windows(xs, starts=every_second))
            return [{"ovrl": np.nan, "sig": np.nan, "bak": np.nan} for _ in xs]

    qf = QualityFilter.from_config(load_config())
    qf.dnsmos = Recorder(2)
    qf.load(threads=2)
    man = json.loads((a.eval / "manifest.json").read_text())
    for f in man["files"][: a.files or None]:
        x, sr = sf.read(str(a.eval / f["wav"]), dtype="float32")
        ref = read_rttm(a.eval / f["rttm"])
        tot: dict[str, float] = defaultdict(float)
        for t in ref:
            tot[t["speaker"]] += t["end_s"] - t["start_s"]
        main_spk, n, g = max(tot, key=tot.get), len(x), int(GRID * sr)
        m0 = np.repeat(_mask([(t["start_s"], t["end_s"]) for t in ref if t["speaker"] == main_spk], n // g + 1), g)[:n]
        m1 = np.repeat(_mask([(t["start_s"], t["end_s"]) for t in ref if t["speaker"] != main_spk], n // g + 1), g)[:n]
        p_speech = float(np.mean(x[m0 | m1].astype(np.float64) ** 2))
        rng = np.random.default_rng(0)
        for snr in (None, 20.0, 10.0, 5.0):
            y = x if snr is None else x + rng.standard_normal(n).astype(np.float32) * np.float32(
                np.sqrt(p_speech / 10 ** (snr / 10)))
            cond = "clean" if snr is None else f"snr{snr:g}"
            ex = {"example_id": f["id"], "sample_rate": sr, "kind": "real", "language": f["language"]}
            qf.measure(ex, np.stack([y * m0, y * m1]).astype(np.float32))
        print(f"{f['id']}: {len(clips)} channel clips so far", flush=True)

    def mos(raw, idx):
        return float(np.mean(_POLY["ovrl"](raw[sorted(set(idx)), 2])))

    per = round(a.hop)
    res = defaultdict(lambda: defaultdict(list))
    for cond, raw in clips:
        k = len(raw)
        quirk = [i for i in range(k) if int((i + WINDOW_S) * 16000) - int(i * 16000) >= length]
        spread = [round(v) for v in np.linspace(0, k - 1, int(np.ceil((k - 1) / per)) + 1)] if k > 1 else [0]
        for name, idx in (("every 1 s", range(k)), ("speechmos", quirk or [0]), (f"hop {a.hop:g}", spread)):
            res[cond][name].append(mos(raw, idx))
    names = ["every 1 s", "speechmos", f"hop {a.hop:g}"]
    print(f"{len(clips)} channel clips; DNSMOS overall, min..max (clips under 2.2)")
    for cond, d in res.items():
        print(f"  {cond:6s} " + "  ".join(f"{k}: {min(v):.2f}..{max(v):.2f} ({sum(x < 2.2 for x in v)})" for k, v in d.items()))
    ref_all = np.concatenate([res[c]["every 1 s"] for c in res])
    for k in names[1:]:
        v = np.concatenate([res[c][k] for c in res])
        print(f"{k} - every 1 s: sd {np.std(v - ref_all):.3f}, max |diff| {np.max(np.abs(v - ref_all)):.3f}, "
              f"other side of 2.2: {int(np.sum((v < 2.2) != (ref_all < 2.2)))}")


if __name__ == "__main__":
    main()
