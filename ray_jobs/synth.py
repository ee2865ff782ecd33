"""`tandem synth [SCRIPTS] OUT`: synthetic full-duplex dialogues, two channels, word timings."""

from __future__ import annotations

COMMAND = "synth"
HELP = "synthesize two-channel full-duplex dialogues with TTS (Ray Data job)"


def add_arguments(p) -> None:
    from ray_jobs.cli import add_job_arguments
    p.add_argument("paths", nargs="+", metavar="[SCRIPTS] OUT",
                   help="optional dialogue scripts (JSONL) then the output directory; "
                        "without scripts, the built-in generator writes --count dialogues")
    p.add_argument("--count", type=int, default=60, help="dialogues to generate (built-in scripts; default 60)")
    p.add_argument("--seed", type=int, help="job seed (default: config `seed`)")
    p.add_argument("--languages", nargs="+", help="subset of the accepted languages (default: all)")
    add_job_arguments(p)


def run(args) -> int:
    from ray_jobs.catalog_cmd import print_summary
    from ray_jobs.cli import job_config
    from ray_jobs.jobs import report_retries, run_synth
    if len(args.paths) > 2:
        raise ValueError("expected [SCRIPTS] OUT")
    scripts, out = (args.paths[0], args.paths[1]) if len(args.paths) == 2 else (None, args.paths[0])
    cfg = job_config(args)
    res = run_synth(scripts, out, cfg, count=args.count, seed=args.seed, languages=args.languages)
    print_summary(out)
    return report_retries(res)
