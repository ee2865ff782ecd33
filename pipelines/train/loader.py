"""The trainers' streaming PyTorch loader: shards (or a catalog query, or a mixture) to batches.

Work is split in units of (shard, row group). Each epoch the units are permuted from
(seed, epoch) and dealt round-robin to "slots", one slot per (rank, DataLoader worker):
slot = rank * num_workers + worker. Every slot reads only its units, so ranks and workers never
overlap and never miss an example. Inside a slot a shuffle buffer mixes rows; its order is planned
from row counts alone (seeded by seed, epoch, slot), so the order of a slot's stream is a pure
function of (seed, epoch, slot, number of slots).

Resume: every example carries `_pos` = [slot, num_slots, index, component, epoch, row, chunk],
its place in its slot's stream. DataLoader hands each batch from a single worker and each
worker's batches in order, so the last consumed `_pos` of each slot says exactly where that slot
stopped. `mark_consumed(batch)` records it, `state_dict()` saves it, and after
`load_state_dict()` each worker skips what its slot already delivered, without reading the
row groups it no longer needs or decoding skipped audio. See docs/TRAINERS.md for the recipe.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tandem.pipelines.train import tokens as _tokens
from tandem.pipelines.train.units import (
    CROPS,
    POS_FIELDS,
    READ_COLUMNS,
    STATE_FORMAT,
    LoaderError,
    Unit,
    _decode,
    _int_hash,
    _read_rows,
    _resolve_slot,
    build_units,
    select_units,
    shard_paths,
    shuffle_plan,
)
from torch.utils.data import IterableDataset

# ---- the dataset ---------------------------------------------------------------------------------

class _Resumable(IterableDataset):
    """Consumed-position bookkeeping shared by ShardDataset and MixtureDataset."""

    kind = "?"

    def _init_state(self) -> None:
        self._consumed: dict[int, dict] = {}  # slot -> {"index": k, "num_slots": n, "components": {c: [e, r, ch]}}
        self._resume: dict[int, dict] = {}
        self._resume_slots: int | None = None

    def mark_consumed(self, batch: dict | Sequence[dict]) -> None:
        """Record that the trainer consumed `batch` (a collated batch, or a list of examples)."""
        pos = batch["_pos"] if isinstance(batch, dict) else [ex["_pos"] for ex in batch]
        pos = torch.as_tensor(np.asarray(pos) if not torch.is_tensor(pos) else pos).reshape(-1, len(POS_FIELDS))
        for slot, nslots, index, comp, epoch, row, chunk in pos.tolist():
            st = self._consumed.setdefault(slot, {"index": -1, "num_slots": nslots, "components": {}})
            if st["num_slots"] != nslots:
                raise LoaderError(f"batch from {nslots} slots, earlier batches from {st['num_slots']}")
            if index > st["index"]:
                st["index"] = index
                st["components"][comp] = [epoch, row, chunk]

    def state_dict(self) -> dict:
        """What the trainer consumed so far this epoch, per slot (JSON-serialisable)."""
        return {"format": STATE_FORMAT, "type": self.kind, "seed": self.seed, "epoch": self.epoch,
                "fingerprint": self.fingerprint(),
                "slots": {str(s): {"index": v["index"], "num_slots": v["num_slots"],
                                   "components": {str(c): p for c, p in v["components"].items()}}
                          for s, v in sorted(self._consumed.items())}}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`; call before creating the DataLoader iterator."""
        if state.get("format") != STATE_FORMAT or state.get("type") != self.kind:
            raise LoaderError(f"loader state: not a {self.kind} state ({state.get('format')}, {state.get('type')})")
        if state["seed"] != self.seed:
            raise LoaderError(f"loader state: saved with seed {state['seed']}, dataset has seed {self.seed}")
        if state["fingerprint"] != self.fingerprint():
            raise LoaderError("loader state: the shards (or the selection) changed since the state was saved")
        self.epoch = int(state["epoch"])
        slots = {int(s): {"index": int(v["index"]), "num_slots": int(v["num_slots"]),
                          "components": {int(c): [int(x) for x in p] for c, p in v["components"].items()}}
                 for s, v in state["slots"].items()}
        nums = {v["num_slots"] for v in slots.values()}
        if len(nums) > 1:
            raise LoaderError(f"loader state: inconsistent slot counts {sorted(nums)}")
        self._consumed = {s: {**v, "components": dict(v["components"])} for s, v in slots.items()}
        self._resume = slots
        self._resume_slots = nums.pop() if nums else None

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning (new unit order and shuffle); clears resume state."""
        self.epoch = int(epoch)
        self._init_state()

    def _slot_resume(self, slot: int, nslots: int) -> dict | None:
        if self._resume_slots is not None and self._resume_slots != nslots:
            raise LoaderError(f"loader state was saved with {self._resume_slots} slots (ranks x workers), "
                              f"this run has {nslots}: resume with the same world size and num_workers")
        return self._resume.get(slot)

    def fingerprint(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class ShardDataset(_Resumable):
    """Examples from Parquet shards as dicts of tensors, split across ranks and DataLoader workers.

    source: list of shard paths, a glob, one shard, or an output dir (its committed shards).
    Each example: example_id, language, kind, sample_rate, offset_s, duration_s, audio float32
    [2, T], words (two lists, one per channel, times relative to the crop), text_tokens int64
    [2, F] on the frame grid when a tokenizer is given, and _pos (see the module docstring).
    """

    kind = "ShardDataset"

    def __init__(self, source: str | Path | Sequence[str | Path] | None = None, *, rank: int | None = None,
                 world_size: int | None = None, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                 shuffle_buffer: int = 64, sample_rate: int | None = None, max_duration_s: float | None = None,
                 crop: str = "random", min_chunk_s: float = 1.0,
                 tokenizer: Callable[[str], Sequence[int]] | None = None,
                 frame_rate: float = _tokens.FRAME_RATE, pad_id: int = _tokens.MOSHI_PAD_ID,
                 epad_id: int = _tokens.MOSHI_EPAD_ID, units: Sequence[Unit] | None = None):
        if crop not in CROPS:
            raise LoaderError(f"crop must be one of {CROPS}, got {crop!r}")
        if max_duration_s is not None and max_duration_s <= 0:
            raise LoaderError(f"max_duration_s must be positive, got {max_duration_s}")
        self.units = list(units) if units is not None else build_units(shard_paths(source))
        self.rank, self.world_size = rank, world_size
        self.seed, self.epoch = int(seed), int(epoch)
        self.shuffle, self.shuffle_buffer = shuffle, int(shuffle_buffer)
        self.sample_rate, self.max_duration_s, self.crop = sample_rate, max_duration_s, crop
        self.min_chunk_s = min_chunk_s
        self.tokenizer, self.frame_rate, self.pad_id, self.epad_id = tokenizer, frame_rate, pad_id, epad_id
        self._init_state()

    @classmethod
    def from_sql(cls, out_dir: str | Path, sql: str, *, include_rejected: bool = False, **kw) -> ShardDataset:
        """Examples of an output dir selected by a catalog query that returns example_id.

        Only accepted examples unless `include_rejected` (the catalog also lists rejected ones).
        """
        return cls(units=select_units(out_dir, sql, include_rejected=include_rejected), **kw)

    # -- metadata --
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for u in self.units:
            h.update(f"{Path(u.path).name}:{u.row_group}:{u.n}:{u.rows}\n".encode())
        return h.hexdigest()[:16]

    def num_rows(self) -> int:
        """Examples (rows) in the selection; with crop='chunk' a row may give several items."""
        return sum(u.n for u in self.units)

    def unit_order(self, epoch: int, seed: int | None = None) -> list[int]:
        """Unit indices in this epoch's order (before dealing them to slots)."""
        if not self.shuffle:
            return list(range(len(self.units)))
        seed = self.seed if seed is None else seed
        return np.random.default_rng([seed, epoch, 0x756E]).permutation(len(self.units)).tolist()

    def slot_rows(self, num_slots: int, epoch: int | None = None) -> list[int]:
        """Rows each slot reads in an epoch (to size steps per rank: sum a rank's slots)."""
        order = self.unit_order(self.epoch if epoch is None else epoch)
        return [sum(self.units[u].n for u in order[s::num_slots]) for s in range(num_slots)]

    # -- iteration --
    def __iter__(self) -> Iterator[dict]:
        slot, nslots, _, _ = _resolve_slot(self.rank, self.world_size)
        res = self._slot_resume(slot, nslots)
        skip = None
        index0 = 0
        if res is not None:
            e, row, chunk = res["components"].get(0, [self.epoch, -1, -1])
            if e != self.epoch:
                raise LoaderError(f"loader state: slot {slot} stopped in epoch {e}, dataset is at epoch {self.epoch}")
            skip, index0 = (row, chunk), res["index"] + 1
        for k, ex in enumerate(self._iter_slot(self.epoch, slot, nslots, self.seed, skip), start=index0):
            ex["_pos"] = torch.tensor([slot, nslots, k, 0, self.epoch, ex.pop("_row"), ex.pop("_chunk")])
            yield ex

    def _iter_slot(self, epoch: int, slot: int, nslots: int, seed: int,
                   skip: tuple[int, int] | None = None) -> Iterator[dict]:
        """The slot's stream; `skip` = (row, chunk) last delivered: resume right after it."""
        order = self.unit_order(epoch, seed)[slot::nslots]
        units = [self.units[u] for u in order]
        rng = np.random.default_rng([seed, epoch, slot, nslots, 0x627566]) if self.shuffle else None
        plan = shuffle_plan([u.n for u in units], self.shuffle_buffer, rng)
        skip_row, skip_chunk = skip if skip is not None else (-1, -1)
        cache: dict[int, dict[int, dict]] = {}
        done_early: dict[int, set[int]] = {}  # rows of a unit delivered before the resume point
        for i, (u, r) in enumerate(plan):
            if i < skip_row:
                s = done_early.setdefault(u, set())
                s.add(r)
                if len(s) == units[u].n:
                    del done_early[u]
                continue
            if u not in cache:
                rows = self._read_unit(units[u])
                skipped = done_early.pop(u, set())
                cache[u] = {j: row for j, row in enumerate(rows) if j not in skipped}
            row = cache[u].pop(r)
            if not cache[u]:
                del cache[u]
            first_chunk = skip_chunk + 1 if i == skip_row else 0
            for c, ex in self._examples(row, units[u], epoch, seed, first_chunk):
                ex["_row"], ex["_chunk"] = i, c
                yield ex

    def _read_unit(self, unit: Unit) -> list[dict]:
        return _read_rows(unit, READ_COLUMNS)

    # -- one row to examples --
    def _windows(self, row: dict, sr: int, total: int, epoch: int, seed: int) -> list[tuple[int, int]]:
        """(offset, length) windows in source samples, offsets on the frame grid."""
        if self.max_duration_s is None:
            return [(0, total)]
        win = round(self.max_duration_s * sr)
        if total <= win:
            return [(0, total)]
        hop = sr / self.frame_rate  # samples per frame
        if self.crop == "start":
            return [(0, win)]
        if self.crop == "random":
            max_k = int((total - win) // hop)
            rng = np.random.default_rng([seed, epoch, _int_hash(row["example_id"]) & 0xFFFFFFFF])
            off = round(int(rng.integers(max_k + 1)) * hop)
            return [(off, min(win, total - off))]
        step = max(1, round(self.max_duration_s * self.frame_rate))
        out = []
        for k in itertools.count(0, step):
            off = round(k * hop)
            if off >= total:
                break
            n = min(win, total - off)
            if out and n < self.min_chunk_s * sr:
                break
            out.append((off, n))
        return out

    def _examples(self, row: dict, unit: Unit, epoch: int, seed: int,
                  first_chunk: int = 0) -> Iterator[tuple[int, dict]]:
        eid = row["example_id"]
        where = f"{unit.path} (row group {unit.row_group}, example {eid})"
        sr = int(row["sample_rate"] or 0)
        total = int(row["num_samples"] or 0)
        if sr <= 0 or total <= 0:
            raise LoaderError(f"{where}: bad sample_rate {sr} or num_samples {total}")
        wins = self._windows(row, sr, total, epoch, seed)
        full = None
        for c, (off, n) in enumerate(wins):
            if c < first_chunk:
                continue
            if len(wins) > 1:  # chunks: decode the example once
                if full is None:
                    full = _decode(row["audio"], 0, total, where)
                x = full[:, off:off + n]
            else:
                x = _decode(row["audio"], off, n, where)
            yield c, self._make(row, x, sr, off, n)

    def _make(self, row: dict, x: np.ndarray, sr: int, off: int, n: int) -> dict:
        out_sr = self.sample_rate or sr
        if out_sr != sr:
            import soxr
            want = round(n * out_sr / sr)
            y = soxr.resample(np.ascontiguousarray(x.T), sr, out_sr).T
            if y.shape[1] < want:
                y = np.pad(y, ((0, 0), (0, want - y.shape[1])))
            x = np.ascontiguousarray(y[:, :want], dtype=np.float32)
        off_s, dur_s = off / sr, n / sr
        words: list[list[dict]] = [[], []]
        flat = []
        for w in row["words"] or []:
            if off_s - 1e-9 <= w["start_s"] < off_s + dur_s:
                sw = {"word": w["word"], "speaker": w["speaker"], "channel": int(w["channel"]),
                      "start_s": w["start_s"] - off_s, "end_s": min(w["end_s"] - off_s, dur_s),
                      "score": w["score"], "overlap": w["overlap"]}
                words[int(w["channel"])].append(sw)
                flat.append(sw)
        for ws in words:
            ws.sort(key=lambda w: w["start_s"])
        ex = {"example_id": row["example_id"], "language": row["language"], "kind": row["kind"],
              "sample_rate": out_sr, "offset_s": off_s, "duration_s": dur_s,
              "audio": torch.from_numpy(x), "words": words}
        if self.tokenizer is not None:
            nf = _tokens.num_frames(x.shape[1], out_sr, self.frame_rate)
            toks, _ = _tokens.channel_streams(flat, nf, self.tokenizer, frame_rate=self.frame_rate,
                                              pad_id=self.pad_id, epad_id=self.epad_id)
            ex["text_tokens"] = torch.from_numpy(toks)
        return ex
