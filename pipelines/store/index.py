"""What a job must know of the committed output, kept off the driver: committed work keys (resume),
source ids (the same audio under another name), dedup signatures, and which work this run has
claimed and taken.

Under Ray it runs as one actor beside the driver (`ray_jobs.execute`); in-process otherwise. It
loads once per run from the committed `sources` and `dedup` files, and every call after that
costs in proportion to the rows it is given, never to the history.
"""

from __future__ import annotations

from pathlib import Path

from tandem.filters.dedup import DedupParams, SignatureIndex
from tandem.pipelines.io.files import iter_rows
from tandem.pipelines.store.commit import committed_files


class CommitIndex:
    def __init__(self, out_dir: str | Path, dedup: DedupParams | None = None):
        self.out = str(out_dir)
        self.keys: set[str] = set()
        self.sources: dict[str, str] = {}  # source id -> the work key that judged it first
        self.sigs = SignatureIndex(dedup) if dedup is not None else None
        self.claimed: dict[str, str] = {}  # work key -> claimant (a block of this run)
        self.taken: dict[str, str] = {}  # work key -> part id whose results the driver took
        self.counts = {"skipped": 0, "repeated": 0}
        for row in iter_rows(committed_files(out_dir, "sources"), columns=["work_key", "source_id"]):
            self.keys.add(row["work_key"])
            if row["source_id"]:
                self.sources.setdefault(row["source_id"], row["work_key"])
        if self.sigs is not None:
            for row in iter_rows(committed_files(out_dir, "dedup")):
                self.sigs.add(row["example_id"], row["audio_hash"], row["minhash"])

    def ping(self) -> int:
        return len(self.keys)

    def is_committed(self, key: str) -> bool:
        return key in self.keys

    def committed_work_keys(self) -> set[str]:
        return set(self.keys)

    def claim(self, keys: list[str], claimant: str) -> list[bool]:
        """Which of `keys` this block should process: not committed, not claimed by another block
        (a listing that names one input twice); a retried block (same claimant) gets its own again."""
        out = []
        mine: set[str] = set()
        for k in keys:
            ok = k not in self.keys and k not in mine and self.claimed.get(k, claimant) == claimant
            if ok:
                self.claimed[k] = claimant
                mine.add(k)
            else:
                self.counts["skipped"] += 1
            out.append(ok)
        return out

    def judge(self, entries: list[dict]) -> list[dict]:
        """Per finished item {work_key, source_id, sigs}: is its source already judged under another
        work key, and which of its examples duplicate kept ones (the kept ones join the index)."""
        out = []
        for e in entries:
            sid, wk = e.get("source_id"), e["work_key"]
            if sid and self.sources.setdefault(sid, wk) != wk:
                out.append({"duplicate_of": self.sources[sid], "decisions": []})
                continue
            decisions = []
            for sig in e.get("sigs") or []:
                if self.sigs is None or sig is None:
                    decisions.append(None)
                    continue
                d = self.sigs.check_and_add(sig)
                decisions.append(None if d.keep else {"filter": d.filter, "reason": d.reason, "detail": d.detail,
                                                      "metrics": dict(d.metrics or {})})
            out.append({"duplicate_of": None, "decisions": decisions})
        return out

    def take(self, keys: list[str], part_id: str) -> bool:
        """The driver takes a part's results unless another part already delivered these work
        items (a task Ray ran twice); then the part is dropped."""
        if any(self.taken.get(k, part_id) != part_id or k in self.keys for k in keys):
            self.counts["repeated"] += 1
            return False
        for k in keys:
            self.taken[k] = part_id
        return True

    def committed(self, keys: list[str]) -> None:
        self.keys.update(keys)
        for k in keys:
            self.taken.pop(k, None)
            self.claimed.pop(k, None)

    def stats(self) -> dict:
        return {**self.counts, "committed_keys": len(self.keys), "sources": len(self.sources),
                "signatures": 0 if self.sigs is None else len(self.sigs)}
