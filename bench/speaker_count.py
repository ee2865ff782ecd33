"""The embedded diarizer's one-speaker criterion on real speech: the last average-linkage merge
distance of a recording's speaker embeddings (diarize.single_speaker_distance) and the largest
distance between two local speakers of one segmentation chunk (diarize.local_pair_distance) on
one-voice and multi-speaker files.

    .venv/bin/python tools/build_eval_set.py --out /tmp/eval_s1 --seed 1 --no-sample
    .venv/bin/python bench/speaker_count.py eval_data /tmp/eval_s1 [...] [--set diarize.KEY=VALUE]

Multi-speaker files are the eval sets' recordings; one-voice files are each reference speaker's
turns of them with every stretch another speaker talks in cut out (up to 120 s). Prints the
distributions and, per pair of cuts, how many files of each kind the criterion gets right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def own_turns(spk: dict, who: str) -> list[tuple[float, float]]:
    """`who`'s turns minus every stretch another reference speaker talks in."""
    out = []
    for a, b in spk[who]:
        cuts = [(a, b)]
        for other, segs in spk.items():
            if other == who:
                continue
            for a2, b2 in segs:
                cuts = [q for c0, c1 in cuts for q in ((c0, min(c1, a2)), (max(c0, b2), c1)) if q[1] - q[0] > 0.05]
        out += cuts
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", type=Path, help="eval set directories (tools/build_eval_set.py --out)")
    ap.add_argument("--max-one-s", type=float, default=120.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()

    import soundfile as sf
    import soxr

    from pipelines.core.config import load_config, parse_overrides, typed_section
    from pipelines.models import pyannote_parts
    from pipelines.models.cache import ModelsParams, cache_dir
    from pipelines.models.diarization import DIAR_SR, DiarizeParams, Diarizer

    seen: list[tuple[float, float]] = []
    cluster = pyannote_parts.CenteredAgglomerativeClustering.cluster

    def spy(self, embeddings, **kw):
        if len(embeddings) >= 2:
            seen.append((pyannote_parts.last_merge(embeddings), self._pair))
        return cluster(self, embeddings, **kw)

    pyannote_parts.CenteredAgglomerativeClustering.cluster = spy
    cfg = load_config(None, parse_overrides(args.set))
    p = typed_section(DiarizeParams, cfg, "diarize", cache_dir=str(cache_dir(ModelsParams.from_config(cfg))))
    diarizer = Diarizer.load(p)
    dist: dict[str, list[tuple[float, float]]] = {"one": [], "multi": []}

    def last_merge(wav: np.ndarray, uri: str) -> tuple[float, float] | None:
        seen.clear()
        diarizer.diarize_waveform(wav, uri)
        return seen[0] if seen else None

    for root in args.sets:
        for path in sorted((root / "audio").glob("*.wav")):
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = soxr.resample(x.mean(axis=1), sr, DIAR_SR)
            spk: dict[str, list] = {}
            for line in (root / "ref" / f"{path.stem}.rttm").read_text().splitlines():
                f = line.split()
                spk.setdefault(f[7], []).append((float(f[3]), float(f[3]) + float(f[4])))
            if len(spk) > 1 and (v := last_merge(x, path.stem)) is not None:
                dist["multi"].append(v)
            gap = np.zeros(int(0.3 * DIAR_SR), np.float32)
            for who in spk:
                parts = [q for a, b in own_turns(spk, who) for q in (x[int(a * DIAR_SR):int(b * DIAR_SR)], gap)]
                y = np.concatenate(parts)[:int(args.max_one_s * DIAR_SR)] if parts else np.zeros(0)
                if len(y) >= 20 * DIAR_SR and (v := last_merge(y, f"{path.stem}-{who}")) is not None:
                    dist["one"].append(v)
            print(f"{root.name}/{path.stem}: done", flush=True)
    one, multi = np.array(dist["one"]).reshape(-1, 2), np.array(dist["multi"]).reshape(-1, 2)
    for name, v in (("one voice", one), ("several", multi)):
        m, q = v[:, 0], v[:, 1][v[:, 1] > 0]
        print(f"{name:10s} {len(v):3d} files  last merge min {m.min():.3f} median {np.median(m):.3f} "
              f"max {m.max():.3f}; in-chunk pair in {len(q)} files"
              + (f", min {q.min():.3f} max {q.max():.3f}" if len(q) else ""))
    print(f"current: single_speaker_distance {p.single_speaker_distance}, local_pair_distance {p.local_pair_distance}")
    print("cut   pair   one-voice right   multi right")
    for cut in (0.30, 0.33, 0.36, 0.40, 0.46):
        for pair in (0.42, 0.45, 0.48, 2.0):
            is_one = [(o[:, 0] < cut) & (o[:, 1] < pair) for o in (one, multi)]
            print(f"{cut:.2f}  {pair:.2f}   {is_one[0].sum():3d}/{len(one):<3d}          "
                  f"{(~is_one[1]).sum():3d}/{len(multi)}")


if __name__ == "__main__":
    main()
