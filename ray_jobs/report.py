"""`tandem report OUT`: the dataset report (OUT/report/index.html, PNG plots, summary.json)."""

from __future__ import annotations

COMMAND = "report"
HELP = "write OUT/report/index.html with plots and OUT/report/summary.json"


def add_arguments(p) -> None:
    p.add_argument("out", help="output directory of a job")
    p.add_argument("--config", help="config whose filter thresholds are drawn on the plots (default: defaults)")
    p.add_argument("--report-dir", help="where to write (default OUT/report)")


def run(args) -> int:
    from catalogs.report import build_report
    from pipelines.core.config import load_config
    path = build_report(args.out, load_config(args.config), report_dir=args.report_dir)
    print(path)
    return 0
