"""MixtureDataset: examples drawn from several catalog selections by weight."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pipelines.train.loader import ShardDataset
from pipelines.train.progress import Book
from pipelines.train.resume import Resumable
from pipelines.train.units import LoaderError, _int_hash, _resolve_slot

# ---- mixtures ----------------------------------------------------------------------------------

def load_mixture(out_dir: str | Path, name: str) -> dict:
    """The mixture definition OUT/mixtures/<name>.json (see catalogs.mix)."""
    from catalogs.confined import one_select
    from catalogs.mix import MixtureError, mixture_path
    try:
        p = mixture_path(out_dir, name)  # a name, not a path: "../x" is refused
    except MixtureError as e:
        raise LoaderError(str(e)) from None
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
            one_select(c["sql"], f"component {c.get('name')}")  # one SELECT, before any is run
    except (ValueError, KeyError, TypeError) as e:
        raise LoaderError(f"{p}: not a valid mixture ({e})") from None
    return m


class MixtureDataset(Resumable):
    """Examples drawn from several ShardDatasets by weight; endless (each component restarts
    with its next epoch when it runs out), seeded, with ShardDataset's rank/worker/resume rules.

    Each slot (rank x worker) draws components from its own seeded stream and reads, from each
    component, that component's share for the slot. A component with fewer row groups than
    slots leaves some slots without it: those slots draw among the other components.
    Resume is exact per component epoch: after any restart, elastic or not, every example of a
    component epoch that was not delivered is delivered once before that epoch is over.
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

    def unit_sizes(self) -> list[list[int]]:
        return [[u.n for u in d.units] for d in self.datasets]

    def _comp_seed(self, c: int) -> int:
        return _int_hash("mix", self.seed, self.epoch, c) & 0x7FFFFFFF

    def _component_stream(self, c: int, slot: int, nslots: int) -> Iterator[dict]:
        d, seed = self.datasets[c], self._comp_seed(c)
        floors = self._extra.setdefault("share_floor", {})
        e = int(floors.get(str(c), self._base.first_epoch(c)))
        while True:
            yield from d._iter_epoch(c, e, slot, nslots, seed, self._base.peek(c, e), self._own.get(c, e))
            # this slot's share of epoch e is delivered: say so in one number instead of a list
            self._own.epochs.pop((c, e), None)
            floors[str(c)] = e + 1
            e += 1

    def _expand_shares(self, state: dict, base: Book, own: Book) -> None:
        nw = state["num_workers"]
        slot, nslots = state["rank"] * nw + state["worker"], state["world_size"] * nw
        for c, f in state.get("extra", {}).get("share_floor", {}).items():
            c = int(c)
            for e in range(base.first_epoch(c), int(f)):
                p = own.get(c, e)
                for u in self.datasets[c].share(e, slot, nslots, self._comp_seed(c), base.peek(c, e)):
                    p.mark_unit(u)

    def __iter__(self) -> Iterator[dict]:
        slot, nslots, _, _ = _resolve_slot(self.rank, self.world_size)
        self._begin(slot, nslots)
        alive = np.array([len(d.units) > slot for d in self.datasets])  # round-robin deal: slot s gets a unit iff s < units
        if not alive.any():
            self._pass_ended = True
            return
        w = np.where(alive, self.weights, 0.0)
        cum = np.cumsum(w / w.sum())
        cum[-1] = 1.0
        streams = {c: self._component_stream(c, slot, nslots) for c in range(len(self.datasets)) if alive[c]}
        gen = int(self._base.digest(), 16) & 0xFFFFFFFF if self._base else 0
        rng = np.random.default_rng([self.seed, self.epoch, slot, nslots, 0x6D6978, gen])
        start = int(self._extra.get("draws", 0))
        for _ in range(start // self._BLOCK):  # replay the draws already used
            rng.random(self._BLOCK)
        k = start - start % self._BLOCK
        while True:
            u = rng.random(self._BLOCK)
            picks = np.searchsorted(cum, u, side="right")
            for j in range(start - k if k < start else 0, self._BLOCK):
                c = int(min(picks[j], len(cum) - 1))
                ex = next(streams[c])
                self._extra["draws"] = k + j + 1
                ex["component"] = self.names[c]
                self._delivered()
                yield ex
            k += self._BLOCK
