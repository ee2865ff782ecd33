"""`tandem` command line: one entry point, one module per command (see COMMANDS)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = [
    "ray_jobs.demo",
    "ray_jobs.curate",
    "ray_jobs.synth",
    "ray_jobs.filter",
    "ray_jobs.gc",
    "ray_jobs.report",
    "ray_jobs.catalog_cmd",
    "ray_jobs.export",
    "ray_jobs.voices_cmd",
    "ray_jobs.models_cmd",
    "ray_jobs.config_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem", description=__doc__.split("\n")[0] + " Full-duplex speech data pipeline.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for modname in COMMANDS:
        mod = importlib.import_module(modname)
        sp = sub.add_parser(mod.COMMAND, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Options every job shares."""
    p.add_argument("--config", help="job config YAML (see `tandem config show`); defaults otherwise")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set asr.beam_size=1 (repeatable; value is YAML)")
    p.add_argument("--address", help="Ray cluster address ('auto' or ray://host:10001); default: local Ray")
    p.add_argument("--local", action="store_true", help="run in-process without Ray (debugging)")
    p.add_argument("--num-cpus", type=int, help="logical CPUs for a local Ray")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def job_config(args) -> dict:
    from pipelines.core.config import load_config, parse_overrides
    over = parse_overrides(args.set)
    res = over.setdefault("resources", {})
    if args.address:
        res["address"] = args.address
    if args.local:
        res["local"] = True
    if args.num_cpus:
        res["num_cpus"] = args.num_cpus
    if args.no_progress:
        res["progress"] = False
    cfg = load_config(args.config, over)
    from pipelines.models.cache import ModelsParams
    if ModelsParams.from_config(cfg).offline:
        # before any hub library reads it; forwarded to the workers with the job's environment
        os.environ["HF_HUB_OFFLINE"] = "1"
    return cfg


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pipelines.core.stage import ModelMissing
    from ray_jobs.runner import InfraFailure
    try:
        return int(args._run(args) or 0)
    except InfraFailure as e:  # a full or failing disk: one line, and 3 as for other retryable failures
        if args.verbose:
            raise
        print(f"tandem {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (FileNotFoundError, ValueError, KeyError, PermissionError, OSError, ModelMissing) as e:
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"tandem {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
