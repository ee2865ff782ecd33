"""Synthesis throughput against bare TTS on the same texts, and round-trip CER per language.

    .venv/bin/python bench/synth.py [--dialogues 12] [--cer-per-language 10] [--seed 0] [--backend espeak]
    .venv/bin/python bench/synth.py --turn-taking 40 --seeds 3,7,11  # IPU / pause / gap / overlap vs Fisher, on the audio
    .venv/bin/python bench/synth.py --dialogues 0 --cer-per-language 2 --seed 6 --no-old --profile  # round trip vs bare batched Whisper, per call kind

Prints dialogue audio seconds per wall second for the synthesis stage (TTS + timeline + mix +
augment + FLAC, run as a Ray batch runs it: SynthesizeStage.run_items, which speaks the next
dialogue while this one is mixed) and for the bare TTS calls alone on the same sentences (a second
instance of the same backend, word times included), measured in the same run, and the throughput
ratio; then the CPU seconds of both (this process plus the TTS worker processes: what the stage
costs, steadier than wall time on a shared machine); then the round trip beside a bare batched
faster-whisper pass (BatchedInferencePipeline, its own VAD) over the same channels with the same
model, and beside the old per-channel path (pack_sep_s null, batch 1): wall and CPU seconds, and the
CER (max of the two channels) per language as mean / p50 / p90 for each, how many dialogues the
filters.trust limit would reject, and the CER of each transcript against the next dialogue's script
(audio saying the wrong text: a limit below its minimum rejects all of those). --backend piper runs
English only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LANGS = ["en", "fr", "de", "es", "it", "pt"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialogues", type=int, default=12, help="dialogues for the throughput figure")
    ap.add_argument("--cer-per-language", type=int, default=10, help="dialogues per language for CER (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rt-batch", type=int, default=6,
                    help="dialogues per round-trip call (the ASR batches their windows when synth.roundtrip.batch_size > 1)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where the round trip (and its bare baseline) decodes; TTS runs on the CPU either way")
    ap.add_argument("--no-old", action="store_true", help="skip the old per-channel path (the slowest)")
    ap.add_argument("--profile", action="store_true",
                    help="with the round trip: seconds, windows and tokens of each Whisper call kind per path")
    ap.add_argument("--backend", default="espeak", choices=["espeak", "piper"])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. asr.batch_size=1")
    ap.add_argument("--turn-taking", type=int, default=0, metavar="N",
                    help="only measure the turn-taking of N built-in dialogues per seed on their audio (Moshi's "
                         "definitions, silero VAD per channel; vs the planned figures and Fisher)")
    ap.add_argument("--seeds", default=None, help="with --turn-taking: comma-separated seeds (default --seed)")
    args = ap.parse_args()

    from pipelines.core.config import _merge, config_hash, load_config, parse_overrides
    from synth.job import SynthesizeStage, make_items
    from synth.scripts import split_sentences
    from synth.tts.registry import make_tts
    cfg = load_config(overrides=_merge({"synth": {"tts": {"backend": args.backend}}},
                                       parse_overrides(args.overrides), "", free=True))
    langs = LANGS if args.backend == "espeak" else ["en"]
    h = config_hash(cfg)
    syn = SynthesizeStage.from_config(cfg)
    syn.ensure_setup()
    items = list(make_items(None, args.dialogues, args.seed, langs, cfg, h, "/unused"))

    # bare TTS: the same sentences and voices, in one process, no timeline/mix/augment/encode
    p = syn.params
    tts = make_tts(p.tts, p.sample_rate, p.models, threads=syn.resources.threads, asr_params=p.asr)
    tts.synthesize("warm up", "en", voice=getattr(tts, "voices", [None])[0])
    if args.turn_taking:
        return _turn_taking(syn, args, langs, cfg, h)
    if args.dialogues > 0:
        syn.run_items([dict(it) for it in make_items(None, 2, args.seed + 99, langs, cfg, h, "/unused")])  # warm up
        c0, w0 = time.process_time(), _engine_cpu(syn)
        t0 = time.perf_counter()
        done = syn.run_items([dict(it) for it in items])  # as a Ray batch runs them
        t_stage = time.perf_counter() - t0
        c_stage = time.process_time() - c0 + _engine_cpu(syn) - w0
        audio_s = sum(it["duration_s"] for it in done if it["status"] == "ok")
        t0, c0 = time.perf_counter(), time.process_time()
        tts_audio_s = 0.0
        for it in done:
            p = json.loads(it["examples"][0]["params"])
            calls = [(turn["speaker"], s) for turn in it["script"]["turns"] for s in split_sentences(turn["text"])]
            # the stage also speaks each listener's backchannel tokens once per dialogue
            calls += list(dict.fromkeys((b["listener"], b["text"]) for b in p["timeline_draws"]["backchannels"]))
            for spk, s in calls:
                v = p["voices"][spk]
                a, sr, _ = tts.synthesize(s, it["script"]["language"], voice=v["name"], pitch=v["pitch"], rate=v["rate"])
                tts_audio_s += len(a) / sr
        t_tts, c_tts = time.perf_counter() - t0, time.process_time() - c0
        print(f"synthesis stage: {audio_s:.1f} s of dialogue in {t_stage:.2f} s wall = "
              f"{audio_s / t_stage:.1f} s/s  ({len(done)} dialogues)")
        print(f"bare TTS calls : {tts_audio_s:.1f} s of speech in {t_tts:.2f} s wall = {tts_audio_s / t_tts:.1f} s/s")
        print(f"throughput ratio, bare TTS wall / stage wall on the same sentences (backend {args.backend}) = "
              f"{t_tts / t_stage:.2f}  (stage: TTS in a forked worker per dialogue + backchannels + timeline + mix "
              "+ augment + FLAC, the next dialogue spoken while this one is mixed)")
        print(f"CPU seconds (this process + the TTS worker processes): stage {c_stage:.2f}, bare TTS {c_tts:.2f}, "
              f"ratio {c_tts / c_stage:.2f}  (what the stage costs, overlap aside; steadier than wall time on a "
              f"loaded machine, load average now {os.getloadavg()[0]:.1f})")

    if args.cer_per_language > 0:
        _roundtrip(syn, args, langs, cfg, h)
    return 0


def _roundtrip(syn, args, langs, cfg, h) -> None:
    """The round trip against a bare batched faster-whisper pass over the same channels (the same
    model, batch size, beam and language, in this process), and against the old per-channel path
    (synth.roundtrip.pack_sep_s null, batch_size 1), block by block in turn so a loaded machine
    weighs on all three alike; then CER per language (max of the two channels) for each."""
    import dataclasses

    import numpy as np
    from faster_whisper import BatchedInferencePipeline

    from pipelines.core.config import section
    from pipelines.io.audio import decode_flac
    from pipelines.models.asr import to_16k_mono
    from synth.job import RoundTripStage, make_items
    from synth.roundtrip import cer
    limits = section(cfg, "filters")["trust"]["max_roundtrip_cer"]
    new = RoundTripStage.from_config(cfg)
    gpus = 1.0 if args.device == "cuda" else 0.0  # the stage decodes on cuda when it asks for a GPU
    new.resources = dataclasses.replace(new.resources, num_gpus=gpus)
    new.ensure_setup()
    old = RoundTripStage(dataclasses.replace(new.asr_params, batch_size=1), new.models, new.pad_s, 1, None,
                         resources=dataclasses.replace(new.resources, num_gpus=gpus))
    old.ensure_setup()  # the same WhisperModel (cached per process), decoded window by window
    bare = BatchedInferencePipeline(new.asr.model)
    timed = None
    if args.profile:  # every path decodes on this one CTranslate2 model (cached per process)
        timed = new.asr.model.model = _Timed(new.asr.model.model)
    bs, beam = max(1, new.asr_params.batch_size), new.asr_params.beam_size
    paths = ["new", "bare"] + ([] if args.no_old else ["old"])
    wall = {k: 0.0 for k in paths}
    cpu = {k: 0.0 for k in paths}
    per: dict[str, dict[str, list[float]]] = {k: {lang: [] for lang in langs} for k in paths}
    said: dict[str, list[tuple[dict, dict]]] = {lang: [] for lang in langs}  # (transcripts, scripts)
    n = args.cer_per_language * len(langs)
    audio_s = speech_s = 0.0
    cer_items = list(make_items(None, n, args.seed + 1, langs, cfg, h, "/unused"))
    for i in range(0, n, args.rt_batch):  # as Ray batches reach the stages
        done = [it for it in syn.run_items([dict(it) for it in cer_items[i:i + args.rt_batch]])
                if it["status"] == "ok"]
        for k in paths:
            block = [{**it, "examples": [dict(ex) for ex in it["examples"]]} for it in done]
            if timed is not None:
                timed.path = k
            t0, c0 = time.perf_counter(), time.process_time()
            if k == "bare":
                hyps = []
                for it in block:
                    ex = it["examples"][0]
                    audio, sr = decode_flac(ex["audio"])
                    hyp = {}
                    for ch in (0, 1):
                        segs, _ = bare.transcribe(to_16k_mono(audio[ch], sr), language=ex["language"],
                                                  batch_size=bs, beam_size=beam)
                        hyp[ch] = " ".join(s.text.strip() for s in segs)
                    hyps.append(hyp)
            else:
                block = (new if k == "new" else old).run_items(block)
            wall[k] += time.perf_counter() - t0
            cpu[k] += time.process_time() - c0
            for j, it in enumerate(block):
                ex = it["examples"][0]
                if k == "bare":
                    per[k][ex["language"]].append(max(cer(ex[f"text_ch{ch}"] or "", hyps[j][ch]) for ch in (0, 1)))
                    continue
                if it["status"] != "ok":
                    print(k, "rejected:", it["rejections"][0]["detail"][:200])
                    continue
                per[k][ex["language"]].append(ex["roundtrip_cer"])
                if k == "new":
                    said[ex["language"]].append(({ch: " ".join(s["text"] for s in ex["segments"] if s["channel"] == ch)
                                                  for ch in (0, 1)}, {ch: ex[f"text_ch{ch}"] or "" for ch in (0, 1)}))
                    audio_s += ex["duration_s"]
                    speech_s += sum(w["end_s"] - w["start_s"] for w in ex["words"])
    ex = new.counters.extra
    print(f"\nround trip over {n} dialogues ({audio_s:.0f} s of dialogue, {speech_s:.0f} s of words on both "
          f"channels), {args.rt_batch} dialogues per block, Whisper base on {new.device}, language given, "
          f"batch {bs}, beam {beam}; load average now {os.getloadavg()[0]:.1f}")
    print(f"new: {ex.get('windows', 0)} windows, {ex.get('windows_retried', 0)} retried, "
          f"{new.asr.counts.get('fallback_chunks', 0) if hasattr(new.asr, 'counts') else 0} fell back; "
          f"old: {old.counters.extra.get('windows', 0)} windows")
    print("path                                   wall s    CPU s   wall / bare   CPU / bare")
    names = {"new": "round trip (packed, batched)", "bare": "bare BatchedInferencePipeline",
             "old": "old per-channel (pack null, batch 1)"}
    for k in paths:
        print(f"{names[k]:38} {wall[k]:7.1f}  {cpu[k]:7.1f}   {wall[k] / wall['bare']:9.2f}   "
              f"{cpu[k] / cpu['bare']:9.2f}")
    if timed is not None:
        timed.report(wall)
    print(f"round trip: {audio_s / wall['new']:.1f} dialogue-hours per {new.device}-hour "
          f"(bare pass {audio_s / wall['bare']:.1f})")
    print("\nCER max-of-channels per dialogue: mean / p50 / p90")
    print("lang  n  " + "".join(f"{k:>22}" for k in paths) + "   new over limit   wrong script min / median")
    for lang in langs:
        row = f"{lang:4} {len(per['new'][lang]):2}  "
        for k in paths:
            v = per[k][lang]
            row += (f"   {np.mean(v):.3f} / {np.percentile(v, 50):.3f} / {np.percentile(v, 90):.3f}"
                    if v else f"{'-':>22}")
        lim = float(limits.get(lang, limits["default"]))
        # each transcript against the next dialogue's script: audio saying the wrong text, which a
        # limit must reject; a limit under this minimum passes none of them
        sv = said[lang]
        wrong = sorted(max(cer(sv[(j + 1) % len(sv)][1][ch], sv[j][0][ch]) for ch in (0, 1))
                       for j in range(len(sv))) if len(sv) > 1 else [float("nan")]
        row += f"   {sum(x > lim for x in per['new'][lang]):3}/{len(per['new'][lang])} > {lim:g}"
        row += f"      {wrong[0]:.3f} / {statistics.median(wrong):.3f}"
        print(row)


class _Timed:
    """The CTranslate2 Whisper model with each call timed (wall s), per path and call kind: encode,
    decode (the first pass), fallback (sampling at a higher temperature), word times (cross-attention
    alignment), language (detection); windows and new tokens counted."""

    def __init__(self, model):
        self._model, self.path, self.stats = model, "", {}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _call(self, kind, fn, windows, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        s = self.stats.setdefault((self.path, kind), [0.0, 0, 0])
        s[0] += time.perf_counter() - t0
        s[1] += windows
        if kind in ("decode", "fallback"):
            s[2] += sum(len(x) for r in out for x in r.sequences_ids)
        return out

    def encode(self, features, *a, **k):
        return self._call("encode", self._model.encode, features.shape[0], features, *a, **k)

    def generate(self, enc, prompts, *a, **k):
        kind = "fallback" if k.get("sampling_temperature", 0.0) > 0 else "decode"
        return self._call(kind, self._model.generate, len(prompts), enc, prompts, *a, **k)

    def align(self, enc, sot, tokens, *a, **k):
        return self._call("word times", self._model.align, len(tokens), enc, sot, tokens, *a, **k)

    def detect_language(self, enc, *a, **k):
        return self._call("language", self._model.detect_language, 0, enc, *a, **k)

    def report(self, wall: dict) -> None:
        print("Whisper calls per path: wall s (windows, tokens of every hypothesis); other = the "
              "rest of the path's wall (features, audio, VAD, packing, scoring)")
        for path, w in wall.items():
            parts = {kind: v for (p, kind), v in self.stats.items() if p == path}
            other = w - sum(v[0] for v in parts.values())
            print(f"  {path:5} " + ", ".join(f"{kind} {v[0]:.1f} ({v[1]}" + (f", {v[2]})" if v[2] else ")")
                                           for kind, v in parts.items()) + f", other {other:.1f}")


def _turn_taking(syn, args, langs, cfg, h) -> int:
    """Turn-taking of --turn-taking N dialogues per seed, measured on their audio (VAD per channel),
    per seed (audio and planned) and pooled over the seeds."""
    from pipelines.core.turntaking import FISHER, KEYS
    from synth.job import make_items
    from synth.summary import format_summary, summarize
    seeds = [int(x) for x in str(args.seeds or args.seed).split(",")]
    rows, per_seed = [], []
    for seed in seeds:
        got = [syn(it)["examples"][0] for it in make_items(None, args.turn_taking, seed, langs, cfg, h, "/u")]
        rows += got
        per_seed.append((seed, summarize(got)))
    print(f"s per minute, {args.turn_taking} dialogues per seed: audio (planned)")
    print("seed  " + "".join(f"{k:>16}" for k in KEYS))
    for seed, s in per_seed:
        a, p = s["per_minute"], s["per_minute_planned"]
        print(f"{seed:<5} " + "".join(f"{a[k]:8.2f} ({p[k]:5.2f})" for k in KEYS))
    if len(per_seed) > 1:
        import numpy as np
        for name, f in (("min", np.min), ("max", np.max)):
            print(f"{name:<5} " + "".join(f"{f([s['per_minute'][k] for _, s in per_seed]):8.2f}{'':8}" for k in KEYS))
    print("Fisher" + "".join(f"{FISHER[k]:8.2f}{'':8}" for k in KEYS))
    print(format_summary(summarize(rows)))
    return 0


def _engine_cpu(stage) -> float:
    """CPU seconds of the stage's TTS worker processes (espeak's fork servers and their finished
    sessions); 0 for engines that run in this process."""
    total = 0.0
    for tts in (getattr(stage, "tts", None), getattr(stage, "_spare", None)):
        server = getattr(tts, "_server", None)
        if server is None:
            continue
        f = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


if __name__ == "__main__":
    raise SystemExit(main())
