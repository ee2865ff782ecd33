"""Words on their audio: each synthetic word's span against an independent alignment of its channel.

    .venv/bin/python bench/synth_words.py [--per-language 3] [--seed 3] [--engines espeak,piper,pocket]
                                          [--augment] [--set KEY=VALUE]

Renders built-in dialogues with each TTS engine (espeak: the six languages; piper: English, its one
voice; pocket: only when its model and voice bank load offline, else it says why it is skipped),
then re-times each rendered channel on its own: the wav2vec2 aligner of synth.tts.align_model when
one is configured (whisperx's CTC alignment of the channel's script over its whole audio), else the
word timestamps of the embedded faster-whisper model decoding the channel (cross-attention DTW, no
energy snapping). The tool used is printed. Script words and the aligner's words are paired by
normalised text in order (difflib, runs of >= 2 agreeing words); per engine and language: paired share, mean and p95 of |start
error| and |end error| (ms), and the median signed error (a word's span minus the aligner's:
start > 0 starts late, end < 0 ends early). Augmentation is off unless --augment (reverb and echo
smear what the aligner hears). Caveat: piper's words come from Whisper word times matched to the
script at synthesis (no aligner here), so against Whisper they measure consistency, not truth; and
Whisper base's own word times err by tens of ms, a floor under every figure.
"""

from __future__ import annotations

import argparse
import difflib
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-language", type=int, default=3, help="dialogues per language and engine")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--engines", default="espeak,piper,pocket")
    ap.add_argument("--augment", action="store_true", help="keep synth.augment as configured")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    import numpy as np

    from pipelines.core.config import _merge, config_hash, load_config, parse_overrides
    from pipelines.io.audio import decode_flac
    from pipelines.models.asr import AsrParams, build_asr, to_16k_mono
    from pipelines.models.cache import ModelsParams
    from synth.job import SynthesizeStage, make_items
    from synth.params import SynthSection
    rows = []
    for engine in args.engines.split(","):
        over = {"synth": {"tts": {"backend": engine}}}
        if not args.augment:
            over["synth"]["augment"] = {"enabled": False}
        cfg = load_config(overrides=_merge(over, parse_overrides(args.overrides), "", free=True))
        langs = ["en"] if engine == "piper" else LANGS
        try:
            syn = SynthesizeStage.from_config(cfg)
            syn.check()
            syn.ensure_setup()
        except Exception as e:  # noqa: BLE001 - an engine that cannot run offline here is reported, not fatal
            print(f"{engine}: skipped, it does not load here ({type(e).__name__}: {str(e)[:200]})")
            continue
        from pipelines.models.aligner import load_aligner
        from synth.tts.align import aligner_dir
        align_model = SynthSection.from_config(cfg).tts.align_model
        models = ModelsParams.from_config(cfg)
        model = build_asr(AsrParams.from_config(cfg), models).model
        items = list(make_items(None, args.per_language * len(langs), args.seed, langs, cfg, config_hash(cfg), "/u"))
        per: dict[str, tuple[list, list]] = {}
        tools: set[str] = set()
        for it in syn.run_items(items):
            if it["status"] != "ok":
                print(engine, "rejected:", it["rejections"][0]["detail"][:200])
                continue
            ex = it["examples"][0]
            audio, sr = decode_flac(ex["audio"])
            errs, counts = per.setdefault(ex["language"], ([], [0, 0]))
            for ch in (0, 1):
                ref = [w for w in ex["words"] if w["channel"] == ch]
                if not ref:
                    continue
                x16 = to_16k_mono(audio[ch], sr)
                d = aligner_dir(align_model, ex["language"])
                if d:
                    tools.add(f"wav2vec2 CTC aligner {d}")
                    hyp = load_aligner(ex["language"], d, "cpu", models).align_script(" ".join(w["word"] for w in ref), x16, 16000)
                else:
                    tools.add("faster-whisper word timestamps (embedded Whisper base, language given)")
                    hyp = whisper_words(model, x16, ex["language"])
                e, n = pair_errors(ref, hyp)
                errs.extend(e)
                counts[0] += len(e)
                counts[1] += n
        for lang in langs:
            if lang not in per or not per[lang][0]:
                continue
            e = np.array(per[lang][0]) * 1000
            paired, total = per[lang][1]
            st, en = np.abs(e[:, 0]), np.abs(e[:, 1])
            rows.append((engine, lang, paired, total, st.mean(), np.percentile(st, 95), en.mean(), np.percentile(en, 95),
                         np.median(e[:, 0]), np.median(e[:, 1]), "; ".join(sorted(tools))))
    print(f"\nword spans vs the channel's alignment, {args.per_language} dialogues per language, seed {args.seed}, "
          f"augmentation {'as configured' if args.augment else 'off'}")
    print("engine  lang  paired/words   |start| mean  p95 ms   |end| mean  p95 ms   median signed start / end ms   aligner")
    for r in rows:
        print(f"{r[0]:7} {r[1]:4}  {r[2]:5}/{r[3]:<5}   {r[4]:8.0f} {r[5]:7.0f}   {r[6]:8.0f} {r[7]:7.0f}   "
              f"{r[8]:+12.0f} / {r[9]:+5.0f}          {r[10]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
