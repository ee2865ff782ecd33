"""`bench/realspeech.py --diarize-only`: ingest and VAD once per file, then the diarize stage of
each config back to back; DER, speaker counts and diarize time per language."""

from __future__ import annotations

import tempfile
from collections import defaultdict

import numpy as np
from realspeech import der, in_part


def run_diarize(man: dict, eval_dir, cfgs: list[dict], only: set[str] | None = None,
                log=print, part: str | None = None) -> list[list[dict]]:
    """Ingest and VAD once per file, then the diarize stage of each config back to back (timings
    comparable under the same load): per config, per file DER, speaker counts and seconds."""
    import copy

    from pipelines.curate.chain import make_items
    from pipelines.curate.diarize import DiarizeStage
    from pipelines.curate.ingest import IngestStage
    from pipelines.curate.vad import VadStage
    from pipelines.io.rttm import read_rttm
    head = [IngestStage.from_config(cfgs[0]), VadStage.from_config(cfgs[0])]
    diar = [DiarizeStage.from_config(c) for c in cfgs]
    results: list[list[dict]] = [[] for _ in cfgs]
    with tempfile.TemporaryDirectory() as work:
        for f in man["files"]:
            if (only and f["id"] not in only and f["language"] not in only) or not in_part(f, part):
                continue
            item = next(make_items([str(eval_dir / f["wav"])], cfgs[0], "diar", work))
            for st in head:
                item = st(item)
            ref = read_rttm(eval_dir / f["rttm"])
            line = f"{eval_dir.name}/{f['id']:10s}"
            for k, st in enumerate(diar):
                it = st(copy.deepcopy(item))
                turns = it.get("turns") or []
                r = {"id": f"{eval_dir.name}/{f['id']}", "language": f["language"], "duration_s": f["duration_s"],
                     "n_ref_speakers": len(f["speakers"]), "der": der(ref, turns, f["id"]),
                     "n_hyp_speakers": len({t["speaker"] for t in turns}),
                     "seconds": it["timings"]["diarize"]["seconds"]}
                results[k].append(r)
                line += f" | DER {r['der']:.3f} spk {r['n_hyp_speakers']}/{r['n_ref_speakers']} {r['seconds']:.1f} s"
            log(line)
    return results


def diarize_table(results: list[dict]) -> str:
    by = defaultdict(list)
    for r in results:
        by[r["language"]].append(r)
    lines = ["lang files  audio_s   DER   count_right  diarize_s  RTF"]
    for lang in sorted(by) + ["all"]:
        rs = results if lang == "all" else by[lang]
        secs, aud = sum(r["seconds"] for r in rs), sum(r["duration_s"] for r in rs)
        lines.append(f"{lang:4s} {len(rs):5d} {aud:8.1f} {np.mean([r['der'] for r in rs]):6.3f} "
                     f"{sum(r['n_hyp_speakers'] == r['n_ref_speakers'] for r in rs):5d}/{len(rs):<5d} "
                     f"{secs:9.1f} {secs / aud:6.3f}")
    return "\n".join(lines)
