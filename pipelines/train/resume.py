"""Loader state that follows what was delivered, and elastic resume (shared by ShardDataset and
MixtureDataset).

Each slot (rank x DataLoader worker) records every item it yields, before yielding it, in `own`
(a `Book` of consumed sets), on top of `base`: what was consumed before this slot's layout
started. So `state_dict()` is exact wherever it is called where the items are produced:
- iterating in-process: the dataset object itself;
- with DataLoader workers: torchdata's StatefulDataLoader calls `state_dict()` inside each worker
  after each batch and keeps, per worker, the state of the last batch it handed out.
A plain DataLoader's workers are other processes: the dataset object in the trainer never sees
their items, so its `state_dict()` raises once a worker has yielded anything (a shared counter
tells), instead of returning a state that would silently start over.

Resume: `load_state_dict(state)` or `load_state_dicts([state of every old rank])`. Resolved when
iteration starts, where the slot is known: with the same layout and one generation, each slot
continues its own stream exactly; otherwise every state's consumed set is merged and what remains
of the epoch is dealt over the new slots (elastic resume).
"""

from __future__ import annotations

import json

import torch
from pipelines.train.progress import Book, flatten_states
from pipelines.train.units import STATE_FORMAT, LoaderError, _resolve_slot
from torch.utils.data import IterableDataset, get_worker_info


class Resumable(IterableDataset):
    kind = "?"

    # -- set up by subclasses --
    def unit_sizes(self) -> list[list[int]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _init_state(self) -> None:
        sizes = self.unit_sizes()
        self._base = Book(sizes)
        self._own = Book(sizes)
        self._extra: dict = {}  # subclass counters saved with own (e.g. mixture draws)
        self._loaded: list[dict] | None = None
        self._slot: tuple[int, int] | None = None
        self._pass_ended = False
        if not hasattr(self, "_worker_items"):
            # shared with DataLoader workers (fork or spawn): how many items they yielded
            self._worker_items = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._worker_items.zero_()

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning (its own unit order and shuffle)."""
        self.epoch = int(epoch)
        self._init_state()

    # -- bookkeeping while yielding --
    def _delivered(self) -> None:
        if get_worker_info() is not None:
            self._worker_items += 1

    def _begin(self, slot: int, nslots: int) -> None:
        """Called when iteration starts in a slot: resolve a loaded state, or start a new pass."""
        if self._pass_ended:  # the last pass ran to its end: iterating again starts the epoch over
            self._base, self._own = Book(self.unit_sizes()), Book(self.unit_sizes())
            self._extra = {}
            self._pass_ended = False
        if self._loaded is not None:
            self._resolve(slot, nslots)
        elif self._slot is not None and self._slot != (slot, nslots) and self._own:
            raise LoaderError(f"this dataset yielded items as slot {self._slot[0]} of {self._slot[1]} and is now "
                              f"iterated as slot {slot} of {nslots}: save state_dict() and load it instead")
        self._slot = (slot, nslots)

    # -- states --
    def _identity(self) -> dict:
        return {"format": STATE_FORMAT, "type": self.kind, "seed": self.seed, "epoch": self.epoch,
                "fingerprint": self.fingerprint()}

    def state_dict(self) -> dict:
        """What was delivered so far (JSON-serialisable). In-process iteration: exact, no extra call.
        With DataLoader workers: use torchdata's StatefulDataLoader and save *its* state_dict()."""
        wi = get_worker_info()
        if wi is None and int(self._worker_items) > 0:
            raise LoaderError(
                f"{int(self._worker_items)} item(s) were yielded by DataLoader worker processes, which this "
                "dataset object cannot see, so its state would start over. Use "
                "torchdata.stateful_dataloader.StatefulDataLoader and checkpoint loader.state_dict() "
                "(pass those to load_state_dicts / loader.load_state_dict to resume)")
        _, _, rank, world = _resolve_slot(self.rank, self.world_size)
        w, nw = (wi.id, wi.num_workers) if wi is not None else (0, 1)
        if self._loaded is not None and wi is not None:
            self._resolve(rank * nw + w, world * nw)
        if self._loaded is not None:  # loaded, not iterated yet (slot unknown): the merged equivalent
            base, own, extra = self._merged(self._loaded), Book(self.unit_sizes()), {}
        else:
            base, own, extra = self._base, self._own, self._extra
        if self._slot is not None:
            slot, nslots = self._slot
            w, nw = slot - rank * (nslots // world), nslots // world
        enc = base.encode()
        return {**self._identity(), "rank": rank, "world_size": world, "worker": w, "num_workers": nw,
                "generation": Book.digest_of(enc), "base": enc, "own": own.encode(),
                "extra": json.loads(json.dumps(extra))}

    def load_state_dict(self, state: dict) -> None:
        """Resume from one state: this dataset's state_dict(), one rank's StatefulDataLoader state,
        or one worker's state (as StatefulDataLoader.load_state_dict passes it to each worker)."""
        self.load_state_dicts([state])

    def load_state_dicts(self, states: list) -> None:
        """Resume from the states of every rank of the old run (any number of ranks and workers);
        call before iterating or creating the DataLoader iterator. The remaining examples of the
        epoch are then delivered exactly once across the new ranks and workers. With the same
        ranks and workers a rank may pass only its own state(s): each slot continues its stream.
        Checked when iteration starts (where the slot is known): states that do not cover every
        old rank cannot seed another layout."""
        flat = flatten_states(states)
        if not flat:
            raise LoaderError("loader state: no states given")
        me = self._identity()
        for s in flat:
            if s.get("type") != self.kind:
                raise LoaderError(f"loader state: not a {self.kind} state ({s.get('format')}, {s.get('type')})")
            if s["seed"] != self.seed:
                raise LoaderError(f"loader state: saved with seed {s['seed']}, dataset has seed {self.seed}")
            if s["fingerprint"] != me["fingerprint"]:
                raise LoaderError("loader state: the shards (or the selection) changed since the state was saved")
        epochs = {s["epoch"] for s in flat}
        if len(epochs) > 1:
            raise LoaderError(f"loader state: states from different epochs {sorted(epochs)}")
        self.epoch = int(epochs.pop())
        self._init_state()
        self._loaded = flat

    # -- resolving a loaded state --
    @staticmethod
    def _check_complete(flat: list[dict]) -> None:
        worlds = {s["world_size"] for s in flat}
        if len(worlds) > 1:
            raise LoaderError(f"loader state: states from runs of different world sizes {sorted(worlds)}")
        world = worlds.pop()
        missing = sorted(set(range(world)) - {s["rank"] for s in flat})
        if missing:
            raise LoaderError(f"loader state: no state for rank(s) {missing} of {world}: pass the state_dict() of "
                              "every rank of the old run, or their examples would be delivered again")

    def _merged(self, flat: list[dict]) -> Book:
        sizes = self.unit_sizes()
        book = Book(sizes)
        for s in flat:
            book.update(Book.decode(s["base"], sizes))
            own = Book.decode(s["own"], sizes)
            self._expand_shares(s, Book.decode(s["base"], sizes), own)
            book.update(own)
        return book

    def _expand_shares(self, state: dict, base: Book, own: Book) -> None:
        """Add to `own` what a state summarises instead of listing (mixtures: finished epoch shares)."""

    def _resolve(self, slot: int, nslots: int) -> None:
        flat, self._loaded = self._loaded, None
        sizes = self.unit_sizes()
        layouts = {s["world_size"] * s["num_workers"] for s in flat}
        gens = {s["generation"] for s in flat}
        mine = [s for s in flat if s["rank"] * s["num_workers"] + s["worker"] == slot]
        if layouts == {nslots} and len(gens) == 1 and len(mine) == 1:
            s = mine[0]  # same layout: this slot continues its own stream
            self._base, self._own = Book.decode(s["base"], sizes), Book.decode(s["own"], sizes)
            self._extra = dict(s.get("extra", {}))
            return
        if len(flat) == 1 and flat[0]["world_size"] * flat[0]["num_workers"] > 1:
            s = flat[0]
            raise LoaderError(f"loader state: one state of rank {s['rank']} worker {s['worker']} (of "
                              f"{s['world_size']} x {s['num_workers']}) cannot resume slot {slot} of {nslots}: "
                              "pass every old rank's state to load_state_dicts")
        self._check_complete(flat)
        self._base, self._own, self._extra = self._merged(flat), Book(sizes), {}
