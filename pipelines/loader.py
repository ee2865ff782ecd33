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

import glob as _glob
import hashlib
import io
import itertools
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import tokens as _tokens

STATE_FORMAT = "tandem.loader/1"
READ_COLUMNS = ["example_id", "kind", "language", "sample_rate", "num_samples", "audio", "words"]
POS_FIELDS = ("slot", "num_slots", "index", "component", "epoch", "row", "chunk")
CROPS = ("random", "start", "chunk")


class LoaderError(ValueError):
    """Bad loader input or state; the message names the file (or state) and the reason."""


@dataclass(frozen=True)
class Unit:
    """One row group of one shard, optionally narrowed to selected rows."""

    path: str
    row_group: int
    rows: tuple[int, ...] | None  # selected row indices inside the row group; None = all
    n: int


# ---- finding shards ----------------------------------------------------------------------------

def shard_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files from a list of paths, a glob, a Parquet file, or an output dir (committed shards)."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    else:
        s = str(source)
        p = Path(s)
        if any(ch in s for ch in "*?["):
            paths = [Path(x) for x in sorted(_glob.glob(s, recursive=True))]
            if not paths:
                raise LoaderError(f"{s}: glob matches no files")
        elif p.is_dir():
            paths = _output_dir_shards(p)
            if not paths:
                raise LoaderError(f"{p}: no committed shards and no *.parquet files here")
        else:
            paths = [p]
    for p in paths:
        if not p.is_file():
            raise LoaderError(f"{p}: shard not found")
    return paths


def _output_dir_shards(out_dir: Path) -> list[Path]:
    try:
        from .shards import COMMITS, committed_files
    except ImportError:  # a tree without the shard writer: plain files
        return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))
    if (out_dir / COMMITS).exists():
        return sorted(committed_files(out_dir, "shards"))
    # not an output dir: its own Parquet files
    return sorted((out_dir / "shards").glob("*.parquet")) or sorted(out_dir.glob("*.parquet"))


def _open_parquet(path: str):
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any reader error is a bad shard
        raise LoaderError(f"{path}: not a readable Parquet shard ({e})") from None
    missing = [c for c in READ_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise LoaderError(f"{path}: not an examples shard, missing columns {missing}")
    return pf


_FILES: OrderedDict[tuple[int, str], Any] = OrderedDict()


def _cached_parquet(path: str):
    """An open ParquetFile, kept per process (DataLoader workers fork) in a small LRU."""
    key = (os.getpid(), path)
    pf = _FILES.get(key)
    if pf is None:
        pf = _open_parquet(path)
        _FILES[key] = pf
        while len(_FILES) > 8:
            _FILES.popitem(last=False)
    else:
        _FILES.move_to_end(key)
    return pf


def build_units(paths: Sequence[str | Path], selected: dict[str, set[str]] | None = None) -> list[Unit]:
    """Units from Parquet footers; with `selected` ({path: example ids}) only rows with those ids
    are kept, found by reading the example_id column alone."""
    units = []
    for p in paths:
        p = str(p)
        pf = _open_parquet(p)
        want = None if selected is None else selected.get(p, set())
        found = 0
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if want is None:
                if n:
                    units.append(Unit(p, rg, None, n))
                continue
            ids = pf.read_row_group(rg, columns=["example_id"]).column(0).to_pylist()
            rows = tuple(i for i, x in enumerate(ids) if x in want)
            found += len(rows)
            if rows:
                units.append(Unit(p, rg, rows, len(rows)))
        if want is not None and found < len(want):
            raise LoaderError(f"{p}: {len(want) - found} example(s) the catalog lists are not in this shard "
                              "(stale catalog? rebuild it with `tandem catalog build`)")
    return units


def select_units(source: str | Path | Sequence[str | Path], sql: str | None = None, *,
                 include_rejected: bool = False) -> list[Unit]:
    """Units of a source, or of the examples a catalog query selects in output dir `source`."""
    if sql is None:
        return build_units(shard_paths(source))
    sel = _catalog_selection(source, sql, include_rejected)
    return build_units(sorted(sel), sel)


def _read_rows(unit: Unit, columns: list[str] | None) -> list[dict]:
    pf = _cached_parquet(unit.path)
    try:
        # one thread: DataLoader workers are the parallelism, and small row groups pay for threads
        t = pf.read_row_group(unit.row_group, columns=columns, use_threads=False)
    except Exception as e:  # noqa: BLE001
        raise LoaderError(f"{unit.path}: cannot read row group {unit.row_group}: {e}") from None
    rows = t.to_pylist()
    return rows if unit.rows is None else [rows[i] for i in unit.rows]


def iter_rows(units: Sequence[Unit], columns: Sequence[str] | None = None) -> Iterator[tuple[Unit, dict]]:
    """(unit, row) for every selected row, one row group in memory at a time."""
    cols = list(columns) if columns is not None else None
    for unit in units:
        for row in _read_rows(unit, cols):
            yield unit, row


def _catalog_selection(out_dir: str | Path, sql: str, include_rejected: bool) -> dict[str, set[str]]:
    import duckdb
    out_dir = Path(out_dir)
    db = out_dir / "catalog.duckdb"
    if not db.exists():
        raise LoaderError(f"{db}: no catalog (build it with `tandem catalog build {out_dir}`)")
    status = "" if include_rejected else " AND e.status = 'accepted'"
    q = (f"SELECT e.shard, e.example_id FROM examples e WHERE e.example_id IN "
         f"(SELECT q.example_id FROM ({sql.rstrip().rstrip(';')}) AS q){status}")
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(q).fetchall()
    except duckdb.Error as e:
        raise LoaderError(f"{db}: query {sql!r} failed (it must select example_id from examples): {e}") from None
    finally:
        con.close()
    sel: dict[str, set[str]] = {}
    for shard, eid in rows:
        sel.setdefault(str(out_dir / shard), set()).add(eid)
    return sel


# ---- small helpers -------------------------------------------------------------------------------

def _int_hash(*parts: Any) -> int:
    h = hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _resolve_slot(rank: int | None, world_size: int | None) -> tuple[int, int, int, int]:
    """(slot, num_slots, rank, world_size) for the calling process and DataLoader worker."""
    if rank is None or world_size is None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
    if not 0 <= rank < world_size:
        raise LoaderError(f"rank {rank} is outside world_size {world_size}")
    wi = get_worker_info()
    w, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
    return rank * nw + w, world_size * nw, rank, world_size


def shuffle_plan(sizes: Sequence[int], buffer: int, rng: np.random.Generator | None) -> Iterator[tuple[int, int]]:
    """Emission order (unit position, row) of a shuffle buffer fed units in order; None rng = no shuffle."""
    if rng is None or buffer <= 1:
        for u, n in enumerate(sizes):
            for r in range(n):
                yield u, r
        return
    buf: list[tuple[int, int]] = []
    for u, n in enumerate(sizes):
        for r in range(n):
            if len(buf) < buffer:
                buf.append((u, r))
                continue
            j = int(rng.integers(buffer))
            yield buf[j]
            buf[j] = (u, r)
    order = rng.permutation(len(buf))
    for j in order:
        yield buf[j]


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


def _decode(data: bytes, off: int, n: int, where: str) -> np.ndarray:
    """Samples [off, off+n) of two-channel FLAC bytes as float32 [2, n], seeking instead of decoding all."""
    import soundfile as sf
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.channels != 2:
                raise LoaderError(f"{where}: audio has {f.channels} channel(s), expected 2")
            if off:
                f.seek(off)
            x = f.read(n, dtype="float32", always_2d=True)
    except LoaderError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error is a bad example
        raise LoaderError(f"{where}: cannot decode audio: {e}") from None
    if len(x) < n:
        raise LoaderError(f"{where}: audio has {off + len(x)} samples, num_samples says {off + n}")
    return np.ascontiguousarray(x.T)


# ---- mixtures ----------------------------------------------------------------------------------

def load_mixture(out_dir: str | Path, name: str) -> dict:
    """The mixture definition OUT/mixtures/<name>.json (see catalogs.mix)."""
    p = Path(out_dir) / "mixtures" / f"{name}.json"
    if not p.exists():
        raise LoaderError(f"{p}: no mixture named {name!r} (add one with `tandem catalog mix`)")
    try:
        m = json.loads(p.read_text())
        comps = m["components"]
        if not comps:
            raise ValueError("no components")
        for c in comps:
            if float(c["weight"]) <= 0 or not str(c["sql"]).strip():
                raise ValueError(f"component {c.get('name')}: weight must be > 0 and sql non-empty")
    except (ValueError, KeyError, TypeError) as e:
        raise LoaderError(f"{p}: not a valid mixture ({e})") from None
    return m


class MixtureDataset(_Resumable):
    """Examples drawn from several ShardDatasets by weight; endless (each component restarts
    with its next epoch when it runs out), seeded, with ShardDataset's rank/worker/resume rules.

    Each slot (rank x worker) draws components from its own seeded stream and reads, from each
    component, that component's share for the slot. A component with fewer row groups than
    slots leaves some slots without it: those slots draw among the other components.
    """

    kind = "MixtureDataset"
    _BLOCK = 4096

    def __init__(self, out_dir: str | Path | None = None, name: str | None = None, *,
                 components: Sequence[tuple[ShardDataset, float]] | None = None, rank: int | None = None,
                 world_size: int | None = None, seed: int = 0, epoch: int = 0, **shard_kw):
        if components is None:
            if out_dir is None or name is None:
                raise LoaderError("MixtureDataset needs (out_dir, name) or components=[(dataset, weight), ...]")
            m = load_mixture(out_dir, name)
            components = [(ShardDataset.from_sql(out_dir, c["sql"], seed=seed, **shard_kw), float(c["weight"]))
                          for c in m["components"]]
            self.names = [str(c.get("name", i)) for i, c in enumerate(m["components"])]
        else:
            self.names = [str(i) for i in range(len(components))]
        if not components:
            raise LoaderError("a mixture needs at least one component")
        self.datasets = [d for d, _ in components]
        self.weights = np.array([float(w) for _, w in components])
        if (self.weights <= 0).any():
            raise LoaderError(f"mixture weights must be positive, got {self.weights.tolist()}")
        self.rank, self.world_size = rank, world_size
        self.seed, self.epoch = int(seed), int(epoch)
        self._init_state()

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([[d.fingerprint(), w] for d, w in zip(self.datasets, self.weights.tolist())])
                              .encode()).hexdigest()[:16]

    def _comp_seed(self, c: int) -> int:
        return _int_hash("mix", self.seed, self.epoch, c) & 0x7FFFFFFF

    def _component_stream(self, c: int, slot: int, nslots: int, start: list[int] | None) -> Iterator[dict]:
        d = self.datasets[c]
        e0, skip = (start[0], (start[1], start[2])) if start is not None else (0, None)
        for e in itertools.count(e0):
            for ex in d._iter_slot(e, slot, nslots, self._comp_seed(c), skip if e == e0 else None):
                ex["_epoch"] = e
                yield ex

    def __iter__(self) -> Iterator[dict]:
        slot, nslots, _, _ = _resolve_slot(self.rank, self.world_size)
        res = self._slot_resume(slot, nslots) or {"index": -1, "components": {}}
        alive = np.array([len(d.units) > slot for d in self.datasets])  # round-robin deal: slot s gets a unit iff s < units
        if not alive.any():
            return
        w = np.where(alive, self.weights, 0.0)
        cum = np.cumsum(w / w.sum())
        cum[-1] = 1.0
        streams = {c: self._component_stream(c, slot, nslots, res["components"].get(c))
                   for c in range(len(self.datasets)) if alive[c]}
        rng = np.random.default_rng([self.seed, self.epoch, slot, nslots, 0x6D6978])
        start = res["index"] + 1
        for _ in range(start // self._BLOCK):  # replay the draws already used
            rng.random(self._BLOCK)
        k = start - start % self._BLOCK
        while True:
            u = rng.random(self._BLOCK)
            picks = np.searchsorted(cum, u, side="right")
            for j in range(start - k if k < start else 0, self._BLOCK):
                c = int(min(picks[j], len(cum) - 1))
                ex = next(streams[c])
                ex["_pos"] = torch.tensor([slot, nslots, k + j, c, ex.pop("_epoch"), ex.pop("_row"), ex.pop("_chunk")])
                ex["component"] = self.names[c]
                yield ex
            k += self._BLOCK


# ---- batching ----------------------------------------------------------------------------------

def collate(batch: Sequence[dict], *, token_pad_id: int = -1) -> dict:
    """Pad a list of examples into a batch.

    audio float32 [B, 2, T] zero-padded, audio_lengths [B]; text_tokens int64 [B, 2, F] padded with
    `token_pad_id` (-1: mask it in the loss), token_lengths [B]; _pos [B, 7]; other fields as lists.
    """
    if not batch:
        raise LoaderError("collate: empty batch")
    out: dict[str, Any] = {}
    lens = torch.tensor([ex["audio"].shape[-1] for ex in batch])
    audio = torch.zeros(len(batch), batch[0]["audio"].shape[0], int(lens.max()), dtype=torch.float32)
    for i, ex in enumerate(batch):
        audio[i, :, : ex["audio"].shape[-1]] = ex["audio"]
    out["audio"], out["audio_lengths"] = audio, lens
    if "text_tokens" in batch[0]:
        tl = torch.tensor([ex["text_tokens"].shape[-1] for ex in batch])
        toks = torch.full((len(batch), batch[0]["text_tokens"].shape[0], int(tl.max())), token_pad_id,
                          dtype=torch.int64)
        for i, ex in enumerate(batch):
            toks[i, :, : ex["text_tokens"].shape[-1]] = ex["text_tokens"]
        out["text_tokens"], out["token_lengths"] = toks, tl
    if "_pos" in batch[0]:
        out["_pos"] = torch.stack([ex["_pos"] for ex in batch])
    for k in ("offset_s", "duration_s"):
        out[k] = torch.tensor([float(ex[k]) for ex in batch], dtype=torch.float64)
    for k in batch[0]:
        if k not in out and k not in ("text_tokens",):
            out[k] = [ex[k] for ex in batch]
    return out


def resume_info(state: dict) -> dict[int, int]:
    """Items consumed per slot in a saved state (for logs)."""
    return {int(s): v["index"] + 1 for s, v in state.get("slots", {}).items()}


__all__ = [
    "POS_FIELDS",
    "LoaderError",
    "MixtureDataset",
    "ShardDataset",
    "Unit",
    "build_units",
    "collate",
    "load_mixture",
    "resume_info",
    "shard_paths",
    "shuffle_plan",
]

