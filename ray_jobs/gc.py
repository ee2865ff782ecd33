"""`tandem gc OUT --grace 7d`: delete files that re-filtering retired, once no reader needs them.

A commit that replaces files (re-filtering) only hides the old ones; trainers that listed them
before keep reading. This deletes those retired by commits older than the grace period.
"""

from __future__ import annotations

import json
import re

COMMAND = "gc"
HELP = "delete retired files (replaced by re-filtering) older than a grace period"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise ValueError(f"--grace {text!r}: expected a duration like 90s, 30m, 12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def add_arguments(p) -> None:
    p.add_argument("out", help="output directory")
    p.add_argument("--grace", required=True,
                   help="keep files retired less than this long ago (e.g. 7d: longer than any training "
                        "epoch that may still read them)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from pathlib import Path

    from pipelines.store.commit import COMMITS, collect_garbage
    if not (Path(args.out) / COMMITS).is_dir():
        raise FileNotFoundError(f"{args.out}: not an output directory (no {COMMITS}/)")
    res = collect_garbage(args.out, parse_duration(args.grace), dry_run=args.dry_run)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for rel in res["deleted"]:
        print(f"{verb} {rel}")
    print(f"{verb} {len(res['deleted'])} retired file(s), {res['bytes'] / 1e6:.1f} MB; "
          f"{res['waiting']} retired file(s) still inside the grace period")
    return 0
