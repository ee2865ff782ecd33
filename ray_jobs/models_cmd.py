"""`tandem models`: every model each backend uses, where it comes from, whether it is here."""

from __future__ import annotations

COMMAND = "models"
HELP = "list the models of every backend, their origin, and whether they are present"


def add_arguments(p) -> None:
    p.add_argument("--config", help="job config YAML (for models.cache_dir)")
    p.add_argument("--check", action="store_true", help="exit 1 if an embedded default is missing")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table
    from tandem.pipelines.core.config import load_config
    from tandem.pipelines.models.registry import status
    rows = status(load_config(args.config))
    t = Table(title="tandem models")
    for c in ("backend", "role", "model", "origin", "present", "path / how to get it"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["backend"], r["role"], r["model"], r["origin"],
                  "[green]yes[/]" if r["present"] else "[red]no[/]", r["path"] or r["note"])
    Console(width=200).print(t)
    missing = [r for r in rows if r["backend"] in ("embedded",) and not r["present"]]
    return 1 if (args.check and missing) else 0
