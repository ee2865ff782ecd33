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

STATE_FORMAT = "tandem.loader/1"
READ_COLUMNS = ["example_id", "kind", "language", "sample_rate", "num_samples", "audio", "words"]
POS_FIELDS = ("slot", "num_slots", "index", "component", "epoch", "row", "chunk")
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
    for p in paths:
        if not p.is_file():
            raise LoaderError(f"{p}: shard not found")
    return paths


def _output_dir_shards(out_dir: Path) -> list[Path]:
    try:
        from tandem.pipelines.store.commit import COMMITS, committed_files
    except ImportError:  # a tree without the shard writer: plain files
        return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))
    if (out_dir / COMMITS).exists():
        return sorted(committed_files(out_dir, "shards"))
    # not an output dir: its own Parquet files
    return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))


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


_FILES: OrderedDict[tuple[int, str], Any] = OrderedDict()


def _cached_parquet(path: str):
    """An open ParquetFile, kept per process (DataLoader workers fork) in a small LRU."""
    key = (os.getpid(), path)
    pf = _FILES.get(key)
    if pf is None:
        pf = _open_parquet(path)
        _FILES[key] = pf
        while len(_FILES) > 8:
            _FILES.popitem(last=False)
    else:
        _FILES.move_to_end(key)
    return pf


def build_units(paths: Sequence[str | Path], selected: dict[str, set[str]] | None = None) -> list[Unit]:
    """Units from Parquet footers; with `selected` ({path: example ids}) only rows with those ids
    are kept, found by reading the example_id column alone."""
    units = []
    for p in paths:
        p = str(p)
        pf = _open_parquet(p)
        want = None if selected is None else selected.get(p, set())
        found = 0
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if want is None:
                if n:
                    units.append(Unit(p, rg, None, n))
                continue
            ids = pf.read_row_group(rg, columns=["example_id"]).column(0).to_pylist()
            rows = tuple(i for i, x in enumerate(ids) if x in want)
            found += len(rows)
            if rows:
                units.append(Unit(p, rg, rows, len(rows)))
        if want is not None and found < len(want):
            raise LoaderError(f"{p}: {len(want) - found} example(s) the catalog lists are not in this shard "
                              "(stale catalog? rebuild it with `tandem catalog build`)")
    return units


def select_units(source: str | Path | Sequence[str | Path], sql: str | None = None, *,
                 include_rejected: bool = False) -> list[Unit]:
    """Units of a source, or of the examples a catalog query selects in output dir `source`."""
    if sql is None:
        return build_units(shard_paths(source))
    sel = _catalog_selection(source, sql, include_rejected)
    return build_units(sorted(sel), sel)


def _read_rows(unit: Unit, columns: list[str] | None) -> list[dict]:
    pf = _cached_parquet(unit.path)
    try:
        # one thread: DataLoader workers are the parallelism, and small row groups pay for threads
        t = pf.read_row_group(unit.row_group, columns=columns, use_threads=False)
    except Exception as e:  # noqa: BLE001
        raise LoaderError(f"{unit.path}: cannot read row group {unit.row_group}: {e}") from None
    rows = t.to_pylist()
    return rows if unit.rows is None else [rows[i] for i in unit.rows]


def iter_rows(units: Sequence[Unit], columns: Sequence[str] | None = None) -> Iterator[tuple[Unit, dict]]:
    """(unit, row) for every selected row, one row group in memory at a time."""
    cols = list(columns) if columns is not None else None
    for unit in units:
        for row in _read_rows(unit, cols):
            yield unit, row


def _catalog_selection(out_dir: str | Path, sql: str, include_rejected: bool) -> dict[str, set[str]]:
    import duckdb
    out_dir = Path(out_dir)
    db = out_dir / "catalog.duckdb"
    if not db.exists():
        raise LoaderError(f"{db}: no catalog (build it with `tandem catalog build {out_dir}`)")
    status = "" if include_rejected else " AND e.status = 'accepted'"
    q = (f"SELECT e.shard, e.example_id FROM examples e WHERE e.example_id IN "
         f"(SELECT q.example_id FROM ({sql.rstrip().rstrip(';')}) AS q){status}")
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(q).fetchall()
    except duckdb.Error as e:
        raise LoaderError(f"{db}: query {sql!r} failed (it must select example_id from examples): {e}") from None
    finally:
        con.close()
    sel: dict[str, set[str]] = {}
    for shard, eid in rows:
        sel.setdefault(str(out_dir / shard), set()).add(eid)
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
