"""JobWriter: buffers rows, writes Parquet into staging, commits them with one manifest each."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from tandem.pipelines.core.config import section
from tandem.pipelines.core.contracts import EXAMPLE_SCHEMA, rejection_row, stable_hash, to_table, utc_now
from tandem.pipelines.io.files import iter_rows, write_json_atomic, write_table_atomic
from tandem.pipelines.store.commit import (
    COMMITS,
    KINDS,
    STAGING,
    OutputError,
    committed_files,
    manifests,
    next_seq,
    recover,
    roll_forward,
)
from tandem.pipelines.store.lock import LockLost, OutputLock

from tandem import __version__


class JobWriter:
    """Buffers finished work items and commits them in atomic groups.

    A source is committed together with all its examples, rejected examples and rejections, so a
    crash loses whole items only and a rerun redoes exactly those (no gap, no duplicate). The
    writer holds the output's lock from construction to `close()`/`release()`; a second writer
    gets `LockHeld` naming the holder.
    """

    def __init__(self, out_dir: str | Path, cfg: dict, *, run_id: str, job: str,
                 config_hash: str | None = None, on_commit=None, dedup=None):
        self.out = Path(out_dir)
        self.cfg = cfg
        self.run_id = run_id
        self.job = job
        self.config_hash = config_hash
        self.on_commit = on_commit
        self.dedup = dedup
        sh = section(cfg, "shards")
        self.target_bytes = int(sh["target_bytes"])
        self.row_group_rows = int(sh["row_group_rows"])
        self.compression = sh["compression"]
        self.max_items = int(sh["max_items_per_commit"])
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".write-probe-{uuid.uuid4().hex[:6]}"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"output directory {self.out} is not writable: {e.strerror or e}") from None
        self.lock = OutputLock(self.out, run_id=run_id, job=job,
                               lease_s=float(sh["lock_lease_s"])).acquire()
        try:
            self.recovered = recover(self.out)
            self._seq = next_seq(manifests(self.out))
        except BaseException:
            self.lock.release()
            raise
        self._committed_keys, self._committed_sources = self._load_committed()
        self._reset()
        self.totals = {"items": 0, "examples": 0, "rejected_examples": 0, "rejections": 0,
                       "duplicates": 0, "commits": 0, "audio_s": 0.0, "retry": 0}
        self.retry: list[dict] = []  # items left uncommitted after transient failures

    # committed state -------------------------------------------------------------------------
    def _load_committed(self) -> tuple[set[str], set[str]]:
        keys, sources = set(), set()
        files = committed_files(self.out, "sources")
        for row in iter_rows(files, columns=["work_key", "source_id", "status"]):
            keys.add(row["work_key"])
            if row["source_id"]:
                sources.add(row["source_id"])
        return keys, sources

    def committed_work_keys(self) -> set[str]:
        return set(self._committed_keys)

    def is_committed(self, work_key: str) -> bool:
        return work_key in self._committed_keys

    # buffering -------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._buf = {k: [] for k in KINDS}
        self._buf_bytes = 0
        self._buf_items = 0
        self._retire: list[str] = []
        self._keys: list[str] = []

    def add(self, item: dict) -> None:
        """Take one finished work item (see docs/INTERFACES.md); commit when a shard is full."""
        if item.get("status") == "retry":
            # failed for a transient reason (out of memory, a model missing): nothing is committed,
            # so its work key stays open and the next run over this output retries it
            self.totals["retry"] = self.totals.get("retry", 0) + 1
            self.retry.append({"uri": item.get("uri"), **(item.get("retry") or {})})
            return
        src = dict(item.get("source") or {})
        sid = src.get("source_id") or item.get("source_id")
        examples = list(item.get("examples") or [])
        rejected = list(item.get("rejected_examples") or [])
        rejections = list(item.get("rejections") or [])
        status = "rejected" if item.get("status") == "rejected" else "accepted"
        if sid and sid in self._committed_sources:
            # the same audio under another name (or committed by an earlier run): keep one
            # its own verdicts repeat the first copy's: keep only the duplicate row
            rejections = [rejection_row(
                uri=item.get("uri", ""), source_id=sid, kind=item.get("kind"), stage="writer",
                filter="dedup_source", reason="duplicate_source",
                detail=f"{item.get('uri')}: same decoded audio as an already committed source {sid}",
                duration_s=float(item.get("duration_s") or 0.0), config_hash=self.config_hash,
                run_id=self.run_id)]
            rejected, examples, status = [], [], "duplicate"
            self.totals["duplicates"] += 1
        if self.dedup is not None and examples:
            kept = []
            for ex in examples:
                d = self.dedup.check_and_add(ex)
                if getattr(d, "keep", True):
                    kept.append(ex)
                else:
                    rejected.append(ex)
                    rejections.append(rejection_row(
                        uri=item.get("uri", ""), source_id=sid, example_id=ex["example_id"],
                        kind=ex.get("kind"), stage="dedup", filter=getattr(d, "filter", "dedup"),
                        reason=d.reason, detail=getattr(d, "detail", "") or "",
                        language=ex.get("language"), duration_s=ex.get("duration_s"),
                        metrics=getattr(d, "metrics", {}) or {}, config_hash=self.config_hash,
                        run_id=self.run_id))
            examples = kept
        if status == "accepted" and not examples and rejections:
            status = "rejected"
        for r in rejections:
            r["run_id"] = self.run_id
            r["config_hash"] = r.get("config_hash") or self.config_hash
        for e in examples + rejected:
            e["config_hash"] = e.get("config_hash") or self.config_hash
            e["pipeline_version"] = e.get("pipeline_version") or __version__
        src.update(
            source_id=sid, uri=src.get("uri") or item.get("uri"), kind=src.get("kind") or item.get("kind"),
            status=status, num_examples=len(examples), work_key=item["work_key"],
            config_hash=self.config_hash, run_id=self.run_id)
        for k in ("format", "orig_sample_rate", "orig_channels", "duration_s", "bytes"):
            if src.get(k) is None and item.get(k) is not None:
                src[k] = item[k]
        self._buf["shards"].extend(examples)
        self._buf["rejected"].extend(rejected)
        self._buf["rejections"].extend(rejections)
        self._buf["sources"].append(src)
        self._keys.append(item["work_key"])
        if sid:
            # accepted or rejected, this audio has been judged once; another name for it is a duplicate
            self._committed_sources.add(sid)
        self._buf_bytes += sum(len(e.get("audio") or b"") for e in examples + rejected)
        self._buf_items += 1
        self.totals["items"] += 1
        self.totals["examples"] += len(examples)
        self.totals["rejected_examples"] += len(rejected)
        self.totals["rejections"] += len(rejections)
        self.totals["audio_s"] += sum(float(e.get("duration_s") or 0) for e in examples)
        if self._buf_bytes >= self.target_bytes or self._buf_items >= self.max_items:
            self.commit()

    def add_rows(self, kind: str, rows: list[dict]) -> None:
        """Queue rows of `kind` for the next commit without a source row (re-filtering)."""
        if kind not in KINDS:
            raise ValueError(f"unknown file kind {kind!r}; one of {sorted(KINDS)}")
        self._buf[kind].extend(rows)
        self._buf_bytes += sum(len(r.get("audio") or b"") for r in rows)

    def retire(self, paths: Iterable[str | Path]) -> None:
        """Hide committed files in the next commit (re-filtering replaces shards this way)."""
        for p in paths:
            rel = Path(p).resolve().relative_to(self.out.resolve()).as_posix()
            self._retire.append(rel)

    def commit(self) -> dict | None:
        if not any(self._buf.values()) and not self._retire:
            return None
        seq = self._seq
        commit_id = f"{seq:06d}-{stable_hash(self.run_id, seq, self._keys, n=10)}"
        stage = self.out / STAGING / commit_id
        files: dict[str, dict] = {}
        try:
            for kind, rows in self._buf.items():
                if not rows:
                    continue
                rel = f"{kind}/{self.run_id}-{commit_id}.parquet"
                table = to_table(rows, KINDS[kind])
                rg = self.row_group_rows if KINDS[kind] is EXAMPLE_SCHEMA else 4096
                files[rel] = write_table_atomic(table, stage / rel, row_group_rows=rg,
                                                compression=self.compression)
            manifest = {"commit_id": commit_id, "run_id": self.run_id, "job": self.job, "seq": seq,
                        "created_at": utc_now(), "files": files, "retired": list(self._retire),
                        "work_keys": list(self._keys), "pipeline_version": __version__}
            self.lock.check()  # a job whose lease was taken over must not commit beside the new holder
            write_json_atomic(manifest, self.out / COMMITS / f"{commit_id}.json")
        except LockLost:
            shutil.rmtree(stage, ignore_errors=True)  # our own staging; the output is the new holder's
            raise
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise OutputError(f"cannot write to {self.out}: {e.strerror or e} "
                              "(nothing of this commit was made visible)") from None
        roll_forward(self.out, manifest)  # this commit only; older ones were rolled forward on open
        self._committed_keys.update(self._keys)
        self._seq += 1
        self.totals["commits"] += 1
        self._reset()
        if self.dedup is not None and hasattr(self.dedup, "save"):
            self.dedup.save()
        if self.on_commit is not None:
            self.on_commit(manifest)
        return manifest

    def close(self) -> dict:
        try:
            self.commit()
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
