"""The inputs of a job: a directory, a glob, one file, or a manifest of URIs (JSONL or Parquet).

`list_inputs(spec)` yields them one by one in this process (local runs, tests). `InputListing`
wraps a spec and an item factory: iterated, it is the same; on Ray (`to_dataset`) the listing is
read by Ray Data itself, in blocks, by the workers (a directory walked by a task, manifests with
`read_json`/`read_parquet`), and the item factory runs per block there too, so the driver never
holds the input list.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tandem.pipelines.io.audio import AUDIO_EXTENSIONS

# URIs per block out of a listing task: small, so the item factory and the stages start early
LIST_BATCH = 256


def list_inputs(spec: str) -> Iterator[str]:
    """Audio files named by `spec`: a directory (recursive, by audio extension, sorted), a glob,
    a single file, or a manifest (.jsonl with a `uri` per line, .parquet with a `uri` column).
    Manifest uris are resolved relative to the manifest's folder."""
    p = Path(spec)
    if p.is_dir():
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for name in sorted(files):
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                    yield str(Path(root) / name)
        return
    if p.is_file() and p.suffix.lower() == ".jsonl":
        with open(p) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    uri = json.loads(line)["uri"]
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"manifest {p}, line {i}: expected a JSON object with a 'uri' field") from None
                yield _resolve(uri, p.parent)
        return
    if p.is_file() and p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(p)
        if "uri" not in pf.schema_arrow.names:
            raise ValueError(f"manifest {p}: no 'uri' column (columns: {pf.schema_arrow.names})")
        for batch in pf.iter_batches(columns=["uri"], batch_size=4096):
            for uri in batch.column(0).to_pylist():
                if uri:
                    yield _resolve(uri, p.parent)
        return
    if p.is_file():
        yield str(p)
        return
    if glob.has_magic(spec):
        hits = sorted(glob.iglob(spec, recursive=True))
        if not hits:
            raise FileNotFoundError(f"input {spec!r}: the pattern matches no file")
        yield from (h for h in hits if Path(h).is_file())
        return
    raise FileNotFoundError(f"input {spec!r}: no such file, directory or manifest")


def _resolve(uri: str, base: Path) -> str:
    if "://" in uri or os.path.isabs(uri):
        return uri
    return str(base / uri)


def _check_spec(spec: str) -> str:
    """What kind of input `spec` names; a missing one fails on the driver, before Ray starts."""
    p = Path(spec)
    if p.is_dir():
        return "dir"
    if p.is_file():
        return {".jsonl": "jsonl", ".parquet": "parquet"}.get(p.suffix.lower(), "file")
    if glob.has_magic(spec):
        if next(glob.iglob(spec, recursive=True), None) is None:
            raise FileNotFoundError(f"input {spec!r}: the pattern matches no file")
        return "glob"
    raise FileNotFoundError(f"input {spec!r}: no such file, directory or manifest")


def _walk(batch: dict, spec: str, kind: str) -> Iterator[dict]:
    """A listing task: yields the spec's files LIST_BATCH at a time (generator: streams)."""
    import numpy as np
    it = list_inputs(spec) if kind in ("dir", "glob") else iter(())
    chunk: list[str] = []
    for uri in it:
        chunk.append(uri)
        if len(chunk) >= LIST_BATCH:
            yield {"uri": np.array(chunk, dtype=object)}
            chunk = []
    if chunk:
        yield {"uri": np.array(chunk, dtype=object)}


def _resolve_block(batch: dict, base: str, spec: str) -> dict:
    import numpy as np
    if "uri" not in batch:
        raise ValueError(f"manifest {spec}: no 'uri' column or field (has: {sorted(batch)})")
    out = []
    for u in batch["uri"]:
        if u is None or not isinstance(u, str):
            raise ValueError(f"manifest {spec}: a row without a 'uri' string ({u!r})")
        if u:
            out.append(_resolve(u, Path(base)))
    return {"uri": np.array(out, dtype=object)}


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
    """A Ray dataset of {uri} rows, read in blocks by the workers."""
    import ray
    kind = _check_spec(spec)
    light = {"num_cpus": 0.01, "batch_format": "numpy"}
    # read tasks ask 1 CPU by default, which a node full of stage actors never frees (a stall)
    read = {"ray_remote_args": {"num_cpus": 0.01}}
    if kind == "parquet":
        ds = ray.data.read_parquet(spec, columns=["uri"], **read)
    elif kind == "jsonl":
        ds = ray.data.read_json(spec, lines=True, **read)
    elif kind == "file":
        return ray.data.from_items([{"uri": str(Path(spec))}])
    else:
        ds = ray.data.from_items([{"spec": spec}])  # no read task: the walk below is the only one
        return small_blocks(ds.map_batches(_walk, fn_kwargs={"spec": spec, "kind": kind}, batch_size=None,
                                           **light), LIST_BATCH)
    return small_blocks(ds.map_batches(_resolve_block, fn_kwargs={"base": str(Path(spec).parent), "spec": spec},
                                       batch_size=LIST_BATCH, **light), LIST_BATCH)


def _items_block(batch: dict, make_items: Callable[[Iterable[str]], Iterator[dict]]) -> dict:
    import pickle

    import numpy as np
    items = list(make_items([str(u) for u in batch["uri"]]))
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
