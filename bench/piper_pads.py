"""Piper's PAD samples: owned by the phoneme before (as Piper counts them) or split between neighbours.

    .venv/bin/python bench/piper_pads.py --part 0    # tune: phrasebook topics 0, 2, 4, ... (en)
    .venv/bin/python bench/piper_pads.py --part 1    # report: topics 1, 3, 5, ...

Speaks each English phrasebook sentence of the part with Piper's voices (warps 0.88 / 1.0 / 1.13 in
turn), takes the per-id sample counts of each sentence once, builds the word spans both ways
(synth.tts.piper.engine_words) and compares each with PocketSphinx forced alignment of the same
audio (bench/word_checks.SphinxAligner): mean and p95 |start| / |end| error and the median signed
error (ms; > 0: the span is late). Needs the bench extra (pocketsphinx).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", type=int, choices=[0, 1], default=0)
    args = ap.parse_args()

    import numpy as np
    import soxr
    from piper import SynthesisConfig
    from piper.const import PAD

    from bench.word_checks import SphinxAligner
    from pipelines.models.asr import to_16k_mono
    from synth.phrasebook import TOPICS
    from synth.tts.piper import PiperTTS, engine_words, split_name
    tts = PiperTTS(24000, warps=[0.88, 1.0, 1.13])
    al = SphinxAligner()
    sents = [s for i, (_, v) in enumerate(sorted(TOPICS["en"].items())) for s in v if i % 2 == args.part]
    errs: dict[str, list] = {"owned by the phoneme before": [], "split between neighbours": []}
    for si, text in enumerate(sents):
        model, k = split_name(tts.voices[si % len(tts.voices)])
        pv = tts._loaded[model]
        sr = pv.config.sample_rate
        syn = SynthesisConfig(length_scale=float(pv.config.length_scale) * k)
        chunks = list(pv.synthesize(text, syn_config=syn, include_alignments=True))
        audio = soxr.resample(np.concatenate([c.audio_float_array for c in chunks]), sr * k, 24000).astype(np.float32)
        pad0 = np.zeros(8000, np.float32)
        x16 = np.concatenate([pad0, to_16k_mono(audio, 24000), pad0])
        per_word = [[p for s in pv.phonemize(w) for p in s] for w in text.split()]
        for name, pad_ids in zip(errs, (None, pv.config.phoneme_id_map.get(PAD, []))):
            words = engine_words(text, chunks, per_word, 1.0 / (sr * k), pad_ids)
            if words is None:
                continue
            got, _ = al.align_piece(words, x16, -0.5)
            errs[name].extend((w["start_s"] - g["start_s"], w["end_s"] - g["end_s"]) for w, g in zip(words, got) if g)
    print(f"Piper PADs, English phrasebook part {args.part} ({len(sents)} sentences), against PocketSphinx, ms")
    for name, e in errs.items():
        e = np.array(e) * 1000
        st, en = np.abs(e[:, 0]), np.abs(e[:, 1])
        print(f"{name:28} words {len(e):4}  |start| {st.mean():3.0f} p95 {np.percentile(st, 95):3.0f}  |end| {en.mean():3.0f} "
              f"p95 {np.percentile(en, 95):3.0f}  median signed {np.median(e[:, 0]):+3.0f} / {np.median(e[:, 1]):+3.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
