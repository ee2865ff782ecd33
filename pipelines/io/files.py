"""Small files and Parquet tables written whole or not at all (temp name, fsync, rename)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_table_atomic(table: pa.Table, path: Path, *, row_group_rows: int = 8,
                       compression: str = "zstd") -> dict:
    """Write `table` to `path` via a temp file, fsync, rename. Returns rows, bytes, sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        # audio is FLAC already: no dictionary, no second compression pass over it
        pq.write_table(table, tmp, row_group_size=max(1, row_group_rows),
                       compression={c: "none" if c == "audio" else compression for c in table.column_names},
                       use_dictionary=[c for c in table.column_names if c not in ("audio",)],
                       write_statistics=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"rows": table.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write a small file whole or not at all: temp name, fsync, rename; no temp left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_json_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def iter_rows(paths: Iterable[str | Path], columns: list[str] | None = None) -> Iterator[dict]:
    """Stream rows of Parquet files one row group at a time (bounded memory)."""
    for p in paths:
        pf = pq.ParquetFile(str(p))
        for rg in range(pf.num_row_groups):
            yield from pf.read_row_group(rg, columns=columns).to_pylist()
