"""Named mixtures: weighted catalog selections a trainer reads with `pipelines.loader.MixtureDataset`.

A mixture lives in OUT/mixtures/<name>.json:
    {"name": "fr_heavy", "components": [{"name": "fr", "sql": "SELECT example_id FROM examples
     WHERE language = 'fr'", "weight": 3.0}, ...]}
Each component is a query over the catalog's `examples` table that returns example_id; the loader
draws from the components in proportion to their weights. `tandem catalog build` loads the files
into the catalog's `mixtures` table.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from pipelines.io.files import write_atomic

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class MixtureError(ValueError):
    """A bad mixture definition; the message says which and why."""


def mixture_path(out_dir: str | Path, name: str) -> Path:
    if not NAME_RE.match(name):
        raise MixtureError(f"mixture name {name!r}: use letters, digits, '_', '.', '-' (at most 100)")
    return Path(out_dir) / "mixtures" / f"{name}.json"


def check_sql(out_dir: str | Path, sql: str) -> int:
    """Run the selection on the catalog (one SELECT, confined); returns how many accepted examples it selects."""
    import duckdb
    from catalogs.confined import connect_confined, one_select
    db = Path(out_dir) / "catalog.duckdb"
    q = one_select(sql, f"{db}: mixture component", MixtureError)
    con = connect_confined(db)
    try:
        cols = [d[0] for d in con.execute(f"SELECT * FROM ({q}) AS q LIMIT 0").description]
        if "example_id" not in cols:
            raise MixtureError(f"{db}: query must return an example_id column, it returns {cols}")
        return con.execute(f"SELECT count(*) FROM examples WHERE status = 'accepted' AND example_id IN "
                           f"(SELECT q.example_id FROM ({q}) AS q)").fetchone()[0]
    except duckdb.Error as e:
        raise MixtureError(f"{db}: query {sql!r} failed: {e}") from None
    finally:
        con.close()


def read_mixture(out_dir: str | Path, name: str) -> dict:
    p = mixture_path(out_dir, name)
    if not p.exists():
        return {"name": name, "components": []}
    try:
        m = json.loads(p.read_text())
        if not isinstance(m, dict) or not isinstance(m.get("components"), list):
            raise TypeError("no components list")
        return m
    except (ValueError, TypeError) as e:
        raise MixtureError(f"{p}: not a valid mixture file ({e})") from None


def add_mixture(out_dir: str | Path, name: str, sql: str, weight: float = 1.0, *,
                component: str | None = None, validate: bool = True) -> dict:
    """Add (or re-weight) one component of mixture `name`; returns the whole mixture.

    A component with the same name, or the same SQL, is replaced. With `validate` and a catalog
    present, the query must run and return example_id.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise MixtureError(f"{out_dir}: no such output directory")
    if not sql or not sql.strip():
        raise MixtureError(f"mixture {name!r}: empty sql")
    from catalogs.confined import one_select
    one_select(sql, f"mixture {name!r}", MixtureError)  # with or without a catalog to run it on
    weight = float(weight)
    if not math.isfinite(weight) or weight <= 0:
        raise MixtureError(f"mixture {name!r}: weight must be a positive number, got {weight}")
    p = mixture_path(out_dir, name)
    selected = None
    if validate and (out_dir / "catalog.duckdb").exists():
        selected = check_sql(out_dir, sql)
    m = read_mixture(out_dir, name)
    comps = m["components"]
    sql = sql.strip()
    keep = [c for c in comps if c["sql"] != sql and (component is None or c.get("name") != component)]
    if component is None:
        old = [c for c in comps if c["sql"] == sql]
        used = {c.get("name") for c in keep}
        component = old[0]["name"] if old else next(f"c{i}" for i in range(len(comps) + 1) if f"c{i}" not in used)
    comp = {"name": component, "sql": sql, "weight": weight}
    if selected is not None:
        comp["selected_at_add"] = selected
    m = {"name": name, "components": [*keep, comp]}
    write_atomic(p, json.dumps(m, indent=1) + "\n")
    return m


def list_mixtures(out_dir: str | Path) -> list[dict]:
    d = Path(out_dir) / "mixtures"
    return [read_mixture(out_dir, p.stem) for p in sorted(d.glob("*.json"))] if d.exists() else []


# ---- `tandem catalog mix OUT --name NAME --sql "..." [--weight W]` ------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output directory (with its catalog)")
    parser.add_argument("--name", required=True, help="mixture name (file OUT/mixtures/<name>.json)")
    parser.add_argument("--sql", required=True, help="query over `examples` that returns example_id")
    parser.add_argument("--weight", type=float, default=1.0, help="relative sampling weight (default 1)")
    parser.add_argument("--component", default=None, help="component name (default: c0, c1, ...)")
    parser.add_argument("--no-validate", action="store_true", help="do not run the query on the catalog")


def run(args: argparse.Namespace) -> int:
    try:
        m = add_mixture(args.out, args.name, args.sql, args.weight, component=args.component,
                        validate=not args.no_validate)
    except MixtureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(c["weight"] for c in m["components"])
    for c in m["components"]:
        n = c.get("selected_at_add")
        print(f"{m['name']}/{c['name']}: weight {c['weight']:g} ({c['weight'] / total:.1%})"
              + (f", {n} examples" if n is not None else "") + f"  {c['sql']}")
    if (Path(args.out) / "catalog.duckdb").exists():
        try:
            from catalogs.catalog import refresh_meta
            refresh_meta(args.out)
        except Exception as e:  # noqa: BLE001 - the JSON is the truth; the table catches up on build
            print(f"warning: mixture saved, catalog table not refreshed ({e})", file=sys.stderr)
    return 0
