"""Units of work for the loader: (shard, row group) pieces, how they are found, selected and shuffled."""

from __future__ import annotations

import glob as _glob
import hashlib
import io
import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

STATE_FORMAT = "tandem.loader/2"
READ_COLUMNS = ["example_id", "kind", "language", "sample_rate", "num_samples", "audio", "words"]
POS_FIELDS = ("slot", "num_slots", "component", "epoch", "unit", "row", "chunk")
CROPS = ("random", "start", "chunk")


class LoaderError(ValueError):
    """Bad loader input or state; the message names the file (or state) and the reason."""


@dataclass(frozen=True)
class Unit:
    """One row group of one shard, optionally narrowed to selected rows."""

    path: str
    row_group: int
    rows: tuple[int, ...] | None  # selected row indices inside the row group; None = all
    n: int
    ids: tuple[str, ...] | None = None  # the example ids the catalog placed at `rows` (checked on read)
    sha256: str | None = None  # the shard's checksum in its commit manifest (checked on first read)


# ---- finding shards ----------------------------------------------------------------------------

def shard_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files from a list of paths, a glob, a Parquet file, or an output dir (committed shards)."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    else:
        s = str(source)
        p = Path(s)
        if any(ch in s for ch in "*?["):
            paths = [Path(x) for x in sorted(_glob.glob(s, recursive=True))]
            if not paths:
                raise LoaderError(f"{s}: glob matches no files")
        elif p.is_dir():
            paths = _output_dir_shards(p)
            if not paths:
                raise LoaderError(f"{p}: no committed shards and no *.parquet files here")
        else:
            paths = [p]
    return [_existing(p) for p in paths]


def where_now(path: str | Path) -> Path | None:
    """Where committed shard `path` (OUT/<kind>/<name>.parquet) is now: a reader that listed it
    before a re-filter or dedup settling retired it finds it under OUT/_retired/<commit>/
    (pipelines.store.commit.locate); None when it is not an output's file or `gc` deleted it."""
    p = Path(path)
    out = p.parent.parent
    try:
        from pipelines.store.commit import COMMITS, locate
    except ImportError:  # a tree without the shard writer: plain files
        return None
    if not (out / COMMITS).is_dir():
        return None
    q = locate(out, f"{p.parent.name}/{p.name}")
    return q if q is not None and q.is_file() else None


def _existing(p: Path) -> Path:
    if p.is_file():
        return p
    q = where_now(p)
    if q is None:
        raise LoaderError(f"{p}: shard not found (a retired shard stays in OUT/_retired/ until `tandem gc` "
                          "deletes it)")
    return q


_MOVED: dict[str, str] = {}


def _current(path: str) -> str:
    """`path`, or where it went when a commit retired it after the units were listed."""
    if path in _MOVED:
        return _MOVED[path]
    if os.path.exists(path):
        return path
    q = where_now(path)
    if q is None:
        raise LoaderError(f"{path}: shard not found: retired by a later commit and deleted by `tandem gc`, "
                          "or removed by hand")
    _MOVED[path] = str(q)
    return _MOVED[path]


def _output_dir_shards(out_dir: Path) -> list[Path]:
    try:
        from pipelines.store.commit import COMMITS, committed_files
    except ImportError:  # a tree without the shard writer: plain files
        return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))
    if (out_dir / COMMITS).exists():
        return sorted(committed_files(out_dir, "shards"))
    # not an output dir: its own Parquet files
    return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))


def manifest_sums(out_dir: str | Path) -> dict[str, str]:
    """{shard path: sha256} of an output dir's committed files ({} for a plain folder of Parquet)."""
    from pipelines.store.commit import COMMITS, file_records
    out_dir = Path(out_dir)
    if not (out_dir / COMMITS).exists():
        return {}
    return {str(out_dir / r["path"]): r["sha256"] for r in file_records(out_dir) if r.get("sha256")}


_VERIFIED: set[tuple[str, int, int, str]] = set()


def verify_shard(path: str, sha256: str | None) -> None:
    """A committed shard must be the bytes its commit manifest names: once per process and file
    version (a tampered or corrupt shard is an error naming it, never rows read from it)."""
    if not sha256:
        return
    from pipelines.io.files import sha256_file
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, sha256)
    if key in _VERIFIED:
        return
    got = sha256_file(Path(path))
    if got != sha256:
        raise LoaderError(f"{path}: checksum {got[:16]} does not match its commit manifest ({sha256[:16]}): the "
                          "shard was changed after it was committed (tampered or corrupt); `tandem catalog "
                          "verify` lists every such file")
    _VERIFIED.add(key)


def _open_parquet(path: str):
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any reader error is a bad shard
        raise LoaderError(f"{path}: not a readable Parquet shard ({e})") from None
    missing = [c for c in READ_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise LoaderError(f"{path}: not an examples shard, missing columns {missing}")
    return pf


_FILES: OrderedDict[tuple[int, str, int, int], Any] = OrderedDict()


def _cached_parquet(path: str):
    """An open ParquetFile, kept per process (DataLoader workers fork) in a small LRU."""
    st = os.stat(path)
    key = (os.getpid(), path, st.st_mtime_ns, st.st_size)  # a rewritten file is opened again
    pf = _FILES.get(key)
    if pf is None:
        pf = _open_parquet(path)
        _FILES[key] = pf
        while len(_FILES) > 8:
            _FILES.popitem(last=False)
    else:
        _FILES.move_to_end(key)
    return pf


def build_units(paths: Sequence[str | Path], sums: dict[str, str] | None = None) -> list[Unit]:
    """One unit per non-empty row group, from the Parquet footers alone (`sums`: expected checksums)."""
    units = []
    for p in paths:
        p = str(p)
        pf = _open_parquet(p)
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if n:
                units.append(Unit(p, rg, None, n, sha256=(sums or {}).get(p)))
    return units


def select_units(source: str | Path | Sequence[str | Path], sql: str | None = None, *,
                 include_rejected: bool = False) -> list[Unit]:
    """Units of a source, or of the examples a catalog query selects in output dir `source`.

    A selection is placed by the catalog's (shard, row) location and the shards' footers (row
    group sizes): no row group is scanned to find the rows. Each row's example_id is checked
    when the row group is read for training, so a stale catalog is an error, not wrong data."""
    sums = manifest_sums(source) if isinstance(source, (str, Path)) and Path(source).is_dir() else {}
    if sql is None:
        return build_units(shard_paths(source), sums)
    located = _catalog_selection(source, sql, include_rejected)
    units = []
    for path in sorted(located):
        pf = _open_parquet(path)
        rows = sorted(located[path])
        total = pf.metadata.num_rows
        if rows and rows[-1][0] >= total:
            raise LoaderError(f"{path}: the catalog places example {rows[-1][1]} at row {rows[-1][0]}, the shard has "
                              f"{total} rows (stale catalog? rebuild it with `tandem catalog build`)")
        start = 0
        k = 0
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            sel = []
            while k < len(rows) and rows[k][0] < start + n:
                sel.append(rows[k])
                k += 1
            if sel:
                units.append(Unit(path, rg, tuple(r - start for r, _ in sel), len(sel), tuple(e for _, e in sel),
                                  sums.get(path)))
            start += n
    return units


def _read_rows(unit: Unit, columns: list[str] | None) -> list[dict]:
    path = _current(unit.path)  # the same bytes under _retired/ when a commit retired the shard
    verify_shard(path, unit.sha256)
    pf = _cached_parquet(path)
    try:
        # one thread: DataLoader workers are the parallelism, and small row groups pay for threads
        t = pf.read_row_group(unit.row_group, columns=columns, use_threads=False)
    except Exception as e:  # noqa: BLE001
        raise LoaderError(f"{unit.path}: cannot read row group {unit.row_group}: {e}") from None
    if unit.rows is None:
        return t.to_pylist()
    t = t.take(list(unit.rows))
    rows = t.to_pylist()
    if unit.ids is not None:
        for i, row, eid in zip(unit.rows, rows, unit.ids):
            if row["example_id"] != eid:
                raise LoaderError(f"{unit.path}: row {i} of row group {unit.row_group} holds example "
                                  f"{row['example_id']}, the catalog says {eid} (stale catalog? rebuild it with "
                                  "`tandem catalog build`)")
    return rows


def iter_rows(units: Sequence[Unit], columns: Sequence[str] | None = None) -> Iterator[tuple[Unit, dict]]:
    """(unit, row) for every selected row, one row group in memory at a time."""
    cols = list(columns) if columns is not None else None
    for unit in units:
        for row in _read_rows(unit, cols):
            yield unit, row


def _catalog_selection(out_dir: str | Path, sql: str, include_rejected: bool) -> dict[str, set[tuple[int, str]]]:
    """{shard path: {(row in shard, example_id)}} for the examples the query selects.

    The catalog ingests each shard with one INSERT from read_parquet, which keeps file order, so an
    example's row in its shard is its rank by rowid among that shard's rows (a `shard_row` column,
    where a catalog has one, is used as is)."""
    import duckdb
    out_dir = Path(out_dir)
    db = out_dir / "catalog.duckdb"
    if not db.exists():
        raise LoaderError(f"{db}: no catalog (build it with `tandem catalog build {out_dir}`)")
    from catalogs.confined import connect_confined, one_select
    status = "" if include_rejected else " AND e.status = 'accepted'"
    sel_sql = one_select(sql, f"{db}: selection", LoaderError)
    con = connect_confined(db)
    try:
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_name = 'examples'").fetchall()}
        row = "shard_row" if "shard_row" in cols else "row_number() OVER (PARTITION BY shard ORDER BY rowid) - 1"
        q = (f"WITH located AS (SELECT shard, example_id, status, {row} AS shard_row FROM examples) "
             f"SELECT e.shard, e.shard_row, e.example_id FROM located e WHERE e.example_id IN "
             f"(SELECT q.example_id FROM ({sel_sql}) AS q){status}")
        try:
            rows = con.execute(q).fetchall()
        except duckdb.Error as e:
            raise LoaderError(f"{db}: query {sql!r} failed (it must select example_id from examples): {e}") from None
    finally:
        con.close()
    sel: dict[str, set[tuple[int, str]]] = {}
    for shard, r, eid in rows:
        sel.setdefault(str(out_dir / shard), set()).add((int(r), eid))
    return sel


# ---- small helpers -------------------------------------------------------------------------------

def _int_hash(*parts: Any) -> int:
    h = hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _resolve_slot(rank: int | None, world_size: int | None) -> tuple[int, int, int, int]:
    """(slot, num_slots, rank, world_size) for the calling process and DataLoader worker."""
    if rank is None or world_size is None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
    if not 0 <= rank < world_size:
        raise LoaderError(f"rank {rank} is outside world_size {world_size}")
    wi = get_worker_info()
    w, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
    return rank * nw + w, world_size * nw, rank, world_size


def shuffle_plan(sizes: Sequence[int], buffer: int, rng: np.random.Generator | None) -> Iterator[tuple[int, int]]:
    """Emission order (unit position, row) of a shuffle buffer fed units in order; None rng = no shuffle."""
    if rng is None or buffer <= 1:
        for u, n in enumerate(sizes):
            for r in range(n):
                yield u, r
        return
    buf: list[tuple[int, int]] = []
    for u, n in enumerate(sizes):
        for r in range(n):
            if len(buf) < buffer:
                buf.append((u, r))
                continue
            j = int(rng.integers(buffer))
            yield buf[j]
            buf[j] = (u, r)
    order = rng.permutation(len(buf))
    for j in order:
        yield buf[j]


def _decode(data: bytes, off: int, n: int, where: str) -> np.ndarray:
    """Samples [off, off+n) of two-channel FLAC bytes as float32 [2, n], seeking instead of decoding all."""
    import soundfile as sf
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.channels != 2:
                raise LoaderError(f"{where}: audio has {f.channels} channel(s), expected 2")
            if off:
                f.seek(off)
            x = f.read(n, dtype="float32", always_2d=True)
    except LoaderError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error is a bad example
        raise LoaderError(f"{where}: cannot decode audio: {e}") from None
    if len(x) < n:
        raise LoaderError(f"{where}: audio has {off + len(x)} samples, num_samples says {off + n}")
    return np.ascontiguousarray(x.T)
