"""What a loader consumed, as sets of (unit, row, chunk) per component epoch, and loader states.

A stream's position is not a count: after an elastic restart the work is re-dealt, so a count
would mean nothing to the new slots. Instead a state records the consumed set of each epoch
explicitly and compactly: units fully consumed (a bitmap), rows consumed inside partly consumed
units (a bitmap per unit) and, for chunked rows, how many chunks of a row were consumed. Sets
merge by union, so the states of every old slot together say exactly what remains.

A state also says which slot wrote it and which "generation" (the base set it started from):
the same layout continues each slot's own stream; another layout merges all of them and deals
what remains over the new slots.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pipelines.train.units import STATE_FORMAT, LoaderError


def _pack(bits: Iterable[int], n: int) -> str:
    a = np.zeros(n, dtype=bool)
    a[list(bits)] = True
    return base64.b64encode(np.packbits(a).tobytes()).decode()


def _unpack(s: str, n: int) -> set[int]:
    a = np.unpackbits(np.frombuffer(base64.b64decode(s), dtype=np.uint8))[:n]
    return set(np.flatnonzero(a).tolist())


class Progress:
    """The consumed part of one epoch of one dataset (units of `sizes[u]` rows)."""

    def __init__(self, sizes: Sequence[int]):
        self.sizes = sizes
        self.done: set[int] = set()
        self.rows: dict[int, set[int]] = {}
        self.chunks: dict[tuple[int, int], int] = {}

    def __bool__(self) -> bool:
        return bool(self.done or self.rows or self.chunks)

    def unit_done(self, u: int) -> bool:
        return u in self.done

    def row_done(self, u: int, r: int) -> bool:
        return u in self.done or r in self.rows.get(u, ())

    def chunk_start(self, u: int, r: int) -> int:
        return self.chunks.get((u, r), 0)

    def remaining_rows(self, u: int) -> list[int]:
        if u in self.done:
            return []
        got = self.rows.get(u, ())
        return [r for r in range(self.sizes[u]) if r not in got]

    def complete(self) -> bool:
        return len(self.done) == len(self.sizes)

    def consumed_rows(self) -> int:
        return sum(self.sizes[u] for u in self.done) + sum(len(v) for v in self.rows.values())

    def mark(self, u: int, r: int, chunks_done: int, row_finished: bool) -> None:
        """Record one delivered item: row r of unit u, `chunks_done` chunks of it so far."""
        if not row_finished:
            self.chunks[(u, r)] = chunks_done
            return
        self.chunks.pop((u, r), None)
        got = self.rows.setdefault(u, set())
        got.add(r)
        if len(got) >= self.sizes[u]:
            del self.rows[u]
            self.done.add(u)

    def mark_unit(self, u: int) -> None:
        """Unit u consumed entirely."""
        self.done.add(u)
        self.rows.pop(u, None)
        for key in [k for k in self.chunks if k[0] == u]:
            del self.chunks[key]

    def update(self, other: Progress) -> None:
        """Union with another consumed set of the same epoch."""
        for u in other.done:
            self.done.add(u)
            self.rows.pop(u, None)
        for u, rs in other.rows.items():
            if u not in self.done:
                for r in rs:
                    self.mark(u, r, 0, True)
        for (u, r), k in other.chunks.items():
            if not self.row_done(u, r):
                self.chunks[(u, r)] = max(k, self.chunks.get((u, r), 0))
        for key in [k for k in self.chunks if self.row_done(*k)]:
            del self.chunks[key]

    def copy(self) -> Progress:
        p = Progress(self.sizes)
        p.update(self)
        return p

    def encode(self) -> dict:
        return {"done": _pack(self.done, len(self.sizes)),
                "rows": {str(u): _pack(rs, self.sizes[u]) for u, rs in sorted(self.rows.items())},
                "chunks": {f"{u}:{r}": k for (u, r), k in sorted(self.chunks.items())}}

    @classmethod
    def decode(cls, d: dict, sizes: Sequence[int]) -> Progress:
        p = cls(sizes)
        try:
            p.done = _unpack(d["done"], len(sizes))
            p.rows = {int(u): _unpack(s, sizes[int(u)]) for u, s in d["rows"].items()}
            p.chunks = {tuple(int(x) for x in k.split(":")): int(v) for k, v in d["chunks"].items()}
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise LoaderError(f"loader state: unreadable progress ({e})") from None
        return p


class Book:
    """Progress of several components (a mixture; a plain dataset is component 0) across epochs.

    `floor[c]`: every epoch of component c below it is complete (so not stored)."""

    def __init__(self, sizes: Sequence[Sequence[int]]):
        self.sizes = sizes
        self.floor: dict[int, int] = {}
        self.epochs: dict[tuple[int, int], Progress] = {}

    def __bool__(self) -> bool:
        return bool(self.floor) or any(self.epochs.values())

    def get(self, c: int, e: int) -> Progress:
        p = self.epochs.get((c, e))
        if p is None:
            p = self.epochs[(c, e)] = Progress(self.sizes[c])
        return p

    def peek(self, c: int, e: int) -> Progress | None:
        """Progress of (c, e), or None when nothing of it is recorded (no entry is created)."""
        if e < self.floor.get(c, 0):
            full = Progress(self.sizes[c])
            full.done = set(range(len(self.sizes[c])))
            return full
        return self.epochs.get((c, e))

    def first_epoch(self, c: int) -> int:
        return self.floor.get(c, 0)

    def _compact(self) -> None:
        for (c, e) in sorted(self.epochs):
            p = self.epochs[(c, e)]
            if e < self.floor.get(c, 0):
                del self.epochs[(c, e)]
            elif e == self.floor.get(c, 0) and p.complete():
                del self.epochs[(c, e)]
                self.floor[c] = e + 1

    def update(self, other: Book) -> None:
        for c, f in other.floor.items():
            self.floor[c] = max(self.floor.get(c, 0), f)
        for (c, e), p in other.epochs.items():
            if e >= self.floor.get(c, 0):
                self.get(c, e).update(p)
        self._compact()

    def copy(self) -> Book:
        b = Book(self.sizes)
        b.update(self)
        return b

    def encode(self) -> dict:
        self._compact()
        return {"floor": {str(c): f for c, f in sorted(self.floor.items())},
                "epochs": {f"{c}:{e}": p.encode() for (c, e), p in sorted(self.epochs.items()) if p}}

    @classmethod
    def decode(cls, d: dict, sizes: Sequence[Sequence[int]]) -> Book:
        b = cls(sizes)
        try:
            b.floor = {int(c): int(f) for c, f in d["floor"].items()}
            for k, v in d["epochs"].items():
                c, e = (int(x) for x in k.split(":"))
                b.epochs[(c, e)] = Progress.decode(v, sizes[c])
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise LoaderError(f"loader state: unreadable progress ({e})") from None
        return b

    def digest(self) -> str:
        return self.digest_of(self.encode())

    @staticmethod
    def digest_of(encoded: dict) -> str:
        return hashlib.sha256(json.dumps(encoded, sort_keys=True).encode()).hexdigest()[:16]


# ---- states as trainers hand them back -----------------------------------------------------------

def flatten_states(states: Any) -> list[dict]:
    """Loader states from what a trainer saved: a dataset's state_dict(), a torchdata
    StatefulDataLoader's state_dict() (one state per worker inside), or lists of them."""
    if isinstance(states, (list, tuple)):
        return [s for x in states for s in flatten_states(x)]
    if not isinstance(states, dict):
        raise LoaderError(f"loader state: expected a dict or a list of dicts, got {type(states).__name__}")
    if states.get("format") == STATE_FORMAT:
        return [states]
    if str(states.get("format", "")).startswith("tandem.loader/"):
        raise LoaderError(f"loader state: format {states['format']} was written by another version of the "
                          f"loader (this one reads {STATE_FORMAT}); start the epoch over with set_epoch")
    if "_snapshot" in states:  # StatefulDataLoader with workers
        ws = states["_snapshot"].get("_worker_snapshots", {})
        out = [w.get("dataset_state") for _, w in sorted(ws.items())]
        if any(s is None for s in out) or not out:
            raise LoaderError("loader state: a StatefulDataLoader state without dataset states "
                              "(was the loader built on this dataset?)")
        return [s for x in out for s in flatten_states(x)]
    if "dataset_state" in states:  # StatefulDataLoader, num_workers=0
        if states["dataset_state"] is None:
            raise LoaderError("loader state: a StatefulDataLoader state without a dataset state")
        return flatten_states(states["dataset_state"])
    raise LoaderError(f"loader state: not a tandem loader state (format {states.get('format')!r})")
