"""The inputs of a job: a directory, a glob, one file, or a manifest of URIs (JSONL or Parquet).

`list_inputs(spec)` yields them one by one in this process (local runs, tests). `InputListing`
wraps a spec and an item factory: iterated, it is the same; on Ray (`to_dataset`) the listing is
read in blocks by the workers (a directory walked, a manifest streamed, by one listing task), and
the item factory runs per block there too, so the driver never holds the input list. A manifest
is checked on the driver first, streamed: a bad line is an error naming the manifest and the
line, before anything runs. Every uri is a resolved absolute path, so one input named two ways
is one work item (claimed once) and a rerun from another directory finds the same work keys; each
is an `Input`, a str that also keeps the name the user gave (`given`), stored as `uri_given`.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pipelines.io.audio import AUDIO_EXTENSIONS

# URIs per block out of a listing task: small, so the item factory and the stages start early
LIST_BATCH = 256


class Input(str):
    """An input's uri (resolved, absolute) that also keeps `given`, the name the user gave: the
    manifest's entry as written, or the path as the directory or glob was typed. A str, so item
    factories that take paths take these unchanged."""

    def __new__(cls, uri: str, given: str | None = None):
        self = super().__new__(cls, uri)
        self.given = uri if given is None else given
        return self

    def __reduce__(self):
        return (Input, (str(self), self.given))


def given_of(uri: str) -> str:
    """The name the user gave for `uri` (itself when it is a plain str)."""
    return getattr(uri, "given", str(uri))


def list_inputs(spec: str, cwd: str | None = None) -> Iterator[Input]:
    """Audio files named by `spec`: a directory (recursive, by audio extension, sorted), a glob,
    a single file, or a manifest (.jsonl with a `uri` per line, .parquet with a `uri` column).
    Each is resolved to an absolute path: a relative spec against `cwd` (default: this process's;
    a listing task on a Ray worker gets the driver's), a manifest's entries against its folder."""
    base = Path(cwd) if cwd else Path.cwd()
    p = base / spec  # an absolute spec stays itself
    if p.is_dir():
        for root, dirs, files in os.walk(p):
            dirs.sort()
            under = Path(spec) / os.path.relpath(root, p)  # as typed ("." parts dropped)
            for name in sorted(files):
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                    yield Input(_resolve(os.path.join(root, name), base), str(under / name))
        return
    if p.is_file() and p.suffix.lower() in (".jsonl", ".parquet"):
        yield from manifest_inputs(p)
        return
    if p.is_file():
        yield Input(_resolve(spec, base), spec)
        return
    if glob.has_magic(spec):
        hits = sorted(glob.iglob(spec, root_dir=base, recursive=True))
        if not hits:
            raise FileNotFoundError(f"input {spec!r}: the pattern matches no file")
        yield from (Input(_resolve(h, base), h) for h in hits if (base / h).is_file())
        return
    raise FileNotFoundError(f"input {spec!r}: no such file, directory or manifest")


def _resolve(uri: str, base: Path) -> str:
    """`uri` as a resolved absolute path (relative to `base`), so `a.wav`, `./a.wav`,
    `sub/../a.wav` and a symlink to it name one input, claimed once."""
    if "://" in uri:
        return uri  # not a local path: ingest rejects it as missing
    try:
        return str((base / uri).resolve())
    except (OSError, RuntimeError):  # a symlink loop: kept as named, ingest rejects it
        return os.path.abspath(base / uri)


def manifest_inputs(p: Path) -> Iterator[Input]:
    """The manifest's inputs, resolved, each keeping its entry as written."""
    for _, uri, given in _manifest_entries(p):
        yield Input(uri, given)


def manifest_uris(p: Path) -> Iterator[tuple[int, str]]:
    """(line, resolved uri) of a .jsonl manifest, or (row, uri) of a .parquet one, streamed. A bad
    entry (not JSON, not an object, no `uri`, not a string, empty) is a ValueError naming the
    manifest and the line or row."""
    for i, uri, _ in _manifest_entries(p):
        yield i, uri


def _manifest_entries(p: Path) -> Iterator[tuple[int, str, str]]:
    """(line or row, resolved uri, uri as written), streamed."""
    base = p.parent
    if p.suffix.lower() == ".jsonl":
        with open(p, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"manifest {p}, line {i}: not JSON ({e.args[0] if e.args else e})") from None
                if not isinstance(obj, dict) or "uri" not in obj:
                    raise ValueError(f"manifest {p}, line {i}: expected a JSON object with a 'uri' field")
                yield i, _checked_uri(obj["uri"], base, f"manifest {p}, line {i}"), obj["uri"]
        return
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(p)
    if "uri" not in pf.schema_arrow.names:
        raise ValueError(f"manifest {p}: no 'uri' column (columns: {pf.schema_arrow.names})")
    row = 0
    for batch in pf.iter_batches(columns=["uri"], batch_size=4096):
        for uri in batch.column(0).to_pylist():
            row += 1
            yield row, _checked_uri(uri, base, f"manifest {p}, row {row}"), uri


def _checked_uri(uri: object, base: Path, where: str) -> str:
    if not isinstance(uri, str):
        raise ValueError(f"{where}: 'uri' must be a string, got {type(uri).__name__} {uri!r:.60}")  # noqa: TRY004
    if not uri.strip():
        raise ValueError(f"{where}: 'uri' is empty")
    if "\0" in uri:
        raise ValueError(f"{where}: 'uri' holds a NUL character")
    return _resolve(uri, base)


def _check_spec(spec: str, validate: bool = True) -> str:
    """What kind of input `spec` names; a missing one fails on the driver, before Ray starts, and
    so does a manifest with a bad line (`validate`: read through once, streamed)."""
    p = Path(spec)
    if p.is_dir():
        return "dir"
    if p.is_file():
        kind = {".jsonl": "jsonl", ".parquet": "parquet"}.get(p.suffix.lower(), "file")
        if validate and kind != "file":
            for _ in manifest_uris(p):
                pass
        return kind
    if glob.has_magic(spec):
        if next(glob.iglob(spec, recursive=True), None) is None:
            raise FileNotFoundError(f"input {spec!r}: the pattern matches no file")
        return "glob"
    raise FileNotFoundError(f"input {spec!r}: no such file, directory or manifest")


def _walk(batch: dict, spec: str, kind: str, cwd: str | None = None) -> Iterator[dict]:
    """A listing task: yields the spec's files LIST_BATCH at a time (generator: streams)."""
    import numpy as np
    it = list_inputs(spec, cwd)
    chunk: list[Input] = []

    def block() -> dict:
        return {"uri": np.array([str(u) for u in chunk], dtype=object),
                "given": np.array([u.given for u in chunk], dtype=object)}
    for uri in it:
        chunk.append(uri)
        if len(chunk) >= LIST_BATCH:
            yield block()
            chunk = []
    if chunk:
        yield block()


def small_blocks(ds, rows: int):
    """`ds` in blocks of at most `rows` rows (Ray Data merges small outputs into big blocks; a
    retry or a stall then costs a whole big block)."""
    ds = ds.repartition(target_num_rows_per_block=max(1, rows))
    # the repartition task asks 1 CPU by default, which a cluster full of stage actors never
    # frees (Ray Data then stalls); it only moves item descriptions, a sliver of a CPU is enough
    op = getattr(getattr(ds, "_logical_plan", None), "dag", None)
    if op is not None and hasattr(op, "ray_remote_args") and not op.ray_remote_args:
        object.__setattr__(op, "ray_remote_args", {"num_cpus": 0.01})
    return ds


def uri_dataset(spec: str):
    """A Ray dataset of {uri, given} rows, read in blocks by the workers."""
    import ray
    kind = _check_spec(spec, validate=False)  # InputListing validated it on the driver
    light = {"num_cpus": 0.01, "batch_format": "numpy"}
    if kind == "file":
        return ray.data.from_items([{"uri": str(u), "given": u.given} for u in list_inputs(spec)])
    # one listing task streams the walk or the manifest (checked line by line, uris resolved):
    # Ray's own readers would skip that validation and fail with tracebacks naming no line
    ds = ray.data.from_items([{"spec": spec}])
    # the driver's directory: a relative spec names files there, wherever the worker runs
    return small_blocks(ds.map_batches(_walk, fn_kwargs={"spec": spec, "kind": kind, "cwd": os.getcwd()},
                                       batch_size=None,
                                       **light), LIST_BATCH)


def _items_block(batch: dict, make_items: Callable[[Iterable[str]], Iterator[dict]]) -> dict:
    import pickle

    import numpy as np
    items = list(make_items([Input(str(u), str(g)) for u, g in zip(batch["uri"], batch["given"], strict=True)]))
    return {"work_key": np.array([it["work_key"] for it in items], dtype=object),
            "payload": np.array([pickle.dumps(it, protocol=5) for it in items], dtype=object)}


class InputListing:
    """`make_items(uris) -> items` over the inputs named by `spec`, locally or as a Ray dataset."""

    def __init__(self, spec: str, make_items: Callable[[Iterable[str]], Iterator[dict]]):
        _check_spec(spec)
        self.spec = spec
        self.make_items = make_items

    def __iter__(self) -> Iterator[dict]:
        return iter(self.make_items(list_inputs(self.spec)))

    def to_dataset(self):
        return uri_dataset(self.spec).map_batches(_items_block, fn_kwargs={"make_items": self.make_items},
                                                  batch_size=LIST_BATCH, num_cpus=0.01, batch_format="numpy")
