"""`tandem curate INPUT OUT`: raw recordings to two-channel examples with per-word, per-speaker times."""

from __future__ import annotations

COMMAND = "curate"
HELP = "ingest, VAD, diarize, transcribe and cut raw audio into two-channel examples (Ray Data job)"


def add_arguments(p) -> None:
    from ray_jobs.cli import add_job_arguments
    p.add_argument("input", help="a directory, a glob, or a manifest (.jsonl / .parquet with a `uri` column)")
    p.add_argument("out", help="output directory (shards, catalog); rerunning resumes")
    add_job_arguments(p)


def run(args) -> int:
    from ray_jobs.catalog_cmd import print_summary
    from ray_jobs.cli import job_config
    from ray_jobs.jobs import report_retries, run_curate
    cfg = job_config(args)
    res = run_curate(args.input, args.out, cfg)
    print_summary(args.out)
    print(f"\nshards: {args.out}/shards   catalog: {args.out}/catalog.duckdb   "
          f"try: tandem catalog query {args.out} \"SELECT * FROM hours\"")
    return report_retries(res)
