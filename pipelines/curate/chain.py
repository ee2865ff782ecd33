"""The curation job's inputs, work items and stage chain (what `tandem curate` runs)."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tandem.pipelines.core.contracts import stable_hash, work_key
from tandem.pipelines.core.stage import Stage
from tandem.pipelines.io.audio import AUDIO_EXTENSIONS


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


def make_items(inputs: Iterable[str], cfg: dict, cfg_hash: str, out_dir: str) -> Iterator[dict]:
    """One work item per input; the work key uses size and mtime so it costs no decoding."""
    base_seed = int(cfg.get("seed", 0))
    for uri in inputs:
        try:
            st = os.stat(uri)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # ingest rejects it with the reason
        seed = int(stable_hash("seed", base_seed, uri), 16) % (2 ** 63)
        yield {
            "uri": uri, "kind": "real", "work_key": work_key(f"{uri}|{size}|{mtime}", cfg_hash),
            "seed": seed, "status": "ok", "rejections": [], "out_dir": str(out_dir), "cfg_hash": cfg_hash,
        }


def curation_stages(cfg: dict) -> list[Stage]:
    """ingest -> vad -> diarize -> transcribe -> assemble."""
    from tandem.pipelines.curate.assemble import AssembleStage
    from tandem.pipelines.curate.diarize import DiarizeStage
    from tandem.pipelines.curate.ingest import IngestStage
    from tandem.pipelines.curate.transcribe import TranscribeStage
    from tandem.pipelines.curate.vad import VadStage
    return [s.from_config(cfg) for s in (IngestStage, VadStage, DiarizeStage, TranscribeStage, AssembleStage)]


def cleanup(item: dict) -> None:
    """Remove an item's work file (items rejected after ingest keep one otherwise)."""
    if item.get("work_path"):
        Path(item["work_path"]).unlink(missing_ok=True)


def run_local(inputs: Iterable[str], cfg: dict, cfg_hash: str, out_dir: str) -> Iterator[dict]:
    """The chain in-process without Ray (tests, debugging); rejected items' work files removed."""
    stages = curation_stages(cfg)
    keep = bool((cfg.get("examples") or {}).get("keep_work", False))
    for item in make_items(inputs, cfg, cfg_hash, out_dir):
        for st in stages:
            item = st(item)
        if item.get("status") == "rejected" and not keep:
            cleanup(item)
        yield item
