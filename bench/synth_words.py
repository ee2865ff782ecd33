"""Words on their audio: each synthetic word's span against an independent alignment of its channel,
and every channel's voice activity against its word spans.

    .venv/bin/python bench/synth_words.py [--per-language 3] [--seed 3] [--engines espeak,piper,pocket]
                                          [--reference pocketsphinx|whisper|wav2vec2] [--augment]
                                          [--set KEY=VALUE]

Renders built-in dialogues with each TTS engine (espeak: the six languages; piper: English, its one
voice; pocket: only when its model and voice bank load offline, else it says why it is skipped)
and checks each rendered channel on its own, two ways.

Reference alignment (--reference; the tool is printed): `pocketsphinx` (default; English only:
PocketSphinx's en-us acoustic model and CMU dictionary force-align the channel's script, in pieces
cut at the channel's silences, as the engine was given it (synth.tts.espeak.say_as); words outside
the dictionary are aligned by letter and not scored, and counted, as are pieces that fail),
`wav2vec2` (the aligner synth.tts.align_model names, whisperx's CTC alignment of the script), or
`whisper` (the embedded faster-whisper model's word timestamps, paired with the script by
normalised text in order, runs of >= 2 agreeing words; Whisper base's own word times err by
tens of ms to seconds, so it is a weak reference). Per engine and language: paired share, mean
and p95 of |start error| and |end error| (ms), and the median signed error (a word's span minus
the reference's: start > 0 starts late, end < 0 ends early).

Audio check (every language): silero VAD per channel (synth/audiotiming.py's settings): the share
of voice-activity time outside every word span (and outside labelled spans), the same for the
channel's sound (frames within 50 dB of its loudest), the share of word-span time with no voice
activity, and at each word edge that borders >= 0.1 s without another word, where the voice
activity under the word starts or ends against the span (bench/word_checks.coverage).

Word times per engine (what is measured): espeak's come from its word events (start) and the
audio's energy (end, synth/tts/espeak.word_ends); Piper's from the model's own phoneme durations
(synth/tts/piper.engine_words; a sentence they cannot be mapped for falls back to the WordTimer);
Pocket TTS's from the WordTimer (wav2vec2 forced alignment when synth.tts.align_model is set, else
Whisper matched to the script). Augmentation is off unless --augment (reverb and echo smear what
the aligner hears).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LANGS = ["en", "fr", "de", "es", "it", "pt"]


def _norm(w: str) -> str:
    return re.sub(r"[^\w']", "", w.lower())


def pair_errors(ref: list[dict], hyp: list[dict], min_run: int = 2) -> tuple[list[tuple[float, float]], int]:
    """(start, end) errors in s (ref minus hyp) of the words paired by normalised text, in order,
    inside runs of at least `min_run` agreeing words (a lone common word, "de", "und", matched
    across a misheard stretch pairs words seconds apart); and the number of reference words."""
    a, b = [_norm(w["word"]) for w in ref], [_norm(w["word"]) for w in hyp]
    out = []
    for blk in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for k in range(blk.size if blk.size >= min_run else 0):
            r, h = ref[blk.a + k], hyp[blk.b + k]
            if a[blk.a + k]:
                out.append((r["start_s"] - h["start_s"], r["end_s"] - h["end_s"]))
    return out, sum(1 for x in a if x)


def whisper_words(model, x16, language: str) -> list[dict]:
    segs, _ = model.transcribe(x16, language=language, beam_size=5, word_timestamps=True,
                               condition_on_previous_text=False, vad_filter=False)
    return [{"word": w.word.strip(), "start_s": float(w.start), "end_s": float(w.end)}
            for s in segs for w in (s.words or []) if w.word.strip()]


def reference_words(kind: str, ctx: dict, ref: list[dict], x16, language: str, sound: list) -> tuple[list, int, int, str] | None:
    """(errors (start, end) s of the channel's words against the reference, paired, script words,
    the tool) or None when the reference has nothing for this language."""
    if kind == "pocketsphinx":
        if language != "en":
            return None
        if "sphinx" not in ctx:
            from bench.word_checks import SphinxAligner
            ctx["sphinx"] = SphinxAligner()
        if ctx["engine"] in ("espeak", "piper"):  # they were given interjections respelled as they sound
            from synth.tts.espeak import say_as
            ref = [{**w, "word": say_as(w["word"], language)} for w in ref]
        got, oov, pieces, failed = ctx["sphinx"].align(ref, x16, sound)
        for k, v in (("oov", len(oov)), ("pieces", pieces), ("failed", failed)):
            ctx[k] = ctx.get(k, 0) + v
        e = [(r["start_s"] - g["start_s"], r["end_s"] - g["end_s"])
             for i, (r, g) in enumerate(zip(ref, got)) if g is not None and i not in oov]
        return e, len(e), len(ref), "PocketSphinx 5.1 forced alignment (en-us model, CMU dictionary)"
    if kind == "wav2vec2":
        from pipelines.models.aligner import load_aligner
        from synth.tts.align import aligner_dir
        d = aligner_dir(ctx["align_model"], language)
        if not d:
            return None
        hyp = load_aligner(language, d, "cpu", ctx["models"]).align_script(" ".join(w["word"] for w in ref), x16, 16000)
        e, n = pair_errors(ref, hyp)
        return e, len(e), n, f"wav2vec2 CTC aligner {d}"
    e, n = pair_errors(ref, whisper_words(ctx["whisper"], x16, language))
    return e, len(e), n, "faster-whisper word timestamps (embedded Whisper base, language given)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-language", type=int, default=3, help="dialogues per language and engine")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--engines", default="espeak,piper,pocket")
    ap.add_argument("--reference", choices=["pocketsphinx", "whisper", "wav2vec2"], default="pocketsphinx")
    ap.add_argument("--languages", default=",".join(LANGS), help="espeak's languages (piper speaks en only)")
    ap.add_argument("--augment", action="store_true", help="keep synth.augment as configured")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    import numpy as np

    from bench.word_checks import coverage
    from pipelines.core.config import _merge, config_hash, load_config, parse_overrides
    from pipelines.io.audio import decode_flac
    from pipelines.models.asr import AsrParams, build_asr, to_16k_mono
    from pipelines.models.cache import ModelsParams
    from synth.audiotiming import ChannelVad, sound_regions
    from synth.job import SynthesizeStage, make_items
    from synth.params import SynthSection
    vad = ChannelVad()
    rows, cov_rows = [], []
    for engine in args.engines.split(","):
        over = {"synth": {"tts": {"backend": engine}}}
        if not args.augment:
            over["synth"]["augment"] = {"enabled": False}
        cfg = load_config(overrides=_merge(over, parse_overrides(args.overrides), "", free=True))
        langs = ["en"] if engine == "piper" else args.languages.split(",")
        try:
            syn = SynthesizeStage.from_config(cfg)
            syn.check()
            syn.ensure_setup()
        except Exception as e:  # noqa: BLE001 - an engine that cannot run offline here is reported, not fatal
            print(f"{engine}: skipped, it does not load here ({type(e).__name__}: {str(e)[:200]})")
            continue
        models = ModelsParams.from_config(cfg)
        ctx = {"align_model": SynthSection.from_config(cfg).tts.align_model, "models": models, "engine": engine}
        if args.reference == "whisper":
            ctx["whisper"] = build_asr(AsrParams.from_config(cfg), models).model
        items = list(make_items(None, args.per_language * len(langs), args.seed, langs, cfg, config_hash(cfg), "/u"))
        per: dict[str, dict] = {}
        for it in syn.run_items(items):
            if it["status"] != "ok":
                print(engine, "rejected:", it["rejections"][0]["detail"][:200])
                continue
            ex = it["examples"][0]
            params = json.loads(ex["params"])
            audio, sr = decode_flac(ex["audio"])
            acc = per.setdefault(ex["language"], {"errs": [], "paired": 0, "words": 0, "tools": set(), "cov": [],
                                                  "times": params.get("word_times")})
            for ch in (0, 1):
                ref = [w for w in ex["words"] if w["channel"] == ch]
                if not ref:
                    continue
                labels = [(x["start_s"], x["end_s"]) for x in params.get("audio_labels") or [] if x["channel"] == ch]
                sound = sound_regions(audio[ch], sr)
                acc["cov"].append(coverage(ref, vad.channel(audio[ch], sr), sound, labels, audio.shape[1] / sr))
                got = reference_words(args.reference, ctx, ref, to_16k_mono(audio[ch], sr), ex["language"], sound)
                if got is None:
                    continue
                e, paired, n, tool = got
                acc["errs"].extend(e)
                acc["paired"] += paired
                acc["words"] += n
                acc["tools"].add(tool)
        for lang in langs:
            acc = per.get(lang)
            if acc is None:
                continue
            cov_rows.append((engine, lang, acc["times"], acc["cov"]))
            if not acc["errs"]:
                continue
            e = np.array(acc["errs"]) * 1000
            st, en = np.abs(e[:, 0]), np.abs(e[:, 1])
            rows.append((engine, lang, acc["paired"], acc["words"], st.mean(), np.percentile(st, 95), en.mean(),
                         np.percentile(en, 95), np.median(e[:, 0]), np.median(e[:, 1]), "; ".join(sorted(acc["tools"]))))
        if args.reference == "pocketsphinx" and "sphinx" in ctx:
            print(f"{engine}: pocketsphinx: {ctx.get('oov', 0)} words outside its dictionary (not scored), "
                  f"{ctx.get('failed', 0)} of {ctx.get('pieces', 0)} channel pieces whose alignment failed (not scored)")
    print(f"\nword spans vs the channel's {args.reference} alignment, {args.per_language} dialogues per language, "
          f"seed {args.seed}, augmentation {'as configured' if args.augment else 'off'}")
    print("engine  lang  paired/words   |start| mean  p95 ms   |end| mean  p95 ms   median signed start / end ms   reference")
    for r in rows:
        print(f"{r[0]:7} {r[1]:4}  {r[2]:5}/{r[3]:<5}   {r[4]:8.0f} {r[5]:7.0f}   {r[6]:8.0f} {r[7]:7.0f}   "
              f"{r[8]:+12.0f} / {r[9]:+5.0f}          {r[10]}")
    print("\nvoice activity (silero) and sound (within 50 dB of the loudest frame) vs word spans, channels pooled. "
          "Shares: activity outside every word span; word-span time with no voice activity. Edges: word edges next "
          "to >= 0.1 s without words; error = activity past the span, ms (> 0: sound the span leaves out)")
    print("engine  lang  word times        VAD out  sound out  words silent  edges   VAD start med p95|.| end med p95|.|"
          "   sound start med p95|.| end med p95|.|  uncovered > 50 ms")
    for engine, lang, times, cov in cov_rows:
        tot = {k: sum(c[k] for c in cov) for k in ("vad_s", "vad_outside_s", "sound_s", "sound_outside_s", "word_s",
                                                    "word_silent_s", "edges", "uncovered")}
        cells = []
        for key in ("vad_start_s", "vad_end_s", "sound_start_s", "sound_end_s"):
            v = np.array([x for c in cov for x in c[key]]) * 1000
            cells.append(f"{np.median(v):+6.0f} {np.percentile(np.abs(v), 95):5.0f}" if len(v) else "   nan   nan")
        print(f"{engine:7} {lang:4}  {times!s:16}  {tot['vad_outside_s'] / max(tot['vad_s'], 1e-9):6.1%}  "
              f"{tot['sound_outside_s'] / max(tot['sound_s'], 1e-9):8.1%}  {tot['word_silent_s'] / max(tot['word_s'], 1e-9):11.1%}"
              f"  {tot['edges']:5}   {cells[0]}  {cells[1]}     {cells[2]}  {cells[3]}  "
              f"{tot['uncovered'] / max(tot['edges'], 1):8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
