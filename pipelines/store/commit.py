"""The commit protocol of an output directory: manifests, live files, recovery.

Layout of an output directory OUT:
  shards/*.parquet      accepted examples (EXAMPLE_SCHEMA)
  rejected/*.parquet    examples a filter rejected, audio kept (EXAMPLE_SCHEMA)
  rejections/*.parquet  why anything was rejected (REJECTION_SCHEMA)
  sources/*.parquet     every input seen, accepted or not (SOURCE_SCHEMA)
  dedup/*.parquet       dedup signatures of the kept examples (filters.dedup.SIGNATURE_SCHEMA)
  dupes/*.parquet       signatures of the examples rejected as duplicates, with what they duplicate
  _commits/*.json       one manifest per commit: the commit point
  _staging/<part>/      files of a part (pipelines.store.part) not yet committed
  runs/<run_id>.json    one record per run
  _lock.json            the job writing this output (pipelines.store.lock)
  catalog.duckdb        the catalog (rebuildable from the above)

A commit writes its files into _staging (temp name, fsync, rename), then its manifest into
_commits (temp, fsync, rename: the commit point), then moves the files into place. Commits are
ordered by their sequence number, given under the output's lock (never by the clock). On open,
the lock holder rolls forward every manifest whose files are still staged and deletes staging
dirs that have no manifest, so the public folders only ever hold complete, committed files.
A file a later commit retires stays on disk (readers streaming it are not cut off) until
`tandem gc` deletes it after a grace period.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tandem.filters.dedup import SIGNATURE_SCHEMA
from tandem.pipelines.core.contracts import EXAMPLE_SCHEMA, REJECTION_SCHEMA, SOURCE_SCHEMA
from tandem.pipelines.io.files import iter_rows, sha256_file

KINDS = {"shards": EXAMPLE_SCHEMA, "rejected": EXAMPLE_SCHEMA, "rejections": REJECTION_SCHEMA,
         "sources": SOURCE_SCHEMA, "dedup": SIGNATURE_SCHEMA, "dupes": SIGNATURE_SCHEMA}
COMMITS = "_commits"
STAGING = "_staging"



class OutputError(OSError):
    """The output directory cannot be written (permissions, full disk); nothing was made visible."""


# ---- reading the committed state ---------------------------------------------------------------

def manifests(out_dir: str | Path) -> list[dict]:
    d = Path(out_dir) / COMMITS
    if not d.exists():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        with open(p) as f:
            out.append(json.load(f))
    out.sort(key=lambda m: (int(m["seq"]), m["commit_id"]))
    return out


def committed_files(out_dir: str | Path, kind: str) -> list[Path]:
    """Committed, not retired files of `kind` (shards, rejected, rejections, sources), in commit order."""
    if kind not in KINDS:
        raise ValueError(f"unknown file kind {kind!r}; one of {sorted(KINDS)}")
    out_dir = Path(out_dir)
    live: dict[str, None] = {}
    for m in manifests(out_dir):
        for rel in m["files"]:
            if rel.split("/", 1)[0] == kind:
                live[rel] = None
        for rel in m.get("retired", []):
            live.pop(rel, None)
    return [out_dir / rel for rel in live]


def file_records(out_dir: str | Path) -> list[dict]:
    """One record per live file: kind, path, rows, bytes, sha256, commit_id, run_id."""
    recs: dict[str, dict] = {}
    for m in manifests(out_dir):
        for rel, meta in m["files"].items():
            recs[rel] = {"kind": rel.split("/", 1)[0], "path": rel, "commit_id": m["commit_id"],
                         "run_id": m["run_id"], **meta}
        for rel in m.get("retired", []):
            recs.pop(rel, None)
    return list(recs.values())


def iter_examples(out_dir: str | Path, columns: list[str] | None = None, kind: str = "shards") -> Iterator[dict]:
    return iter_rows(committed_files(out_dir, kind), columns)


def verify(out_dir: str | Path) -> list[str]:
    """Checksums of every live file against its manifest; returns the list of problems."""
    problems = []
    for rec in file_records(out_dir):
        p = Path(out_dir) / rec["path"]
        if not p.exists():
            problems.append(f"{rec['path']}: missing")
        elif sha256_file(p) != rec["sha256"]:
            problems.append(f"{rec['path']}: checksum mismatch")
    return problems


def _parts(m: dict) -> list[str]:
    return list(m.get("parts") or [m["commit_id"]])


def roll_forward(out_dir: Path, m: dict) -> int:
    """Move one committed manifest's staged files into place (retired files stay for `gc`)."""
    rolled = 0
    for rel, meta in m["files"].items():
        src, dst = out_dir / STAGING / (meta.get("part") or m["commit_id"]) / rel, out_dir / rel
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            rolled += 1
    for pid in _parts(m):
        shutil.rmtree(out_dir / STAGING / pid, ignore_errors=True)
    return rolled


def next_seq(ms: list[dict]) -> int:
    return max((int(m["seq"]) for m in ms), default=-1) + 1


def recover(out_dir: str | Path) -> dict:
    """Roll committed-but-unmoved files forward; drop staging left by a crashed, uncommitted commit.
    Only the holder of the output's lock may call this (another job's staging is not a leftover)."""
    out_dir = Path(out_dir)
    rolled, dropped = 0, 0
    committed_ids = set()
    for m in manifests(out_dir):
        committed_ids.update(_parts(m))
        rolled += roll_forward(out_dir, m)
    staging = out_dir / STAGING
    if staging.exists():
        for d in staging.iterdir():
            if d.name not in committed_ids:
                shutil.rmtree(d, ignore_errors=True)
                dropped += 1
    return {"rolled_forward": rolled, "dropped_uncommitted": dropped}


def _epoch(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp).timestamp()


def collect_garbage(out_dir: str | Path, grace_s: float, *, dry_run: bool = False,
                    now: float | None = None) -> dict:
    """Delete files retired by commits older than `grace_s` seconds (a trainer that listed them
    before has that long to finish reading); returns what was (or would be) deleted."""
    import time
    out_dir = Path(out_dir)
    now = time.time() if now is None else now
    ms = manifests(out_dir)
    live = {r["path"] for r in file_records(out_dir)}
    deleted, kept, freed = [], 0, 0
    for m in ms:
        old_enough = now - _epoch(m["created_at"]) >= grace_s
        for rel in m.get("retired", []):
            p = out_dir / rel
            if rel in live or not p.exists():
                continue
            if not old_enough:
                kept += 1
                continue
            freed += p.stat().st_size
            deleted.append(rel)
            if not dry_run:
                p.unlink(missing_ok=True)
    return {"deleted": deleted, "bytes": freed, "waiting": kept, "dry_run": dry_run}
