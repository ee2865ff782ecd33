"""Settling: after judging (pipelines.store.index), each cluster of duplicates keeps its canonical
example (the smallest example id), and each source found under several names its canonical name
(the smallest uri), whatever order the parts arrived in.

One commit, under the writer's lock, moves the canonical example from rejected/ to shards/ (its
dedup rejection removed, its signature moved from `dupes` to `dedup`), the provisional keeper the
other way (with a rejection naming the canonical one), and rewrites the affected sources' status
and example count. Only the files holding affected rows are rewritten: every kind of each part
stem that holds one (so an example's rows keep sharing one stem), found by the stem the index
recorded, or, for rows a re-filtering moved elsewhere, by scanning the id column of the live
files. The old files are retired, never deleted (`tandem gc` deletes them later). A crash before
the commit leaves the provisional keepers, and the next run's settle finds the same plan again
from the committed `dupes` rows.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from pipelines.core.contracts import rejection_row, stable_hash
from pipelines.store.commit import KINDS, committed_files

EXAMPLES = ("shards", "rejected")
SIGS = ("dedup", "dupes")


def _holding(live: dict[str, dict[str, Path]], kinds: tuple[str, ...], col: str, keys: set[str],
             stems: set[str]) -> None:
    """Add to `stems` the stems of the live files of `kinds` holding `keys` in column `col`:
    the known stems are read first, the other files only for keys still missing."""
    left = set(keys)
    for first in (True, False):
        for kind in kinds:
            for stem, path in live[kind].items():
                if not left:
                    return
                if (stem in stems) != first:
                    continue
                vals = set(pq.read_table(path, columns=[col]).column(col).to_pylist())
                if vals & left:
                    stems.add(stem)
                    left -= vals


def _read(live: dict[str, dict[str, Path]], kind: str, stems: set[str]) -> tuple[list[dict], list[Path]]:
    paths = [p for s, p in live[kind].items() if s in stems]
    rows = [r for p in paths for r in pq.read_table(p).to_pylist()]
    return rows, paths


def settle(writer) -> dict:
    """Make every cluster keep its canonical example; returns {"settled": examples moved}."""
    index = writer.index
    plan = index.settle_plan() if writer.spec.dedup is not None else []
    splan = index.source_plan()
    if not plan and not splan:
        return {"settled": 0}
    writer.commit()  # whatever is pending goes first: the plan's rows must be committed
    out = writer.out
    live = {kind: {p.stem: p for p in committed_files(out, kind)} for kind in KINDS}
    up = {p["example_id"] for p in plan if p["to"] == "shards"}
    down = {p["example_id"]: p for p in plan if p["to"] == "rejected"}
    ids = up | set(down)
    stems = {s for p in plan + splan for s in p["stems"]}
    sids = {p["source_id"] for p in splan}
    _holding(live, ("sources",), "source_id", sids, stems)
    _holding(live, ("rejections",), "source_id", sids, stems)
    _holding(live, EXAMPLES, "example_id", ids, stems)
    _holding(live, SIGS, "example_id", ids, stems)
    _holding(live, ("rejections",), "example_id", up, stems)
    ex_rows, retire = [], []
    for kind in EXAMPLES:
        rows, paths = _read(live, kind, stems)
        ex_rows += [(kind, r) for r in rows]
        retire += paths
    found = {r["example_id"] for _, r in ex_rows} & ids
    if found != ids:
        raise RuntimeError(f"{out}: settling dedup clusters, examples {sorted(ids - found)[:5]} are in no "
                           "committed shards/ or rejected/ file")
    delta: dict[str, int] = {}
    moved_rows: dict[str, dict] = {}
    new: dict[str, list[dict]] = {k: [] for k in KINDS}
    for kind, r in ex_rows:
        eid = r["example_id"]
        to = "shards" if eid in up else "rejected" if eid in down else kind
        if to != kind:
            sid = (r.get("source_ids") or [None])[0]
            delta[sid] = delta.get(sid, 0) + (1 if to == "shards" else -1)
            moved_rows[eid] = r
        new[to].append(r)
    _holding(live, ("sources",), "source_id", set(delta), stems)
    for kind in SIGS:
        rows, paths = _read(live, kind, stems)
        retire += paths
        for r in rows:
            eid = r["example_id"]
            if eid in down:
                r["duplicate_of"] = sorted({*(r.get("duplicate_of") or []), down[eid]["keeper"]})
                new["dupes"].append(r)
            else:
                new["dedup" if eid in up else kind].append(r)
    src_rows, paths = _read(live, "sources", stems)
    retire += paths
    uri_of = {}
    for r in src_rows:
        uri_of[r["source_id"]] = r["uri"]
        if r["source_id"] in delta and r["status"] in ("accepted", "rejected"):
            r["num_examples"] = int(r["num_examples"] or 0) + delta[r["source_id"]]
            r["status"] = "accepted" if r["num_examples"] > 0 else "rejected"
        new["sources"].append(r)
    rej_rows, paths = _read(live, "rejections", stems)
    retire += paths
    for p in splan:
        _swap_source(p, src_rows, rej_rows)
    new["rejections"] = [r for r in rej_rows if not (r["example_id"] in up and r["stage"] == "dedup")]
    for eid, p in down.items():
        ex = moved_rows[eid]
        sid = (ex.get("source_ids") or [None])[0]
        new["rejections"].append(dedup_rejection(ex, p, uri_of.get(sid) or sid or "", writer.config_hash,
                                                 writer.run_id))
    for kind, rows in new.items():
        writer.add_rows(kind, rows)
    writer.retire(retire)
    manifest = writer.commit()
    index.settled(plan, sorted(stems), f"{writer.run_id}-{manifest['commit_id']}-r", splan)
    return {"settled": len(plan) + len(splan), "files_rewritten": len(retire)}


def dedup_rejection(ex: dict, d: dict, uri: str, config_hash: str | None, run_id: str) -> dict:
    """The rejection row of example row `ex` rejected as a duplicate by `d` (a verdict of the
    index: filter, reason, detail, metrics)."""
    return rejection_row(
        uri=uri, source_id=(ex.get("source_ids") or [None])[0], example_id=ex["example_id"], kind=ex.get("kind"),
        stage="dedup", filter=d["filter"] or "dedup", reason=d["reason"], detail=d["detail"],
        language=ex.get("language"), duration_s=ex.get("duration_s"), metrics=d["metrics"],
        config_hash=config_hash, run_id=run_id)


def _swap_source(p: dict, src_rows: list[dict], rej_rows: list[dict]) -> None:
    """The canonical name takes the source (its status and examples), the holder becomes the
    duplicate. The examples are the same (the source id is the hash of the decoded audio, and
    example rows name no file), so only source and rejection rows change."""
    sid, (kwk, kuri), (hwk, huri) = p["source_id"], p["keeper"], p["holder"]
    rows = {r["work_key"]: r for r in src_rows if r["source_id"] == sid}
    if kwk not in rows or hwk not in rows:
        raise RuntimeError(f"settling source {sid}: rows of {kuri} or {huri} are in no committed sources/ file")
    k, h = rows[kwk], rows[hwk]
    k["status"], k["num_examples"], h["status"], h["num_examples"] = h["status"], h["num_examples"], "duplicate", 0
    for r in rej_rows:
        if r["source_id"] != sid:
            continue
        if r["reason"] == "duplicate_source" and r["uri"] == kuri:
            r["uri"] = huri
            r["detail"] = (f"{huri}: same decoded audio as source {sid}, kept under {kuri} "
                           "(keeper: the smallest uri)")
        elif r["uri"] == huri:
            r["uri"] = kuri
        else:
            continue
        r["rejection_id"] = stable_hash("rej", r["uri"], sid, r["example_id"], r["stage"], r["filter"], r["reason"])
