"""The trainers' streaming PyTorch loader: shards (or a catalog query, or a mixture) to examples.

Work is split in units of (shard, row group). Each epoch the units are permuted from
(seed, epoch) and dealt round-robin to "slots", one slot per (rank, DataLoader worker):
slot = rank * num_workers + worker. Every slot reads only its units, so ranks and workers never
overlap and never miss an example. Inside a slot a shuffle buffer mixes rows; its order is planned
from row counts alone (seeded by seed, epoch, slot), so a slot's stream is a pure function of
(seed, epoch, slot, number of slots, and what was consumed before a resume).

State and resume: see resume.py. What was consumed is recorded as it is yielded; after an
elastic resume the units that still hold unconsumed rows are dealt again, in the same seeded
order, over the new slots, and each slot reads only their unconsumed rows.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from pipelines.train import tokens as _tokens
from pipelines.train.progress import Progress
from pipelines.train.resume import Resumable
from pipelines.train.units import (
    CROPS,
    READ_COLUMNS,
    LoaderError,
    Unit,
    _decode,
    _int_hash,
    _read_rows,
    _resolve_slot,
    select_units,
    shuffle_plan,
)

# ---- the dataset ---------------------------------------------------------------------------------

class ShardDataset(Resumable):
    """Examples from Parquet shards as dicts of tensors, split across ranks and DataLoader workers.

    source: list of shard paths, a glob, one shard, or an output dir (its committed shards).
    Each example: example_id, language, kind, sample_rate, offset_s, duration_s, audio float32
    [2, T], words (two lists, one per channel, times relative to the crop), text_tokens int64
    [2, F] on the frame grid when a tokenizer is given, and _pos = [slot, num_slots, component,
    epoch, unit, row, chunk] (where it came from; not needed to resume).
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
        self.units = list(units) if units is not None else select_units(source)  # with the manifest checksums
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
        """The shards and selection, by name, row group and rows (cached: units never change)."""
        fp = self.__dict__.get("_fingerprint")
        if fp is None:
            h = hashlib.sha256()
            for u in self.units:
                h.update(f"{Path(u.path).name}:{u.row_group}:{u.n}:{u.rows}\n".encode())
            fp = self._fingerprint = h.hexdigest()[:16]
        return fp

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
        """Rows each slot reads in a fresh epoch (to size steps per rank: sum a rank's slots)."""
        order = self.unit_order(self.epoch if epoch is None else epoch)
        return [sum(self.units[u].n for u in order[s::num_slots]) for s in range(num_slots)]

    def unit_sizes(self) -> list[list[int]]:
        return [[u.n for u in self.units]]

    # -- iteration --
    def __iter__(self) -> Iterator[dict]:
        slot, nslots, _, _ = _resolve_slot(self.rank, self.world_size)
        self._begin(slot, nslots)
        base = self._base.peek(0, self.epoch)
        own = self._own.get(0, self.epoch)
        for ex in self._iter_epoch(0, self.epoch, slot, nslots, self.seed, base, own):
            self._delivered()
            yield ex
        self._pass_ended = True

    def share(self, epoch: int, slot: int, nslots: int, seed: int, base: Progress | None) -> list[int]:
        """Units dealt to `slot` in `epoch`: the epoch's seeded unit order, less units `base`
        consumed entirely, dealt round-robin."""
        order = self.unit_order(epoch, seed)
        if base is not None:
            order = [u for u in order if not base.unit_done(u)]
        return order[slot::nslots]

    def _iter_epoch(self, comp: int, epoch: int, slot: int, nslots: int, seed: int,
                    base: Progress | None, own: Progress) -> Iterator[dict]:
        """The slot's stream of one epoch: rows of its share not in `base`, in shuffle order,
        skipping what `own` already holds (a prefix of this same stream); each item is recorded
        in `own` before it is yielded."""
        mine = self.share(epoch, slot, nslots, seed, base)
        rem = [base.remaining_rows(u) if base is not None else list(range(self.units[u].n)) for u in mine]
        rng = np.random.default_rng([seed, epoch, slot, nslots, 0x627566]) if self.shuffle else None
        cache: dict[int, dict[int, dict]] = {}
        for i, j in shuffle_plan([len(r) for r in rem], self.shuffle_buffer, rng):
            u, r = mine[i], rem[i][j]
            if own.row_done(u, r):
                continue  # delivered before the resume: never read, never decoded
            if i not in cache:
                rows = self._read_unit(self.units[u])
                cache[i] = {k: rows[k] for k in rem[i] if not own.row_done(u, k)}
            row = cache[i].pop(r)
            if not cache[i]:
                del cache[i]
            first = max(own.chunk_start(u, r), base.chunk_start(u, r) if base is not None else 0)
            for c, last, ex in self._examples(row, self.units[u], epoch, seed, first):
                own.mark(u, r, c + 1, last)
                ex["_pos"] = torch.tensor([slot, nslots, comp, epoch, u, r, c])
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
                  first_chunk: int = 0) -> Iterator[tuple[int, bool, dict]]:
        eid = row["example_id"]
        where = f"{unit.path} (row group {unit.row_group}, example {eid})"
        sr = int(row["sample_rate"] or 0)
        total = int(row["num_samples"] or 0)
        if sr <= 0 or total <= 0:
            raise LoaderError(f"{where}: bad sample_rate {sr} or num_samples {total}")
        wins = self._windows(row, sr, total, epoch, seed)
        full, start = None, 0
        for c, (off, n) in enumerate(wins):
            if c < first_chunk:
                continue
            if len(wins) > 1:  # chunks: decode once, from the first chunk still to deliver
                if full is None:
                    start = off
                    full = _decode(row["audio"], start, total - start, where)
                x = full[:, off - start:off - start + n]
            else:
                x = _decode(row["audio"], off, n, where)
            yield c, c == len(wins) - 1, self._make(row, x, sr, off, n)

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
