"""Re-filter committed shards with new thresholds, from stored metrics, without models.

Each committed example file (shards/ and rejected/) is streamed row group by row group, every row
re-decided, and its rows written anew in one commit that also retires the old file, so at every
commit point each example is visible exactly once. Rejections made outside the filter stage
(dedup, writer) stick. A last commit replaces the rejection rows. Memory: one file's rows plus the
rejection rows (metadata only).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from tandem.filters.base import first_rejection, rejection_for
from tandem.filters.dedup import signature
from tandem.filters.stage import build_filters, decide_example


def _buffer(writer, kind: str, rows: list[dict]) -> None:
    """Queue rows for the writer's next commit without a source row."""
    writer.add_rows(kind, rows)


def refilter(out_dir: str | Path, cfg: dict, run_id: str | None = None, log=print) -> dict:
    """Re-decide every committed example under `cfg`; returns counts (moved, kept, rejected, by reason)."""
    from tandem.pipelines.core.config import config_hash
    from tandem.pipelines.core.contracts import stable_hash
    from tandem.pipelines.store.writer import JobWriter

    out = Path(out_dir)
    if not (out / "_commits").is_dir():
        raise FileNotFoundError(f"{out}: no committed shards to re-filter (run curate or synth first)")
    chash = config_hash(cfg)
    run_id = run_id or f"filter-{time.strftime('%Y%m%dT%H%M%S')}-{stable_hash(chash, time.time(), n=6)}"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # the lock first: what is committed cannot change under us from here on
    writer = JobWriter(out, cfg, run_id=run_id, job="filter", config_hash=chash)
    try:
        counts = _refilter_held(out, cfg, writer, chash, run_id, log)
    finally:
        writer.release()
    from tandem.pipelines.core.config import config_json
    from tandem.pipelines.store.writer import write_run_record
    # the next `tandem filter` starts from this config
    write_run_record(out, {"run_id": run_id, "job": "filter", "started_at": started, "status": "finished",
                           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "config_hash": chash, "config": config_json(cfg), "stages": "[]",
                           "argv": "[]", "versions": "{}", "pipeline_version": None})
    try:
        from tandem.catalogs.catalog import build
    except ImportError:
        log("catalogs.catalog not available: catalog not refreshed")
    else:
        try:
            build(out)
        except Exception as e:  # noqa: BLE001 - shards are committed; only the catalog is stale
            counts["catalog_error"] = 1
            log(f"{out}: shards re-filtered but the catalog refresh failed ({type(e).__name__}: {e}); "
                f"run `tandem catalog build {out}`")
    return counts


def _dedup_index(out: Path, cfg: dict):
    """The signatures of the kept examples, to re-check promoted ones (None when filters are off)."""
    if not (cfg.get("filters") or {}).get("enabled", True):
        return None, None, []
    from tandem.filters.dedup import DedupParams, SignatureIndex
    from tandem.pipelines.io.files import iter_rows
    from tandem.pipelines.store.commit import committed_files
    p = DedupParams.from_config(cfg)
    index = SignatureIndex(p)
    for r in iter_rows(committed_files(out, "dedup")):
        index.add(r["example_id"], r["audio_hash"], r["minhash"])
    return index, p, []


def _refilter_held(out: Path, cfg: dict, writer, chash: str, run_id: str, log) -> dict:
    from tandem.pipelines.io.files import iter_rows
    from tandem.pipelines.store.commit import committed_files
    old_ex = [("shards", p) for p in committed_files(out, "shards")] + \
             [("rejected", p) for p in committed_files(out, "rejected")]
    old_rej = committed_files(out, "rejections")
    if not old_ex:
        raise FileNotFoundError(f"{out}: no committed shards to re-filter (run curate or synth first)")
    uri_of_source = {r["source_id"]: r["uri"] for r in
                     iter_rows(committed_files(out, "sources"), columns=["source_id", "uri"])}
    sticky: dict[str, list[dict]] = {}  # example id -> rejections not made by the filter stage
    other_rej: list[dict] = []  # whole-source rejections and the like: carried over unchanged
    for r in iter_rows(old_rej):
        if r["example_id"] and r["stage"] != "filter":
            sticky.setdefault(r["example_id"], []).append(r)
        elif not r["example_id"]:
            other_rej.append(r)
    filters = build_filters(cfg)
    index, dedup_p, new_sigs = _dedup_index(out, cfg)
    counts: Counter = Counter()
    accepted_of: Counter = Counter()  # source id -> examples it has in shards after re-filtering
    touched: set[str] = set()
    new_rej: list[dict] = list(other_rej)
    for kind, path in old_ex:
        kept, rejected = [], []
        pf = pq.ParquetFile(str(path))
        for rg in range(pf.num_row_groups):
            for row in pf.read_row_group(rg).to_pylist():
                eid = row["example_id"]
                if eid in sticky:
                    rejected.append(row)
                    new_rej.extend(sticky[eid])
                    counts["sticky"] += 1
                    continue
                decisions = decide_example(row, cfg, filters)
                d = first_rejection(decisions)
                sid = (row.get("source_ids") or [None])[0]
                touched.add(sid)
                if d is None and kind == "rejected" and index is not None:
                    # a promoted example must not duplicate one the shards already hold
                    sig = signature(row, dedup_p)
                    d = index.check(sig)
                    if d.keep:
                        d = None
                        index.add(sig["example_id"], sig["audio_hash"], sig["minhash"])
                        new_sigs.append({**sig, "source_id": sid})
                    else:
                        rejected.append(row)
                        counts[f"rejected_{d.reason}"] += 1
                        new_rej.append(rejection_for(row, d, uri=uri_of_source.get(sid, sid or ""), stage="dedup",
                                                     config_hash=chash, run_id=run_id))
                        continue
                if d is None:
                    accepted_of[sid] += 1
                    kept.append(row)
                    counts["kept"] += 1
                    counts["moved_to_shards"] += kind == "rejected"
                else:
                    rejected.append(row)
                    counts[f"rejected_{d.reason}"] += 1
                    counts["moved_to_rejected"] += kind == "shards"
                    new_rej.append(rejection_for(row, d, uri=uri_of_source.get(sid, sid or ""), also=decisions,
                                                 config_hash=chash, run_id=run_id))
        _buffer(writer, "shards", kept)
        _buffer(writer, "rejected", rejected)
        writer.retire([path])
        writer.commit()
        log(f"{path.name}: {len(kept)} kept, {len(rejected)} rejected")
    _buffer(writer, "dedup", new_sigs)
    _buffer(writer, "rejections", new_rej)
    writer.retire(old_rej)
    # sources whose examples moved get their status and count rewritten in the same commit
    old_src = committed_files(out, "sources")
    new_src = []
    for r in iter_rows(old_src):
        if r["source_id"] in touched and r["status"] in ("accepted", "rejected"):
            r["num_examples"] = accepted_of[r["source_id"]]
            r["status"] = "accepted" if r["num_examples"] else "rejected"
        new_src.append(r)
    _buffer(writer, "sources", new_src)
    writer.retire(old_src)
    writer.commit()
    counts["rejections"] = len(new_rej)
    return dict(counts)
