"""`tandem filter OUT --config new.yaml`: re-decide committed examples with new thresholds.

Uses the metrics stored in each row; no model is loaded. Old shard files are retired in the same
commits that write their replacements.
"""

from __future__ import annotations

import json

COMMAND = "filter"
HELP = "re-filter committed shards with new thresholds from stored metrics (no models)"


def add_arguments(p) -> None:
    p.add_argument("out", help="output directory of an earlier curate/synth job")
    p.add_argument("--config", help="config YAML with the new `filters` thresholds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set filters.quality.min_snr_db.real=15 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args) -> int:
    from tandem.pipelines.core.config import load_config, parse_overrides
    from tandem.ray_jobs.refilter import refilter
    over = parse_overrides(args.set)
    cfg = load_config(args.config, over or None)
    counts = refilter(args.out, cfg, log=(lambda *_: None) if args.json else print)
    if args.json:
        print(json.dumps(counts, indent=1, sort_keys=True))
    else:
        for k, v in sorted(counts.items()):
            print(f"{k:32s} {v}")
    return 0
