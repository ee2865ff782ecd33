"""`tandem export`: write shards out in other tools' layouts (see pipelines.train.export and
export_lhotse)."""

from __future__ import annotations

import argparse
import sys

from pipelines.train.export import export_moshi, export_rttm
from pipelines.train.export_lhotse import export_hf, export_lhotse

COMMAND = "export"
HELP = "export shards for moshi-finetune, lhotse (manifests + Shar), Hugging Face datasets, or as RTTM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=["moshi", "lhotse", "hf", "rttm"],
                        help="moshi: moshi-finetune layout; lhotse: recordings/supervisions/cuts + Shar shards; "
                             "hf: datasets save_to_disk with an Audio column; rttm: speaker turns")
    parser.add_argument("out", help="output directory of a tandem job (its committed shards)")
    parser.add_argument("dest", help="where to write the export")
    parser.add_argument("--sql", default=None,
                        help="catalog query selecting example_id (default: every accepted example)")
    parser.add_argument("--sample-rate", type=int, default=None, help="moshi: resample wavs to this rate")
    parser.add_argument("--index", default="data.jsonl", help="moshi: name of the jsonl index (default data.jsonl)")
    parser.add_argument("--absolute-paths", action="store_true", help="moshi: absolute wav paths in the index")
    parser.add_argument("--shard-size", type=int, default=1000, help="lhotse: cuts per Shar shard")
    parser.add_argument("--no-shar", action="store_true", help="lhotse: manifests only, no Shar shards")
    parser.add_argument("--merge-gap", type=float, default=0.5, help="rttm: join words closer than this (s)")


def run(args: argparse.Namespace) -> int:
    from pipelines.train import LoaderError
    try:
        if args.format == "moshi":
            r = export_moshi(args.out, args.dest, sql=args.sql, sample_rate=args.sample_rate, index=args.index,
                             absolute_paths=args.absolute_paths)
            print(f"exported {r['examples']} examples ({r['seconds'] / 3600:.3f} h) to {args.dest}; index {r['index']}")
        elif args.format == "lhotse":
            r = export_lhotse(args.out, args.dest, sql=args.sql, shard_size=args.shard_size, shar=not args.no_shar)
            print(f"exported {r['examples']} cuts, {r['supervisions']} supervisions ({r['seconds'] / 3600:.3f} h) "
                  f"to {args.dest}")
        elif args.format == "hf":
            r = export_hf(args.out, args.dest, sql=args.sql)
            print(f"exported {r['examples']} examples to {args.dest} (datasets.load_from_disk)")
        else:
            r = export_rttm(args.out, args.dest, sql=args.sql, merge_gap=args.merge_gap)
            print(f"exported {r['turns']} turns of {r['examples']} examples to {args.dest}")
    except (LoaderError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
