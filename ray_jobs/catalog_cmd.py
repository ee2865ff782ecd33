"""`tandem catalog build|query|summary|describe|mix OUT`: the DuckDB catalog of an output directory."""

from __future__ import annotations

import json

COMMAND = "catalog"
HELP = "build, query and summarise the DuckDB catalog of an output directory; record mixtures"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="rebuild OUT/catalog.duckdb from the committed shards")
    b.add_argument("out")
    q = sub.add_parser("query", help="run SQL read-only (tables: sources examples rejections shards runs commits "
                                     "mixtures metric_docs; views: accepted hours rejection_reasons metric_keys; "
                                     "`tandem catalog describe OUT` explains every column)")
    q.add_argument("out")
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s = sub.add_parser("summary", help="hours by language/kind/status, rejections by reason")
    s.add_argument("out")
    s.add_argument("--json", action="store_true")
    d = sub.add_parser("describe", help="every table and view with its columns, types and meaning; "
                                        "--metrics: every metric key found, with its meaning")
    d.add_argument("out")
    d.add_argument("table", nargs="?", help="only this table or view")
    d.add_argument("--metrics", action="store_true", help="the metric_keys view instead")
    d.add_argument("--format", choices=["table", "csv", "json"], default="table")
    from catalogs import mix
    m = sub.add_parser("mix", help="record a named selection (SQL over examples) with a weight")
    mix.add_arguments(m)
    v = sub.add_parser("verify", help="check every live file's checksum against its manifest")
    v.add_argument("out")


def print_rows(cols, rows, fmt: str = "table", title: str | None = None) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1))
        return
    if fmt == "csv":
        import csv
        import sys
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c in cols:
        t.add_column(str(c), overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in r))
    Console(width=200).print(t)


def print_summary(out) -> None:
    from catalogs.catalog import summary
    s = summary(out)
    for name, title in (("hours", "hours by language, kind, status"), ("sources", "sources by status"),
                        ("rejections", "rejections by stage and reason"), ("shards", "shard files")):
        rows = s[name]
        cols = list(rows[0].keys()) if rows else ["(none)"]
        print_rows(cols, [list(r.values()) for r in rows], title=title)


def run(args) -> int:
    from catalogs import catalog
    if args.action == "build":
        path = catalog.build(args.out)
        _, rows = catalog.query(args.out, "SELECT (SELECT count(*) FROM examples), (SELECT count(*) FROM rejections), "
                                          "(SELECT count(*) FROM sources), (SELECT count(*) FROM shards)")
        e, r, s, sh = rows[0]
        print(f"built {path}: {e} examples, {r} rejections, {s} sources, {sh} shard files")
        return 0
    if args.action == "query":
        cols, rows = catalog.query(args.out, args.sql, confined=True)
        print_rows(cols, rows, args.format)
        return 0
    if args.action == "summary":
        if args.json:
            print(json.dumps(catalog.summary(args.out), default=str, indent=1))
        else:
            print_summary(args.out)
        return 0
    if args.action == "describe":
        if args.metrics:
            cols, rows = catalog.query(args.out, "SELECT * FROM metric_keys")
        else:
            from catalogs.describe import describe
            con = catalog.connect(args.out)
            try:
                cols, rows = ["table", "kind", "column", "type", "description"], describe(con, args.table)
            finally:
                con.close()
        print_rows(cols, rows, args.format)
        return 0
    if args.action == "mix":
        from catalogs import mix
        return int(mix.run(args) or 0)
    if args.action == "verify":
        from pipelines.store.commit import verify
        problems = verify(args.out)
        for p in problems:
            print(p)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    return 2
