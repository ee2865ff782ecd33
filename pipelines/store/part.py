"""A part: the files of a group of finished work items, written where the items are (a Ray worker,
or the driver's own process), into OUT/_staging/<part id>/. What goes back to the committer is a
small manifest of the part (file names, rows, bytes, checksums, work keys, counts), never audio.

Dedup happens here, next to the audio: each example's signature (PCM hash, transcript MinHash) is
computed in this process and judged by the run's `CommitIndex`; the examples it keeps are written
to the shards, the others to `rejected` with a dedup rejection, the kept signatures to the
part's `dedup` file and the rejected ones (with the ids they duplicate) to its `dupes` file, so
the next run's index loads the whole duplicate graph back. All kinds of a part share one file
stem, `<run id>-<part id>`, which is how settling (pipelines.store.settle) finds an example's rows.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.dedup import DedupParams, signature
from pipelines.core.contracts import EXAMPLE_SCHEMA, SIGNATURE_SCHEMA, rejection_row, to_table
from pipelines.core.ids import checked_id
from pipelines.io.files import sha256_file, write_table_atomic
from pipelines.io.rttm import write_rttm
from pipelines.store.commit import KINDS, STAGING
from tandem import __version__


@dataclass(frozen=True)
class PartSpec:
    """How a run writes its parts (picklable: it travels to the workers)."""

    out: str
    run_id: str
    config_hash: str | None
    row_group_rows: int
    compression: str
    dedup: DedupParams | None
    keep_work: bool = False


def new_part_id() -> str:
    return "p" + uuid.uuid4().hex[:16]


def write_rows(rows: dict[str, list[dict]], spec: PartSpec, part_id: str) -> dict[str, dict]:
    """Write each kind's rows as one Parquet file of the part; returns {final path: meta}."""
    files = {}
    stage = Path(spec.out) / STAGING / part_id
    for kind, kind_rows in rows.items():
        if not kind_rows:
            continue
        rel = f"{kind}/{spec.run_id}-{part_id}.parquet"
        schema = KINDS[kind]
        rg = spec.row_group_rows if schema is EXAMPLE_SCHEMA else 4096
        meta = write_table_atomic(to_table(kind_rows, schema), stage / rel, row_group_rows=rg,
                                  compression=spec.compression)
        files[rel] = {**meta, "part": part_id}
    return files


def _stats(item: dict) -> dict:
    """What the driver's per-stage table needs of an item."""
    return {"status": item.get("status"), "timings": item.get("timings") or {},
            "rejections": [{"stage": r.get("stage")} for r in item.get("rejections") or []]}


def write_part(items: list[dict], spec: PartSpec, index: Any, part_id: str | None = None) -> dict:
    """Judge and write `items`; returns the part's manifest (see module doc)."""
    part_id = part_id or new_part_id()
    counts = {"items": 0, "examples": 0, "rejected_examples": 0, "rejections": 0, "duplicates": 0,
              "audio_s": 0.0, "audio_bytes": 0, "retry": 0}
    retry, stats, done = [], [], []
    for item in items:
        stats.append(_stats(item))
        if item.get("status") == "retry":
            # failed for a transient reason (out of memory, a model missing): nothing is committed,
            # so its work key stays open and the next run over this output retries it
            counts["retry"] += 1
            retry.append({"uri": item.get("uri"), **(item.get("retry") or {})})
            continue
        done.append(item)
    entries = [{"work_key": it["work_key"], "stem": f"{spec.run_id}-{part_id}", "uri": it.get("uri"),
                "source_id": (it.get("source") or {}).get("source_id") or it.get("source_id"),
                "sigs": [signature(ex, spec.dedup) if spec.dedup is not None else None
                         for ex in it.get("examples") or []]} for it in done]
    verdicts = index.judge(entries) if entries else []
    rows: dict[str, list[dict]] = {k: [] for k in KINDS}
    for item, entry, verdict in zip(done, entries, verdicts, strict=True):
        _item_rows(item, entry, verdict, spec, rows, counts)
    for item in items:
        if item.get("work_path") and not spec.keep_work:
            # a rejected item still has its decoded work file; its life ends here
            Path(item["work_path"]).unlink(missing_ok=True)
    files = write_rows(rows, spec, part_id)
    files.update(_write_turns(done, entries, verdicts, spec, part_id))
    return {"part_id": part_id, "files": files, "work_keys": [it["work_key"] for it in done],
            "counts": counts, "retry": retry, "stats": stats, "pid": os.getpid()}


def _write_turns(items: list[dict], entries: list[dict], verdicts: list[dict], spec: PartSpec,
                 part_id: str) -> dict[str, dict]:
    """Each diarized source's speaker turns as rttm/<source_id>.rttm, staged and committed with the
    part (a worker never writes a public file); a duplicate source adds none."""
    files = {}
    stage = Path(spec.out) / STAGING / part_id
    for item, entry, verdict in zip(items, entries, verdicts, strict=True):
        turns = item.get("turns")
        # the items the diarize stage ran on (synthesis scripts also name a `turns` key)
        diarized = "diarize" in (item.get("timings") or {})
        if not diarized or turns is None or verdict["duplicate_of"] is not None or not entry["source_id"]:
            continue
        rel = f"rttm/{checked_id(entry['source_id'], 'source_id')}.rttm"
        path = write_rttm(stage / rel, entry["source_id"], turns)
        files[rel] = {"rows": len(turns), "bytes": path.stat().st_size, "sha256": sha256_file(path),
                      "part": part_id}
    return files


def _item_rows(item: dict, entry: dict, verdict: dict, spec: PartSpec, rows: dict, counts: dict) -> None:
    src = dict(item.get("source") or {})
    sid = entry["source_id"]
    examples = list(item.get("examples") or [])
    rejected = list(item.get("rejected_examples") or [])
    rejections = list(item.get("rejections") or [])
    status = "rejected" if item.get("status") == "rejected" else "accepted"
    sigs, dupes = [], []
    if verdict["duplicate_of"] is not None:
        # the same audio under another name (or committed by an earlier run): keep one; its own
        # verdicts repeat the first copy's, so only the duplicate row is kept
        rejections = [rejection_row(
            uri=item.get("uri", ""), source_id=sid, kind=item.get("kind"), stage="writer",
            filter="dedup_source", reason="duplicate_source",
            detail=f"{item.get('uri')}: same decoded audio as an already committed source {sid}",
            duration_s=float(item.get("duration_s") or 0.0), config_hash=spec.config_hash, run_id=spec.run_id)]
        rejected, examples, status = [], [], "duplicate"
        counts["duplicates"] += 1
    else:
        kept = []
        for ex, sig, d in zip(examples, entry["sigs"], verdict["decisions"], strict=True):
            if d is None:
                kept.append(ex)
                if sig is not None:
                    sigs.append({**sig, "source_id": sid})
                continue
            rejected.append(ex)
            if sig is not None:
                dupes.append({**sig, "source_id": sid, "duplicate_of": d.get("duplicate_of")})
            rejections.append(rejection_row(
                uri=item.get("uri", ""), source_id=sid, example_id=ex["example_id"], kind=ex.get("kind"),
                stage="dedup", filter=d["filter"] or "dedup", reason=d["reason"], detail=d["detail"],
                language=ex.get("language"), duration_s=ex.get("duration_s"), metrics=d["metrics"],
                config_hash=spec.config_hash, run_id=spec.run_id))
        examples = kept
    if status == "accepted" and not examples and rejections:
        status = "rejected"
    for r in rejections:
        r["run_id"] = spec.run_id
        r["config_hash"] = r.get("config_hash") or spec.config_hash
    for e in examples + rejected:
        e["config_hash"] = e.get("config_hash") or spec.config_hash
        e["pipeline_version"] = e.get("pipeline_version") or __version__
    src.update(source_id=sid, uri=src.get("uri") or item.get("uri"), kind=src.get("kind") or item.get("kind"),
               status=status, num_examples=len(examples), work_key=item["work_key"],
               config_hash=spec.config_hash, run_id=spec.run_id)
    for k in ("uri_given", "format", "orig_sample_rate", "orig_channels", "duration_s", "bytes"):
        if src.get(k) is None and item.get(k) is not None:
            src[k] = item[k]
    rows["shards"].extend(examples)
    rows["rejected"].extend(rejected)
    rows["rejections"].extend(rejections)
    rows["sources"].append(src)
    rows["dedup"].extend(sigs)
    rows["dupes"].extend(dupes)
    counts["items"] += 1
    counts["examples"] += len(examples)
    counts["rejected_examples"] += len(rejected)
    counts["rejections"] += len(rejections)
    counts["audio_s"] += sum(float(e.get("duration_s") or 0) for e in examples)
    counts["audio_bytes"] += sum(len(e.get("audio") or b"") for e in examples + rejected)


__all__ = ["SIGNATURE_SCHEMA", "PartSpec", "new_part_id", "write_part", "write_rows"]
