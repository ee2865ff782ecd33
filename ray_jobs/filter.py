"""`tandem filter OUT --config new.yaml`: re-decide committed examples with new thresholds.

Starts from the config the output was made with (its newest finished run record, OUT/runs/*.json),
then applies --config and --set on top, so only what the user names changes. Uses the metrics
stored in each row; no model is loaded. Old shard files are retired in the same commits that
write their replacements.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

COMMAND = "filter"
HELP = "re-filter committed shards with new thresholds from stored metrics (no models)"


def add_arguments(p) -> None:
    p.add_argument("out", help="output directory of an earlier curate/synth job")
    p.add_argument("--config", help="config YAML with the new `filters` thresholds (on top of the run's config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set filters.quality.min_snr_db.real=15 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


def stored_config(out: str | Path) -> tuple[dict, str]:
    """The config of the output's newest finished run, and which run record it came from."""
    runs = Path(out) / "runs"
    recs = []
    for p in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        try:
            r = json.loads(p.read_text())
        except ValueError as e:
            raise ValueError(f"run record {p}: not valid JSON ({e})") from None
        if r.get("status") == "finished" and r.get("config"):
            recs.append((r.get("finished_at") or "", r.get("run_id") or p.stem, p, r))
    if not recs:
        raise FileNotFoundError(f"{out}: no finished run record under {runs} to take the config from "
                                "(run curate or synth first)")
    _, _, path, rec = max(recs, key=lambda t: (t[0], t[1]))
    cfg = rec["config"]
    return (json.loads(cfg) if isinstance(cfg, str) else cfg), str(path)


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def filter_config(out: str | Path, config_path: str | None = None, sets: list[str] | None = None) -> tuple[dict, str]:
    """Stored config, then the YAML at `config_path`, then `--set` pairs; validated against the defaults."""
    import yaml
    from pipelines.core.config import load_config, parse_overrides
    stored, origin = stored_config(out)
    user = {}
    if config_path:
        load_config(config_path)  # its own errors first, naming the file
        user = yaml.safe_load(Path(config_path).read_text()) or {}
    merged = _deep_merge(_deep_merge(stored, user), parse_overrides(sets or []))
    try:
        return load_config(overrides=merged), origin
    except KeyError as e:
        raise KeyError(f"the config stored in {origin} does not fit this version: {e.args[0]}") from None


def run(args) -> int:
    import sys

    from ray_jobs.refilter import refilter
    cfg, origin = filter_config(args.out, args.config, args.set)
    print(f"starting from the config of {origin}", file=sys.stderr)
    counts = refilter(args.out, cfg, log=(lambda *_: None) if args.json else print)
    if args.json:
        print(json.dumps(counts, indent=1, sort_keys=True))
    else:
        for k, v in sorted(counts.items()):
            print(f"{k:32s} {v}")
    return 0
