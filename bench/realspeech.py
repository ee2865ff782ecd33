"""Real-speech evaluation: the curation chain and the filters, default config, on the set built by
tools/build_eval_set.py (real people's read speech in en/es/fr/it plus pyannote's sample call).

    .venv/bin/python bench/realspeech.py [--eval eval_data] [--build] [--part tune|report] [--json ...]

The set's speakers are split into a tuning and a reporting part (tools/eval_sources.py): choose
defaults on `--part tune`, report them with `--part report` (voices they never heard); without
--part every file runs and the table is printed per part.

Per language: DER (pyannote.metrics, collar 0.25 s as pyannote counts it: 0.125 s each side of a
boundary, overlap scored), WER (words of the transcription against the verbatim turns; words said
in turns without a verbatim text are not scored), language (the filter's reconciled language equals
the file's), channel consistency (each reference speaker's speech lands on one channel: the lowest
share over speakers), split (the reference speakers do not all land on one channel) and accepted
examples; then the share of examples each filter rejects. Stages run in-process, one instance each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = 0.01
IGNORE = "IGNORE_TIME_SEGMENT_IN_SCORING"


def ensure_set(eval_dir: Path, build: bool, extra: list[str] | None = None) -> dict:
    man = eval_dir / "manifest.json"
    if not man.exists():
        if not build:
            raise SystemExit(f"{man} not found: run tools/build_eval_set.py --out {eval_dir} (or pass --build)")
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_eval_set.py"), "--out", str(eval_dir),
                        *(extra or [])], check=True)
    return json.loads(man.read_text())


def read_stm(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split(None, 5)
        if len(f) == 6:
            out.append({"speaker": f[2], "start": float(f[3]), "end": float(f[4]),
                        "text": None if f[5].strip() == IGNORE else f[5]})
    return out


def der(ref_turns: list[dict], hyp_turns: list[dict], uri: str) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    ref, hyp = Annotation(uri=uri), Annotation(uri=uri)
    for i, t in enumerate(ref_turns):
        ref[Segment(t["start_s"], t["end_s"]), i] = t["speaker"]
    for i, t in enumerate(hyp_turns):
        hyp[Segment(t["start_s"], t["end_s"]), i] = t["speaker"]
    return float(DiarizationErrorRate(collar=0.25, skip_overlap=False)(ref, hyp))


def wer_of_file(stm: list[dict], segments: list[dict], lang: str) -> tuple[int, int]:
    """Errors and reference words over the verbatim turns; hypothesis words inside a turn without a
    verbatim text are left out (as sclite does for IGNORE_TIME_SEGMENT_IN_SCORING)."""
    from pipelines.core.text import wer_counts
    ignore = [(s["start"], s["end"]) for s in stm if s["text"] is None]
    words = sorted((w for s in segments for w in s.get("words") or []), key=lambda w: w["start_s"])
    hyp = [w["word"] for w in words
           if not any(a <= (w["start_s"] + w["end_s"]) / 2 <= b for a, b in ignore)]
    ref = [s["text"] for s in sorted(stm, key=lambda s: s["start"]) if s["text"] is not None]
    # es references are written without accents; compare without them everywhere
    return wer_counts(" ".join(ref), " ".join(hyp), strip_accents=True)


def _mask(spans, n: int, t0: float = 0.0) -> np.ndarray:
    m = np.zeros(n, bool)
    for s, e in spans:
        a, b = max(0, int((s - t0) / GRID)), min(n, int((e - t0) / GRID))
        if b > a:
            m[a:b] = True
    return m


def channel_split(ref: list[dict], turns: list[dict], examples: list[dict], duration: float) -> dict:
    """Per reference speaker, the share of its solo speech that lands alone on its main channel."""
    n = int(np.ceil(duration / GRID)) + 1
    ch = {0: np.zeros(n, bool), 1: np.zeros(n, bool)}
    for ex in examples:
        p = json.loads(ex["params"]) if isinstance(ex.get("params"), str) else ex.get("params") or {}
        t0, t1 = p.get("span", [0.0, duration])
        main = p.get("main_speaker")
        inside = [(max(t["start_s"], t0), min(t["end_s"], t1), t["speaker"]) for t in turns
                  if t["end_s"] > t0 and t["start_s"] < t1]
        ch[0] |= _mask([(s, e) for s, e, k in inside if k == main], n)
        ch[1] |= _mask([(s, e) for s, e, k in inside if k != main], n)
    spk = sorted({r["speaker"] for r in ref})
    masks = {k: _mask([(r["start_s"], r["end_s"]) for r in ref if r["speaker"] == k], n) for k in spk}
    out = {}
    for k in spk:
        solo = masks[k] & ~np.any([masks[o] for o in spk if o != k] or [np.zeros(n, bool)], axis=0)
        tot = max(int(solo.sum()), 1)
        on = {c: int((solo & ch[c] & ~ch[1 - c]).sum()) / tot for c in (0, 1)}
        best = max(on, key=on.get)
        out[k] = {"channel": best, "share": on[best]}
    return out


def in_part(f: dict, part: str | None) -> bool:
    return part in (None, "all") or f.get("part") == part


def run(man: dict, eval_dir: Path, cfg: dict, only: set[str] | None = None, log=print,
        part: str | None = None) -> list[dict]:
    from filters.base import first_rejection
    from filters.stage import FilterStage, decide_example, stored_metrics
    from pipelines.core.config import config_hash
    from pipelines.curate.chain import curation_stages, make_items
    from pipelines.io.rttm import read_rttm
    stages = curation_stages(cfg) + [FilterStage.from_config(cfg)]
    filt = stages[-1]
    h = config_hash(cfg)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for f in man["files"]:
            if (only and f["id"] not in only and f["language"] not in only) or not in_part(f, part):
                continue
            t0 = time.perf_counter()
            item = next(make_items([str(eval_dir / f["wav"])], cfg, h, work))
            for st in stages:
                item = st(item)
            ref = read_rttm(eval_dir / f["rttm"])
            stm = read_stm(eval_dir / f["stm"])
            r = {"id": f["id"], "part": f.get("part"), "kind": f.get("kind"), "language": f["language"],
                 "duration_s": f["duration_s"],
                 "n_ref_speakers": len(f["speakers"]), "status": item.get("status"),
                 "seconds": round(time.perf_counter() - t0, 2),
                 "timings": {k: round(v["seconds"], 2) for k, v in (item.get("timings") or {}).items()}}
            if "turns" not in item or "segments" not in item:
                r["error"] = "; ".join(x.get("detail", "")[:300] for x in item.get("rejections") or [])
                results.append(r)
                log(f"{f['id']}: {r['status']} {r['error']}")
                continue
            turns = item["turns"]
            r["der"] = der(ref, turns, f["id"])
            r["n_hyp_speakers"] = len({t["speaker"] for t in turns})
            r["wer_errors"], r["wer_words"] = wer_of_file(stm, item["segments"], f["language"])
            kept = item.get("examples") or []
            rejected = [e for e in item.get("rejected_examples") or []]
            exs = []
            for ex in kept + rejected:
                decisions = decide_example(ex, filt.filters, stored_metrics(ex))
                d = first_rejection(decisions)
                exs.append({"example_id": ex["example_id"], "duration_s": ex["duration_s"],
                            "accepted": d is None, "first_rejection": d and f"{d.filter}:{d.reason}",
                            "rejected_by": sorted({x.filter for x in decisions if not x.keep}),
                            "reasons": [f"{x.filter}:{x.reason}: {x.detail}" for x in decisions if not x.keep],
                            "lid_language": ex.get("lid_language"), "asr_language": ex.get("language"),
                            "metrics": stored_metrics(ex)})
            r["examples"] = exs
            r["speakers"] = channel_split(ref, turns, kept + rejected, float(item["duration_s"]))
            results.append(r)
            log(f"{f['id']:10s} DER {r['der']:.3f} WER {r['wer_errors'] / max(r['wer_words'], 1):.3f} "
                f"spk {r['n_hyp_speakers']}/{r['n_ref_speakers']} accepted {sum(e['accepted'] for e in exs)}/"
                f"{len(exs)} {[e['first_rejection'] for e in exs if not e['accepted']]} ({r['seconds']} s)")
    return results


def table(results: list[dict]) -> str:
    by = defaultdict(list)
    for r in results:
        by[r["language"]].append(r)
    lines = ["lang files  audio_s   DER   WER(pooled) WER(mean) lang_ok  chan_consistency split accepted",
             "---- ----- -------- ------ ----------- --------- -------- ---------------- ----- --------"]
    allr = []
    for lang in sorted(by) + ["all"]:
        rs = [r for r in (allr if lang == "all" else by[lang]) if "der" in r]
        if lang != "all":
            allr.extend(by[lang])
        if not rs:
            lines.append(f"{lang:4s} {len(by.get(lang, allr)):5d}  (no file got through the chain)")
            continue
        exs = [e for r in rs for e in r["examples"]]
        wers = [r["wer_errors"] / r["wer_words"] for r in rs if r["wer_words"]]
        pooled = sum(r["wer_errors"] for r in rs) / max(sum(r["wer_words"] for r in rs), 1)
        cons = [min(s["share"] for s in r["speakers"].values()) for r in rs]
        split = sum(len({s["channel"] for s in r["speakers"].values()}) > 1 for r in rs)
        lines.append(
            f"{lang:4s} {len(rs):5d} {sum(r['duration_s'] for r in rs):8.1f} {np.mean([r['der'] for r in rs]):6.3f} "
            f"{pooled:11.3f} {np.mean(wers) if wers else float('nan'):9.3f} "
            f"{sum(e['lid_language'] == r['language'] for r in rs for e in r['examples'])}/{len(exs):<6d} "
            f"{np.mean(cons):7.3f} (min {min(cons):.2f}) {split}/{len(rs)}   "
            f"{sum(e['accepted'] for e in exs)}/{len(exs)}")
    return "\n".join(lines)


def filter_shares(results: list[dict]) -> str:
    exs = [e for r in results for e in r.get("examples", [])]
    tot = sum(e["duration_s"] for e in exs) or 1.0
    lines = [f"share of clean real speech each filter rejects ({len(exs)} examples, {tot:.0f} s):"]
    for name in ("quality", "language", "trust"):
        hit = [e for e in exs if name in e["rejected_by"]]
        reasons = defaultdict(int)
        for e in hit:
            for x in e["reasons"]:
                if x.startswith(name + ":"):
                    reasons[x.split(":")[1]] += 1
        lines.append(f"  {name:8s} {len(hit)}/{len(exs)} examples, {sum(e['duration_s'] for e in hit) / tot:.1%} "
                     f"of audio {dict(reasons) or ''}")
    return "\n".join(lines)


def redecide(results: list[dict], cfg: dict) -> list[dict]:
    """The stored per-example metrics of an earlier run judged again under `cfg` (no model runs)."""
    from filters.base import first_rejection
    from filters.stage import build_filters, decide_example
    filters = build_filters(cfg)
    for r in results:
        for e in r.get("examples", []):
            ex = {"kind": "real", "language": e["asr_language"], "example_id": e["example_id"]}
            decisions = decide_example(ex, filters, e["metrics"])
            d = first_rejection(decisions)
            e.update(accepted=d is None, first_rejection=d and f"{d.filter}:{d.reason}",
                     rejected_by=sorted({x.filter for x in decisions if not x.keep}),
                     reasons=[f"{x.filter}:{x.reason}: {x.detail}" for x in decisions if not x.keep])
    return results


QUALITY_KEYS = ("q.dnsmos_ovrl", "q.snr_db", "q.bandwidth_hz", "q.speech_ratio", "q.longest_silence_s",
                "q.level_dbfs", "q.clipping", "q.flatness")


def calibrate(man: dict, eval_dir: Path, cfg: dict, snrs=(20.0, 10.0, 5.0), log=print) -> dict:
    """Quality metrics of every file split onto two channels by its reference RTTM (channel 0 the
    speaker with most speech, as assembly does), clean and with white noise at `snrs` dB (relative
    to the speech): where clean real speech lies and where degraded real speech starts."""
    import soundfile as sf
    from filters.quality import QualityFilter
    from pipelines.io.rttm import read_rttm
    qf = QualityFilter.from_config(cfg).load(threads=2)
    out: dict[str, list] = defaultdict(list)
    for f in man["files"]:
        x, sr = sf.read(str(eval_dir / f["wav"]), dtype="float32")
        ref = read_rttm(eval_dir / f["rttm"])
        tot = defaultdict(float)
        for t in ref:
            tot[t["speaker"]] += t["end_s"] - t["start_s"]
        main = max(tot, key=tot.get)
        n = len(x)
        m0 = np.repeat(_mask([(t["start_s"], t["end_s"]) for t in ref if t["speaker"] == main], n // int(GRID * sr) + 1),
                       int(GRID * sr))[:n]
        m1 = np.repeat(_mask([(t["start_s"], t["end_s"]) for t in ref if t["speaker"] != main],
                             n // int(GRID * sr) + 1), int(GRID * sr))[:n]
        speech = x[m0 | m1]
        p_speech = float(np.mean(speech.astype(np.float64) ** 2))
        rng = np.random.default_rng(0)
        for snr in (None, *snrs):
            y = x if snr is None else x + rng.standard_normal(n).astype(np.float32) * np.float32(
                np.sqrt(p_speech / 10 ** (snr / 10)))
            audio = np.stack([y * m0, y * m1]).astype(np.float32)
            ex = {"example_id": f["id"], "sample_rate": sr, "kind": "real", "language": f["language"]}
            m = qf.measure(ex, audio)
            d = qf.decide(m, ex)
            out["clean" if snr is None else f"snr{snr:g}"].append(
                {"id": f["id"], "keep": d.keep, "reason": d.reason, **{k: m.get(k) for k in QUALITY_KEYS}})
        log(f"{f['id']:10s} clean DNSMOS {out['clean'][-1]['q.dnsmos_ovrl']:.2f} SNR {out['clean'][-1]['q.snr_db']:.1f} "
            f"BW {out['clean'][-1]['q.bandwidth_hz']:.0f}")
    return dict(out)


def calibration_table(cal: dict) -> str:
    lines = ["metric               version   min     p5      p50     p95     max    (quality verdicts)"]
    for k in QUALITY_KEYS:
        for ver, rows in cal.items():
            v = np.array([r[k] for r in rows if r[k] is not None and np.isfinite(r[k])], float)
            if not len(v):
                continue
            q = np.percentile(v, [0, 5, 50, 95, 100])
            lines.append(f"{k:20s} {ver:8s} " + " ".join(f"{x:7.3g}" for x in q))
    for ver, rows in cal.items():
        rej = defaultdict(int)
        for r in rows:
            rej["kept" if r["keep"] else r["reason"]] += 1
        lines.append(f"{ver:8s} verdicts: {dict(rej)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description="real-speech evaluation of curation and filters")
    ap.add_argument("--eval", type=Path, nargs="+", default=[ROOT / "eval_data"],
                    help="eval set directories; figures pooled over them")
    ap.add_argument("--build", action="store_true", help="build the set first when it is missing")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--only", default="", help="comma-separated file ids or languages")
    ap.add_argument("--part", choices=["tune", "report", "all"], default="all",
                    help="the files of one part of the speaker split (default: all, tables per part)")
    ap.add_argument("--json", type=Path, default=None, help="write per-file and per-example results here")
    ap.add_argument("--calibrate", action="store_true",
                    help="quality metrics of the reference-split files, clean and with added noise (no ASR)")
    ap.add_argument("--redecide", type=Path, default=None,
                    help="judge the examples of an earlier --json run again under this config (no models)")
    ap.add_argument("--diarize-only", action="store_true",
                    help="ingest, VAD and diarize only: DER, speaker counts and diarize time per language")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="with --diarize-only: also diarize under these overrides, back to back per file")
    a = ap.parse_args(argv)
    from pipelines.core.config import load_config, parse_overrides
    cfg = load_config(a.config, parse_overrides(a.set))
    if a.redecide:
        results = redecide(json.loads(a.redecide.read_text())["results"], cfg)
        print(table(results))
        print(filter_shares(results))
        return 0
    only = set(filter(None, a.only.split(","))) or None
    if a.diarize_only:
        sys.path.insert(0, str(ROOT / "bench"))
        from realspeech_diarize import diarize_table, run_diarize
        variants = [a.set] + [a.set + v.split(",") for v in a.variant]
        cfgs = [load_config(a.config, parse_overrides(v)) for v in variants]
        per = [[] for _ in cfgs]
        for ev in a.eval:
            for k, rs in enumerate(run_diarize(ensure_set(ev, a.build), ev, cfgs, only, part=a.part)):
                per[k] += rs
        for v, rs in zip(variants, per):
            print(f"\n{' '.join(v) or 'defaults'}:\n{diarize_table(rs)}")
        if len(per) > 1:
            base = sum(r["seconds"] for r in per[0])
            print("diarize time vs the first: " + ", ".join(
                f"{sum(r['seconds'] for r in rs) / base:.2f}" for rs in per[1:]))
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps({"variants": variants, "results": per}, indent=1))
        return 0
    if len(a.eval) != 1:
        raise SystemExit("--eval: one set unless --diarize-only")
    a.eval = a.eval[0]
    man = ensure_set(a.eval, a.build)
    if a.calibrate:
        cal = calibrate(man, a.eval, cfg)
        print(calibration_table(cal))
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(cal, indent=1, default=str))
        return 0
    t0 = time.perf_counter()
    results = run(man, a.eval, cfg, only, part=a.part)
    for p in ("tune", "report", None):
        rs = [r for r in results if r.get("part") == p]
        if rs and (p is not None or len(rs) < len(results)):
            print(f"\npart {p or 'unsplit'} ({len(rs)} files: {', '.join(sorted({r.get('kind') or 'read' for r in rs}))})")
            print(table(rs))
    if len({r.get("part") for r in results}) > 1:
        print("\nall parts")
        print(table(results))
    print(filter_shares(results))
    print(f"not covered: {man.get('not_covered')}; {time.perf_counter() - t0:.0f} s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"results": results, "config_hash": None}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
