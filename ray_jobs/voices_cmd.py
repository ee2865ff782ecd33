"""`tandem voices`: a voice bank for voice-cloning TTS cut from the speakers `tandem curate` found."""

from __future__ import annotations

import sys

COMMAND = "voices"
HELP = "write a reference clip per real speaker of a curated output (a voice bank for synth.voices.bank)"


def add_arguments(p) -> None:
    p.add_argument("out", help="output directory of a `tandem curate` run (its accepted real examples)")
    p.add_argument("dest", help="where to write the bank: DEST/<language>/<example>-<speaker>.wav")
    p.add_argument("--languages", nargs="+", help="only these languages (default: all found)")
    p.add_argument("--per-language", type=int, default=200, help="at most this many clips per language")
    p.add_argument("--min-seconds", type=float, default=3.0, help="shortest solo stretch that makes a clip")


def run(args) -> int:
    from pathlib import Path

    from pipelines.io.files import iter_rows
    from pipelines.store.commit import committed_files
    from synth.voicebank import write_voice_bank
    files = committed_files(args.out, "shards")
    if not files:
        print(f"error: {args.out} has no committed shards (run `tandem curate` into it first)", file=sys.stderr)
        return 2
    from pipelines.train.units import manifest_sums, verify_shard
    sums = manifest_sums(args.out)
    for f in files:  # a shard changed since its commit is an error naming it, not clips from it
        verify_shard(str(f), sums.get(str(f)))
    langs = set(args.languages or [])
    rows = (r for r in iter_rows(files, columns=["example_id", "kind", "language", "words", "audio"])
            if r["kind"] == "real" and (not langs or r["language"] in langs))
    bank = write_voice_bank(rows, args.dest, min_s=args.min_seconds, per_language=args.per_language)
    if not bank:
        print(f"error: no speaker of {args.out} speaks alone long enough for a reference clip", file=sys.stderr)
        return 2
    for lang, clips in sorted(bank.items()):
        print(f"{lang}: {len(clips)} clips in {Path(args.dest) / lang}")
    sets = " ".join(f"--set synth.voices.bank.{lang}={Path(args.dest).resolve() / lang}" for lang in sorted(bank))
    print(f"use them: tandem synth OUT --set synth.tts.backend=pocket {sets}")
    return 0
