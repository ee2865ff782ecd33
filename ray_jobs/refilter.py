"""Re-filter committed shards with new thresholds, from stored metrics, without models.

Two passes over the committed example files (shards/ and rejected/), row group by row group:
1. every example's filters are re-decided; the signature of each one that passes (its audio hash
   as stored in dedup/ or dupes/, else from its audio; its transcript's MinHash under the current
   settings) is judged by the run's `CommitIndex`, which starts with an empty duplicate graph, in
   example-id order: the graph holds exactly the examples that pass, and what the index records
   (edges, provisional rejections) does not depend on the order the files are in;
2. each file's rows are written anew in one commit that also retires the old file (so at every
   commit point each example is visible exactly once), with its examples' signature rows; the
   first commit retires the old signature files (a crash leaves signatures missing, never stale).
A last commit replaces the rejection and source rows, then settling (pipelines.store.settle)
gives each cluster of duplicates its canonical keeper (the smallest example id), as at the end of
a curate run. Rejections made outside the filter and dedup stages stick (with dedup off, dedup's
stick too). Memory: one file's rows, the rejection rows (metadata only), the stored audio hashes
and the index's signatures.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from filters.base import first_rejection, rejection_for
from filters.dedup import signature
from filters.stage import build_filters, decide_example
from pipelines.io.files import iter_rows
from pipelines.store.commit import committed_files
from pipelines.store.settle import dedup_rejection


def refilter(out_dir: str | Path, cfg: dict, run_id: str | None = None, log=print,
             argv: list[str] | None = None) -> dict:
    """Re-decide every committed example under `cfg`; returns counts (moved, kept, rejected, by reason)."""
    from pipelines.core.config import config_hash
    from pipelines.core.contracts import utc_now
    from pipelines.store.index import CommitIndex
    from pipelines.store.writer import JobWriter
    from ray_jobs.jobs import dedup_index
    from ray_jobs.runner import _write_record, new_run_id, start_record

    out = Path(out_dir)
    if not (out / "_commits").is_dir():
        raise FileNotFoundError(f"{out}: no committed shards to re-filter (run curate or synth first)")
    chash = config_hash(cfg)
    run_id = run_id or new_run_id()
    # the lock first: what is committed cannot change under us from here on; the index starts
    # with an empty duplicate graph, rebuilt from the examples that pass (see module doc)
    writer = JobWriter.from_config(out, cfg, run_id=run_id, job="filter", config_hash=chash, dedup=dedup_index(out, cfg),
                       index_factory=lambda d: CommitIndex(out, d, signatures=False))
    # the run's record, written under the lock like every job's (the next `tandem filter` starts
    # from its config)
    record = start_record(run_id, "filter", cfg, argv)
    try:
        _write_record(out, record)
        try:
            counts = _refilter_held(out, build_filters(cfg), writer, chash, run_id, log)
        except BaseException:
            record.update(status="failed", finished_at=utc_now())
            _write_record(out, record)
            raise
        record.update(status="finished", finished_at=utc_now())
        _write_record(out, record)
    finally:
        writer.release()
    try:
        from catalogs.catalog import build
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


def _judge(out: Path, old_ex: list[tuple[str, Path]], sticky: dict, filters, index) -> dict[str, dict]:
    """Pass 1: judge the signature of every example the filters keep, in example-id order;
    returns the provisional dedup rejections by example id."""
    p = index.sigs.p
    # example id -> its committed audio hash and fingerprint (saves decoding its audio); all
    # columns: signature files written before fingerprints existed have none
    stored: dict[str, dict] = {}
    if p.exact_audio or p.near_audio:
        for r in iter_rows(committed_files(out, "dedup") + committed_files(out, "dupes")):
            if (not p.exact_audio or r["audio_hash"] is not None) and (
                    not p.near_audio or r.get("fingerprint") is not None):
                stored[r["example_id"]] = r
    sigs = []
    for _, path in old_ex:
        pf = pq.ParquetFile(str(path))
        cols = [c for c in pf.schema_arrow.names if c != "audio"]
        for rg in range(pf.num_row_groups):
            rows = pf.read_row_group(rg, columns=cols).to_pylist()
            audio = None
            for i, row in enumerate(rows):
                eid = row["example_id"]
                if eid in sticky or first_rejection(decide_example(row, filters)) is not None:
                    continue
                sig = signature(row, p)  # no audio column: the transcript's MinHash only
                if p.exact_audio or p.near_audio:
                    if eid in stored:
                        sig["audio_hash"] = stored[eid]["audio_hash"] if p.exact_audio else None
                        sig["fingerprint"] = stored[eid].get("fingerprint") if p.near_audio else None
                    else:
                        if audio is None:
                            audio = pf.read_row_group(rg, columns=["audio"]).column("audio").to_pylist()
                        sig = signature({**row, "audio": audio[i]}, p)
                if sig["minhash"] is not None:
                    sig["minhash"] = np.asarray(sig["minhash"], dtype=np.uint32)
                sigs.append(sig)
    stored.clear()
    sigs.sort(key=lambda s: s["example_id"])
    return {s["example_id"]: v for s, v in zip(sigs, index.judge_signatures(sigs), strict=True) if v is not None}


def _refilter_held(out: Path, filters, writer, chash: str, run_id: str, log) -> dict:
    old_ex = [("shards", p) for p in committed_files(out, "shards")] + \
             [("rejected", p) for p in committed_files(out, "rejected")]
    old_rej = committed_files(out, "rejections")
    if not old_ex:
        raise FileNotFoundError(f"{out}: no committed shards to re-filter (run curate or synth first)")
    dedup = writer.spec.dedup is not None
    index = writer.index
    uri_of_source = {r["source_id"]: r["uri"] for r in
                     iter_rows(committed_files(out, "sources"), columns=["source_id", "uri"])}
    redecided = ("filter", "dedup") if dedup else ("filter",)
    sticky: dict[str, list[dict]] = {}  # example id -> rejections not re-decided here
    other_rej: list[dict] = []  # whole-source rejections and the like: carried over unchanged
    for r in iter_rows(old_rej):
        if r["example_id"] and r["stage"] not in redecided:
            sticky.setdefault(r["example_id"], []).append(r)
        elif not r["example_id"]:
            other_rej.append(r)
    verdicts = _judge(out, old_ex, sticky, filters, index) if dedup else {}
    if dedup:  # with the first commit: each file's commit carries its examples' signatures
        writer.retire(committed_files(out, "dedup") + committed_files(out, "dupes"))
    counts: Counter = Counter()
    accepted_of: Counter = Counter()  # source id -> examples it has in shards after re-filtering
    touched: set[str] = set()
    origin: dict[str, str] = {}  # example id -> where it was, for the examples with duplicates
    new_rej: list[dict] = list(other_rej)
    for kind, path in old_ex:
        kept, rejected, sigs, dupes, judged = [], [], [], [], []
        pf = pq.ParquetFile(str(path))
        for rg in range(pf.num_row_groups):
            for row in pf.read_row_group(rg).to_pylist():
                eid = row["example_id"]
                if eid in sticky:
                    rejected.append(row)
                    new_rej.extend(sticky[eid])
                    counts["sticky"] += 1
                    continue
                decisions = decide_example(row, filters)
                d = first_rejection(decisions)
                sid = (row.get("source_ids") or [None])[0]
                uri = uri_of_source.get(sid, sid or "")
                touched.add(sid)
                if d is None and dedup:
                    if eid not in index.where:
                        raise RuntimeError(f"{path}: example {eid} passes the filters but was not judged for "
                                           "dedup (its file changed during re-filtering?)")
                    judged.append(eid)
                    if eid in index.parent:
                        origin[eid] = kind
                    sig = {**index.signature_row(eid), "source_id": sid}
                    if eid in verdicts:
                        v = verdicts[eid]
                        rejected.append(row)
                        dupes.append(sig)
                        counts[f"rejected_{v['reason']}"] += 1
                        counts["moved_to_rejected"] += kind == "shards"
                        new_rej.append(dedup_rejection(row, v, uri, chash, run_id))
                        continue
                    sigs.append(sig)
                if d is None:
                    accepted_of[sid] += 1
                    kept.append(row)
                    counts["kept"] += 1
                    counts["moved_to_shards"] += kind == "rejected"
                else:
                    rejected.append(row)
                    counts[f"rejected_{d.reason}"] += 1
                    counts["moved_to_rejected"] += kind == "shards"
                    new_rej.append(rejection_for(row, d, uri=uri, also=decisions, config_hash=chash, run_id=run_id))
        for k, rows in (("shards", kept), ("rejected", rejected), ("dedup", sigs), ("dupes", dupes)):
            writer.add_rows(k, rows)
        writer.retire([path])
        manifest = writer.commit()
        if judged:  # every kind of a commit shares one file stem (settling finds rows by it)
            index.located(judged, Path(next(iter(manifest["files"]))).stem)
        log(f"{path.name}: {len(kept)} kept, {len(rejected)} rejected")
    writer.add_rows("rejections", new_rej)
    writer.retire(old_rej)
    # sources whose examples moved get their status and count rewritten in the same commit
    old_src = committed_files(out, "sources")
    new_src = []
    for r in iter_rows(old_src):
        if r["source_id"] in touched and r["status"] in ("accepted", "rejected"):
            r["num_examples"] = accepted_of[r["source_id"]]
            r["status"] = "accepted" if r["num_examples"] else "rejected"
        new_src.append(r)
    writer.add_rows("sources", new_src)
    writer.retire(old_src)
    writer.commit()
    counts["rejections"] = len(new_rej)
    if dedup:
        _count_settled(counts, index.settle_plan(), origin, verdicts)
    counts["settled"] = writer.settle()["settled"]
    return dict(counts)


def _count_settled(counts: Counter, plan: list[dict], origin: dict[str, str], verdicts: dict[str, dict]) -> None:
    """The counts after settling moves `plan`'s examples (each cluster keeps its smallest id)."""
    for p in plan:
        eid = p["example_id"]
        up = 1 if p["to"] == "shards" else -1
        reason = verdicts[eid]["reason"] if up > 0 else p["reason"]
        counts[f"rejected_{reason}"] -= up
        counts["kept"] += up
        counts["rejections"] -= up
        if origin[eid] == "shards":  # it was counted as moved to rejected when provisionally rejected
            counts["moved_to_rejected"] -= up
        else:
            counts["moved_to_shards"] += up
