"""The commit protocol of an output directory: manifests, live files, recovery.

Layout of an output directory OUT:
  shards/*.parquet      accepted examples (EXAMPLE_SCHEMA)
  rejected/*.parquet    examples a filter rejected, audio kept (EXAMPLE_SCHEMA)
  rejections/*.parquet  why anything was rejected (REJECTION_SCHEMA)
  sources/*.parquet     every input seen, accepted or not (SOURCE_SCHEMA)
  dedup/*.parquet       dedup signatures of the kept examples (contracts.SIGNATURE_SCHEMA)
  dupes/*.parquet       signatures of the examples rejected as duplicates, with what they duplicate
  rttm/<source_id>.rttm each diarized source's speaker turns (text; committed like the rest)
  _commits/*.json       one manifest per commit: the commit point
  _retired/<commit>/    files a commit retired (same relative paths), until `tandem gc`
  _staging/<part>/      files of a part (pipelines.store.part) not yet committed
  runs/<run_id>.json    one record per run
  _lock.json            the job writing this output (pipelines.store.lock)
  catalog.duckdb        the catalog (rebuildable from the above)

A commit writes its files into _staging (temp name, fsync, rename), then its manifest into
_commits (temp, fsync, rename: the commit point), then moves the files into place. Commits are
ordered by their sequence number, given under the output's lock (never by the clock). On open,
the lock holder rolls forward every manifest whose files are still staged and deletes staging
dirs that have no manifest, so the public folders only ever hold complete, committed files.
A file a later commit retires leaves the public folders in that commit's roll-forward, into
_retired/<commit id>/ (so a glob of shards/*.parquet is exactly the current rows; a reader that
has the file open keeps reading it on POSIX) and stays there until `tandem gc` deletes it after a
grace period. Retired files move out before the new files move in: a glob taken during a
roll-forward may miss rows for a moment, never see a row twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipelines.core.contracts import EXAMPLE_SCHEMA, REJECTION_SCHEMA, SIGNATURE_SCHEMA, SOURCE_SCHEMA
from pipelines.io.files import iter_rows, sha256_file

KINDS = {"shards": EXAMPLE_SCHEMA, "rejected": EXAMPLE_SCHEMA, "rejections": REJECTION_SCHEMA,
         "sources": SOURCE_SCHEMA, "dedup": SIGNATURE_SCHEMA, "dupes": SIGNATURE_SCHEMA}
TEXT_KINDS = ("rttm",)  # committed, checksummed and retired like the Parquet kinds; not read as tables
COMMITS = "_commits"
STAGING = "_staging"
RETIRED = "_retired"


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
    if kind not in KINDS and kind not in TEXT_KINDS:
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


def retired_path(out_dir: str | Path, commit_id: str, rel: str) -> Path:
    """Where file `rel` lives once commit `commit_id` has retired it (until `gc`)."""
    return Path(out_dir) / RETIRED / commit_id / rel


def retired_file(out_dir: str | Path, commit_id: str, rel: str) -> Path | None:
    """The retired file on disk: under _retired/, or still in its folder when the retiring
    commit is not rolled forward yet (or the output predates _retired/); None after `gc`."""
    for p in (retired_path(out_dir, commit_id, rel), Path(out_dir) / rel):
        if p.exists():
            return p
    return None


def locate(out_dir: str | Path, rel: str) -> Path | None:
    """Where a committed file is now (live or retired), for a reader that listed it earlier."""
    for m in reversed(manifests(out_dir)):
        if rel in m.get("retired", []):
            return retired_file(out_dir, m["commit_id"], rel)
    p = Path(out_dir) / rel
    return p if p.exists() else None


def roll_forward(out_dir: Path, m: dict, live: set[str] | None = None) -> int:
    """Move one committed manifest's retired files out of the public folders, then its staged
    files into place; idempotent (recovery runs it again after a crash). `live`: paths that
    are live in the committed state, never moved out (a defence: paths are never reused)."""
    rolled = 0
    for rel in m.get("retired", []):
        src = out_dir / rel
        if (live is not None and rel in live) or not src.exists():
            continue
        dst = retired_path(out_dir, m["commit_id"], rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except FileNotFoundError:  # `gc` deleted it meanwhile (an output from before _retired/)
            pass
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
    live = {r["path"] for r in file_records(out_dir)}
    for m in manifests(out_dir):
        committed_ids.update(_parts(m))
        rolled += roll_forward(out_dir, m, live)
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
    before has that long to finish reading); returns what was (or would be) deleted (paths
    relative to OUT as the manifests name them)."""
    import time
    out_dir = Path(out_dir)
    now = time.time() if now is None else now
    ms = manifests(out_dir)
    live = {r["path"] for r in file_records(out_dir)}
    deleted, kept, freed = [], 0, 0
    for m in ms:
        old_enough = now - _epoch(m["created_at"]) >= grace_s
        for rel in m.get("retired", []):
            if rel in live:
                continue
            p = retired_file(out_dir, m["commit_id"], rel)
            if p is None:
                continue
            if not old_enough:
                kept += 1
                continue
            freed += p.stat().st_size
            deleted.append(rel)
            if not dry_run:
                p.unlink(missing_ok=True)
        if old_enough and not dry_run:
            _prune(out_dir / RETIRED / m["commit_id"])
    return {"deleted": deleted, "bytes": freed, "waiting": kept, "dry_run": dry_run}


def _prune(d: Path) -> None:
    """Remove the empty folders left under a commit's _retired/ folder."""
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        d.rmdir()
