"""The DuckDB catalog over an output directory: sources, examples (no audio), rejections, shards,
runs, mixtures. Shards and manifests are the truth; `build` recreates the catalog from them and
gives the same tables as the incremental ingestion a job does as it commits.

Researchers hold OUT/catalog.duckdb open read-only at any time, and DuckDB refuses a writer
while any reader holds a file, so nothing ever writes that file in place. A job ingests its
commits into a private working copy (OUT/_state/catalog.duckdb, opened only by the holder of the
output's lock) and publishes it by copying it to a temp file and renaming that over
catalog.duckdb: a reader keeps reading the file it opened and sees the new rows when it reopens.
A catalog that fails to update is reported, never a failed job: `tandem catalog build OUT`
rebuilds it from the committed files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
from catalogs import describe
from pipelines.core.contracts import (
    EXAMPLE_SCHEMA,
    REJECTION_SCHEMA,
    RUN_SCHEMA,
    SHARD_SCHEMA,
    SOURCE_SCHEMA,
)
from pipelines.store.commit import file_records, manifests, retired_file

CATALOG = "catalog.duckdb"
WORKING = "_state/catalog.duckdb"
EXAMPLE_COLUMNS = [n for n in EXAMPLE_SCHEMA.names if n != "audio"]

_DUCK_TYPES = {
    "string": "VARCHAR", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "bool": "BOOLEAN",
}


def _ddl(schema) -> str:
    """Column definitions for a table of scalar columns (shards, runs)."""
    return ", ".join(f'"{f.name}" {_DUCK_TYPES[str(f.type)]}' for f in schema)


def catalog_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CATALOG


def connect(out_dir: str | Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    p = catalog_path(out_dir)
    if read_only and not p.exists():
        raise FileNotFoundError(f"{p}: no catalog here (run a job, or `tandem catalog build {out_dir}`)")
    return duckdb.connect(str(p), read_only=read_only)


def _create(con: duckdb.DuckDBPyConnection) -> None:
    # Tables come from the Arrow contracts themselves, so nested columns (words, segments,
    # spans, metrics) get the same DuckDB types whether a table starts empty or from a shard.
    ex = EXAMPLE_SCHEMA.remove(EXAMPLE_SCHEMA.get_field_index("audio"))
    ex = ex.append(pa.field("status", pa.string())).append(pa.field("shard", pa.string()))
    ex = ex.append(pa.field("speaker_ids", pa.list_(pa.string())))
    for name, schema in (("examples", ex), ("rejections", REJECTION_SCHEMA), ("sources", SOURCE_SCHEMA)):
        if not _has(con, name):
            empty = schema.empty_table()  # noqa: F841 (read by DuckDB's replacement scan)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty")
    # the rejecting filter's own detection; `language` is the example's one label (see _finish)
    con.execute("ALTER TABLE rejections ADD COLUMN IF NOT EXISTS detected_language VARCHAR")
    con.execute("ALTER TABLE examples ADD COLUMN IF NOT EXISTS speaker_ids VARCHAR[]")  # older working copies
    con.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS uri_given VARCHAR")
    con.execute(f"CREATE TABLE IF NOT EXISTS shards ({_ddl(SHARD_SCHEMA)})")
    con.execute(f"CREATE TABLE IF NOT EXISTS runs ({_ddl(RUN_SCHEMA)})")
    con.execute("CREATE TABLE IF NOT EXISTS commits (commit_id VARCHAR, run_id VARCHAR, job VARCHAR, "
                "seq BIGINT, created_at VARCHAR, work_items BIGINT, files BIGINT)")
    con.execute("CREATE TABLE IF NOT EXISTS mixtures (name VARCHAR, component VARCHAR, sql VARCHAR, "
                "weight DOUBLE)")


def _insert_from_parquet(con, table: str, path: str, select: str) -> None:
    con.execute(f"INSERT INTO {table} SELECT {select} FROM read_parquet(?)", [path])


def _ingest_file(con, out_dir: Path, rel: str) -> None:
    kind = rel.split("/", 1)[0]
    path = str(out_dir / rel)
    if kind in ("shards", "rejected"):
        cols = ", ".join(f'"{c}"' for c in EXAMPLE_COLUMNS)
        status = "accepted" if kind == "shards" else "rejected"
        # shards hold speaker ids; older ones hold per-source labels (SPEAKER_00, CH0, A), scoped
        # here as contracts.speaker_id does: a label with ':' is an id already
        con.execute(f"INSERT INTO examples ({cols}, status, shard, speaker_ids) SELECT {cols}, ?, ?, "
                    "list_transform(speakers, lambda s: CASE WHEN contains(s, ':') OR source_ids[1] IS NULL "
                    "THEN s ELSE source_ids[1] || ':' || s END) FROM read_parquet(?)",
                    [status, rel, path])
    elif kind == "rejections":
        cols = ", ".join(f'"{c}"' for c in REJECTION_SCHEMA.names)
        con.execute(f"INSERT INTO rejections ({cols}, detected_language) SELECT {cols}, language "
                    "FROM read_parquet(?)", [path])
    elif kind == "sources":
        # files written before a column was added lack it: read as NULL
        have = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()}
        cols = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in SOURCE_SCHEMA.names)
        _insert_from_parquet(con, "sources", path, cols)


def _drop_file(con, rel: str, path: Path | None = None) -> None:
    """Drop the rows of retired file `rel`; `path`: where it is now (under OUT/_retired/)."""
    kind = rel.split("/", 1)[0]
    if kind in ("shards", "rejected") and _has(con, "examples"):
        con.execute("DELETE FROM examples WHERE shard = ?", [rel])
    # rejection and source rows name no file: a retired file's rows go by their keys (dedup
    # settling rewrites them); the file stays in _retired/ until `tandem gc`, later than any catch-up
    key = {"rejections": "rejection_id", "sources": "work_key"}.get(kind)
    if key and path is not None and _has(con, kind):
        con.execute(f"DELETE FROM {kind} WHERE {key} IN (SELECT {key} FROM read_parquet(?))", [str(path)])
    con.execute("DELETE FROM shards WHERE path = ?", [rel])


def _has(con, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [table]).fetchone()[0])


def _apply_manifest(con, out_dir: Path, m: dict, skip: frozenset | set = frozenset()) -> None:
    """One commit into the tables; files in `skip` (retired by a later commit) are left out."""
    for rel in m.get("retired", []):
        _drop_file(con, rel, retired_file(out_dir, m["commit_id"], rel))
    for rel, meta in sorted(m["files"].items()):
        if rel in skip:
            continue
        _ingest_file(con, out_dir, rel)
        if rel.split("/", 1)[0] in ("shards", "rejected"):
            con.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [Path(rel).stem, rel.split("/", 1)[0], rel, meta["rows"], meta["bytes"],
                         meta["sha256"], m["commit_id"], m["run_id"]])
    con.execute("INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?, ?)",
                [m["commit_id"], m["run_id"], m.get("job"), m["seq"], m["created_at"],
                 len(m.get("work_keys", [])), len(m["files"])])


def _retired(ms: list[dict]) -> set[str]:
    return {rel for m in ms for rel in m.get("retired", [])}


def _load_runs(con, out_dir: Path) -> None:
    con.execute("DELETE FROM runs")
    d = out_dir / "runs"
    if not d.exists():
        return
    for p in sorted(d.glob("*.json")):
        r = json.loads(p.read_text())
        con.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(RUN_SCHEMA))})",
                    [r.get(n) if isinstance(r.get(n), (str, type(None))) else json.dumps(r.get(n))
                     for n in RUN_SCHEMA.names])


def _load_mixtures(con, out_dir: Path) -> None:
    con.execute("DELETE FROM mixtures")
    d = out_dir / "mixtures"
    if not d.exists():
        return
    for p in sorted(d.glob("*.json")):
        m = json.loads(p.read_text())
        for i, comp in enumerate(m.get("components", [])):
            con.execute("INSERT INTO mixtures VALUES (?, ?, ?, ?)",
                        [m.get("name", p.stem), comp.get("name", str(i)), comp["sql"], float(comp.get("weight", 1.0))])


def _views(con) -> None:
    con.execute("""CREATE OR REPLACE VIEW hours AS
        SELECT language, kind, status, count(*) AS examples, round(sum(duration_s) / 3600, 4) AS hours,
               to_seconds(round(sum(duration_s))) AS duration
        FROM examples GROUP BY ALL ORDER BY ALL""")
    con.execute("""CREATE OR REPLACE VIEW rejection_reasons AS
        SELECT stage, filter, reason, count(*) AS n,
               round(sum(CASE WHEN isnan(duration_s) THEN 0 ELSE duration_s END) / 3600, 4) AS hours,
               to_seconds(round(sum(CASE WHEN isnan(duration_s) THEN 0 ELSE duration_s END))) AS duration
        FROM rejections GROUP BY ALL ORDER BY n DESC""")
    con.execute("CREATE OR REPLACE VIEW accepted AS SELECT * FROM examples WHERE status = 'accepted'")
    describe.create(con)


def _finish(con, out_dir: Path) -> None:
    """The small tables from their JSON files, the views, and everything flushed to the file."""
    _create(con)
    _load_runs(con, out_dir)
    _load_mixtures(con, out_dir)
    # one language label per example: a rejection naming an example repeats the example's
    # label; what the rejecting filter detected stays in detected_language
    con.execute("""UPDATE rejections SET language = e.language FROM examples e
        WHERE rejections.example_id = e.example_id AND rejections.language IS DISTINCT FROM e.language""")
    _views(con)
    describe.annotate(con)
    con.execute("CHECKPOINT")


def _publish_file(src: Path, out_dir: Path) -> None:
    """Copy a closed, checkpointed catalog over OUT/catalog.duckdb by rename (readers keep theirs)."""
    dst = catalog_path(out_dir)
    tmp = out_dir / f".{CATALOG}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if src.parent != out_dir or not src.name.startswith(f".{CATALOG}.tmp-"):
            shutil.copyfile(src, tmp)
        else:
            os.replace(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # the file is checkpointed: a WAL beside it would be a stale one DuckDB must not replay
        Path(str(dst) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _fresh(path: Path) -> duckdb.DuckDBPyConnection:
    path.unlink(missing_ok=True)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    return duckdb.connect(str(path))


@contextlib.contextmanager
def _new_copy(out_dir: Path, src: Path | None = None):
    """A connection to a new catalog file beside the published one (empty, or a copy of `src`),
    published by atomic rename when the block succeeds; the temp file never outlives it."""
    tmp = out_dir / f".{CATALOG}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if src is None:
            con = _fresh(tmp)
        else:
            shutil.copyfile(src, tmp)
            con = duckdb.connect(str(tmp))
        try:
            yield con
        finally:
            con.close()
        _publish_file(tmp, out_dir)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)


def build(out_dir: str | Path) -> Path:
    """Rebuild the catalog from the committed files and publish it (atomic rename); never opens
    the published file for writing, so it works while researchers hold it."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise FileNotFoundError(f"{out_dir}: no such output directory")
    with _new_copy(out_dir) as con:
        _create(con)
        ms = manifests(out_dir)
        skip = _retired(ms)
        for m in ms:
            _apply_manifest(con, out_dir, m, skip)
        _finish(con, out_dir)
    return catalog_path(out_dir)


def refresh_meta(out_dir: str | Path) -> None:
    """Reload the small tables (runs, mixtures) from their JSON files into a new published copy."""
    out_dir = Path(out_dir)
    src = catalog_path(out_dir)
    if not src.exists():
        build(out_dir)
        return
    with _new_copy(out_dir, src) as con:
        _finish(con, out_dir)


def query(out_dir: str | Path, sql: str, params: list | None = None, *, confined: bool = False):
    """Run SQL on the catalog read-only; returns (column names, rows). `confined` (SQL a user typed
    or a file holds): one SELECT, on a connection that cannot reach files (catalogs.confined)."""
    con = connect(out_dir, read_only=True)
    try:
        if confined:
            from catalogs.confined import confine, one_select
            sql = one_select(sql, f"{catalog_path(out_dir)}: query")
            confine(con)
        try:
            cur = con.execute(sql, params or [])
        except duckdb.Error as e:
            if not confined:
                raise
            raise ValueError(f"{catalog_path(out_dir)}: query {sql.strip()!r} failed: {' '.join(str(e).split())}") from None
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def summary(out_dir: str | Path) -> dict:
    """Hours by language/kind/status, rejections by reason, sources by status, shard totals."""
    con = connect(out_dir, read_only=True)
    try:
        def rows(sql):
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        return {
            "hours": rows("SELECT * FROM hours"),
            "rejections": rows("SELECT * FROM rejection_reasons"),
            "sources": rows("SELECT kind, status, count(*) AS n, round(sum(duration_s)/3600, 4) AS hours "
                            "FROM sources GROUP BY ALL ORDER BY ALL"),
            "shards": rows("SELECT kind, count(*) AS files, sum(rows) AS rows, sum(bytes) AS bytes "
                           "FROM shards GROUP BY ALL ORDER BY ALL"),
            "runs": rows("SELECT run_id, job, status, started_at, finished_at FROM runs ORDER BY started_at"),
        }
    finally:
        con.close()


def table_fingerprint(out_dir: str | Path) -> dict[str, list]:
    """Sorted contents of every table, to compare a rebuilt catalog with an incremental one."""
    con = connect(out_dir, read_only=True)
    try:
        out = {}
        for t in ("sources", "examples", "rejections", "shards", "runs", "mixtures"):
            cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
            out[t] = sorted(map(repr, con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {t}").fetchall()))
        return out
    finally:
        con.close()


def live_files_match(out_dir: str | Path) -> bool:
    """The catalog's shard rows match the manifests (a cheap consistency check)."""
    recs = {r["path"] for r in file_records(out_dir) if r["kind"] in ("shards", "rejected")}
    _, rows = query(out_dir, "SELECT path FROM shards")
    return recs == {r[0] for r in rows}
