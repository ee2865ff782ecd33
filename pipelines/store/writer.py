"""JobWriter: holds the output's lock and commits parts (pipelines.store.part), one manifest each.

Work items become parts where they finish: a Ray worker writes its part into staging and hands
over the part's small manifest (`add_part`), or the writer writes one in-process from items it
is given (`add`) and from rows queued by re-filtering (`add_rows`). A commit gathers parts into
one manifest (the commit point), then moves their files into place. `settle()` (at the end of a
run, and in `close()`) makes each cluster of duplicates keep its canonical example
(pipelines.store.settle).
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from filters.dedup import DedupParams
from pipelines.core.config import section, typed_section
from pipelines.core.contracts import stable_hash, utc_now
from pipelines.io.files import write_json_atomic
from pipelines.store.commit import (
    COMMITS,
    KINDS,
    STAGING,
    OutputError,
    manifests,
    next_seq,
    recover,
    roll_forward,
)
from pipelines.store.index import CommitIndex
from pipelines.store.lock import LockLost, OutputLock
from pipelines.store.part import PartSpec, write_part, write_rows
from pipelines.store.settle import settle

from tandem import __version__



@dataclasses.dataclass(frozen=True)
class ShardParams:
    """The `shards` section (meanings in pipelines/core/defaults/00_core.yaml)."""

    target_bytes: int
    row_group_rows: int
    compression: str
    max_items_per_commit: int
    lock_lease_s: float


COUNTS = ("items", "examples", "rejected_examples", "rejections", "duplicates", "audio_s", "retry")


class JobWriter:
    """Commits finished work in atomic groups.

    A source is committed together with all its examples, rejected examples and rejections, so a
    crash loses whole items only and a rerun redoes exactly those (no gap, no duplicate). The
    writer holds the output's lock from construction to `close()`/`release()`; a second writer
    gets `LockHeld` naming the holder. `dedup` (DedupParams; None: off) turns on exact and
    near-duplicate matching; `from_config` builds both from a job's config. `index` is the run's
    `CommitIndex`, or `index_factory(dedup params)` makes it (an actor's proxy under Ray); by
    default the writer loads one in-process.
    """

    def __init__(self, out_dir: str | Path, shards: ShardParams, *, run_id: str, job: str,
                 config_hash: str | None = None, on_commit=None, dedup: DedupParams | None = None,
                 keep_work: bool = False, index=None, index_factory=None):
        self.out = Path(out_dir)
        self.run_id = run_id
        self.job = job
        self.config_hash = config_hash
        self.on_commit = on_commit
        self.target_bytes = int(shards.target_bytes)
        self.max_items = int(shards.max_items_per_commit)
        self.spec = PartSpec(out=str(self.out), run_id=run_id, config_hash=config_hash,
                             row_group_rows=int(shards.row_group_rows), compression=shards.compression,
                             dedup=dedup, keep_work=bool(keep_work))
        if self.spec.dedup is not None and self.spec.dedup.near_audio:
            from filters.fingerprint import check_available
            check_available()  # a missing FFmpeg fails the job at start, never every example
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".write-probe-{uuid.uuid4().hex[:6]}"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"output directory {self.out} is not writable: {e.strerror or e}") from None
        self.lock = OutputLock(self.out, run_id=run_id, job=job, lease_s=float(shards.lock_lease_s)).acquire()
        try:
            self.recovered = recover(self.out)
            self._seq = next_seq(manifests(self.out))
            if index is None:  # loaded under the lock: the committed state cannot change under it
                index = (index_factory or (lambda d: CommitIndex(self.out, d)))(self.spec.dedup)
            self.index = index
        except BaseException:
            self.lock.release()
            raise
        self._reset()
        self.totals = {k: 0 for k in COUNTS} | {"audio_s": 0.0, "commits": 0, "parts": 0, "settled": 0}
        self.retry: list[dict] = []  # items left uncommitted after transient failures

    @classmethod
    def from_config(cls, out_dir: str | Path, cfg: dict, *, dedup=None, **kw) -> JobWriter:
        """The writer a job assembles from its config: `shards`, `examples.keep_work`, and with
        `dedup` (anything but None) the `filters.dedup` settings unless DedupParams are given."""
        d = dedup if isinstance(dedup, DedupParams) else DedupParams.from_config(cfg) if dedup is not None else None
        return cls(out_dir, typed_section(ShardParams, cfg, "shards"), dedup=d,
                   keep_work=bool(section(cfg, "examples")["keep_work"]), **kw)

    # committed state -------------------------------------------------------------------------
    def committed_work_keys(self) -> set[str]:
        return self.index.committed_work_keys()

    def is_committed(self, work_key: str) -> bool:
        return self.index.is_committed(work_key)

    # buffering -------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._items: list[dict] = []  # finished items for this process's own part
        self._parts: list[dict] = []  # parts written elsewhere, waiting for the commit
        self._rows = {k: [] for k in KINDS}  # rows without a work item (re-filtering)
        self._retire: list[str] = []
        self._pending_items = 0
        self._pending_bytes = 0

    def _full(self) -> bool:
        return self._pending_bytes >= self.target_bytes or self._pending_items >= self.max_items

    def add(self, item: dict) -> None:
        """Take one finished work item (see docs/INTERFACES.md); commit when a shard is full."""
        self._items.append(item)
        self._pending_items += 1
        self._pending_bytes += sum(len(e.get("audio") or b"")
                                   for e in (item.get("examples") or []) + (item.get("rejected_examples") or []))
        if self._full():
            self.commit()

    def add_part(self, part: dict) -> bool:
        """Take a part a worker wrote; False (and its staging removed) when its work items were
        already delivered by another part (a task run twice)."""
        if not self.index.take(part["work_keys"], part["part_id"]):
            shutil.rmtree(self.out / STAGING / part["part_id"], ignore_errors=True)
            return False
        self._count(part)
        self._parts.append(part)
        self._pending_items += len(part["stats"])
        self._pending_bytes += int(part["counts"].get("audio_bytes", 0))
        if self._full():
            self.commit()
        return True

    def _count(self, part: dict) -> None:
        for k in COUNTS:
            self.totals[k] += part["counts"].get(k, 0)
        self.totals["parts"] += 1
        self.retry.extend(part.get("retry") or [])

    def add_rows(self, kind: str, rows: list[dict]) -> None:
        """Queue rows of `kind` for the next commit without a source row (re-filtering)."""
        if kind not in KINDS:
            raise ValueError(f"unknown file kind {kind!r}; one of {sorted(KINDS)}")
        self._rows[kind].extend(rows)

    def retire(self, paths: Iterable[str | Path]) -> None:
        """Hide committed files in the next commit (re-filtering replaces shards this way)."""
        for p in paths:
            rel = Path(p).resolve().relative_to(self.out.resolve()).as_posix()
            self._retire.append(rel)

    def commit(self) -> dict | None:
        if not (self._items or self._parts or any(self._rows.values()) or self._retire):
            return None
        seq = self._seq
        parts = list(self._parts)
        keys = [k for p in parts for k in p["work_keys"]] + [it["work_key"] for it in self._items
                                                              if it.get("status") != "retry"]
        commit_id = f"{seq:06d}-{stable_hash(self.run_id, seq, keys, n=10)}"
        try:
            if self._items:  # this process's own part is named after the commit
                own = write_part(self._items, self.spec, self.index, part_id=commit_id)
                self._count(own)
                parts.append(own)
            if any(self._rows.values()):
                parts.append({"part_id": commit_id + "-r", "work_keys": [],
                              "files": write_rows(self._rows, self.spec, commit_id + "-r")})
            files = {rel: meta for p in parts for rel, meta in p["files"].items()}
            manifest = {"commit_id": commit_id, "run_id": self.run_id, "job": self.job, "seq": seq,
                        "created_at": utc_now(), "files": files, "retired": list(self._retire),
                        "parts": [p["part_id"] for p in parts], "work_keys": keys,
                        "pipeline_version": __version__}
            self.lock.check()  # a job whose lease was taken over must not commit beside the new holder
            write_json_atomic(manifest, self.out / COMMITS / f"{commit_id}.json")
        except LockLost:
            self._drop(parts, commit_id)  # our own staging; the output is the new holder's
            raise
        except OSError as e:
            self._drop(parts, commit_id)
            err = OutputError(f"cannot write to {self.out}: {e.strerror or e} "
                              "(nothing of this commit was made visible)")
            err.errno, err.filename = e.errno, e.filename  # a full disk stays recognisable (exit 3)
            raise err from None
        roll_forward(self.out, manifest)  # this commit only; older ones were rolled forward on open
        self.index.committed(keys)
        self._seq += 1
        self.totals["commits"] += 1
        self._reset()
        if self.on_commit is not None:
            self.on_commit(manifest)
        return manifest

    def _drop(self, parts: list[dict], commit_id: str) -> None:
        for pid in {p["part_id"] for p in parts} | {commit_id, commit_id + "-r"}:
            shutil.rmtree(self.out / STAGING / pid, ignore_errors=True)

    def settle(self) -> dict:
        """Swap every duplicate cluster's keeper to its canonical example in one commit (what is
        pending is committed first when there is anything to swap); returns {"settled": examples moved, ...}."""
        res = settle(self)
        self.totals["settled"] += res["settled"]
        return res

    def drop_unclaimed(self) -> int:
        """Once the run's last commit is in and its workers are done: drop staging that no commit
        names, a part whose worker died after writing it (its items were redone in another part),
        so a finished run leaves no staging behind. Lock holder only, as `recover` at the start."""
        return recover(self.out)["dropped_uncommitted"]

    def close(self) -> dict:
        try:
            self.commit()
            self.settle()
            self.drop_unclaimed()
        finally:
            self.release()
        return dict(self.totals)

    def release(self) -> None:
        """Give the output's lock back (idempotent)."""
        self.lock.release()


def write_run_record(out_dir: str | Path, record: dict) -> Path:
    p = Path(out_dir) / "runs" / f"{record['run_id']}.json"
    write_json_atomic(record, p)
    return p
