"""Loader state follows what was delivered; resume on any number of ranks and workers is exact."""

import json
from collections import Counter

import pytest
from pipelines.train import LoaderError, MixtureDataset, ShardDataset, collate
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from tandem.testing import loader as lt


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return lt.make_shards(tmp_path_factory.mktemp("resume"), n_shards=3, per_shard=10, row_group_size=4,
                          durations=(0.6, 0.9, 1.2), sample_rate=8000)


KW = {"seed": 11, "shuffle_buffer": 5}


def item(ex_or_batch, i=None):
    if i is None:
        return ex_or_batch["example_id"], round(float(ex_or_batch["offset_s"]), 3)
    return ex_or_batch["example_id"][i], round(float(ex_or_batch["offset_s"][i]), 3)


def everything(paths, **kw):
    return Counter(item(ex) for ex in ShardDataset(paths, **KW, **kw))


def run_rank(paths, rank, world, workers, states=None, stop_after=None, **kw):
    """One rank of a trainer: a StatefulDataLoader over its dataset; returns (items, loader state)."""
    ds = ShardDataset(paths, rank=rank, world_size=world, **KW, **kw)
    if states is not None:
        ds.load_state_dicts(states)
    dl = StatefulDataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)
    got = []
    for n, b in enumerate(dl, start=1):
        got += [item(b, i) for i in range(len(b["example_id"]))]
        if n == stop_after:
            break
    return got, json.loads(json.dumps(dl.state_dict()))  # as a JSON checkpoint would keep it


def test_in_process_state_needs_no_extra_call(paths):
    ds = ShardDataset(paths, **KW)
    it = iter(ds)
    head = [item(next(it)) for _ in range(3)]
    state = json.loads(json.dumps(ds.state_dict()))
    assert state["own"]["epochs"], "three items were yielded: the state must say so"
    again = ShardDataset(paths, **KW)
    again.load_state_dict(state)
    rest = [item(ex) for ex in again]
    full = [item(ex) for ex in ShardDataset(paths, **KW)]
    assert head + rest == full  # same layout: the very same stream, continued
    assert ds.state_dict() == state  # nothing more was taken from `it`


def test_statefuldataloader_two_workers_resumes_exactly(paths):
    full, _ = run_rank(paths, 0, 1, 2)
    head, state = run_rank(paths, 0, 1, 2, stop_after=3)
    # the supported way: the loader's own state, restored by the loader (same worker count)
    ds = ShardDataset(paths, **KW)
    dl = StatefulDataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    dl.load_state_dict(state)
    rest = [item(b, i) for b in dl for i in range(len(b["example_id"]))]
    assert head + rest == full
    assert Counter(head + rest) == everything(paths)


def test_statefuldataloader_without_workers_then_two_ranks(paths):
    full, _ = run_rank(paths, 0, 1, 0)
    head, state = run_rank(paths, 0, 1, 0, stop_after=3)
    dl = StatefulDataLoader(ShardDataset(paths, **KW), batch_size=2, collate_fn=collate)
    dl.load_state_dict(state)
    assert head + [item(b, i) for b in dl for i in range(len(b["example_id"]))] == full
    rest = []
    for rank in range(2):
        rest += run_rank(paths, rank, 2, 0, states=[state])[0]
    assert Counter(head + rest) == everything(paths)


def test_plain_dataloader_workers_state_is_an_error(paths):
    ds = ShardDataset(paths, **KW)
    for _ in DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate):
        break
    with pytest.raises(LoaderError, match="StatefulDataLoader"):
        ds.state_dict()


@pytest.mark.parametrize("old,new,stops,kw", [
    ((2, 2), (3, 1), (3, 1), {}),
    ((1, 1), (2, 2), (4,), {"max_duration_s": 0.4, "crop": "chunk", "min_chunk_s": 0.0}),
    ((2, 1), (4, 1), (2, 5), {"max_duration_s": 0.5, "crop": "random"}),
])
def test_elastic_resume_yields_the_rest_exactly_once(paths, old, new, stops, kw):
    (n, w), (m, v) = old, new
    before, states = [], []
    for rank in range(n):
        got, st = run_rank(paths, rank, n, w, stop_after=stops[rank], **kw)
        before += got
        states.append(st)
    after = []
    for rank in range(m):
        got, _ = run_rank(paths, rank, m, v, states=states, **kw)
        after += got
    assert before and after
    assert Counter(before + after) == everything(paths, **kw)


def test_elastic_resume_twice_and_in_process_states(paths):
    """1 rank in-process -> 2 ranks x 2 workers (stopped early) -> 1 rank in-process."""
    ds = ShardDataset(paths, **KW)
    it = iter(ds)
    first = [item(next(it)) for _ in range(5)]
    second, states = [], []
    for rank in range(2):
        got, st = run_rank(paths, rank, 2, 2, states=[ds.state_dict()], stop_after=2)
        second += got
        states.append(st)
    last = ShardDataset(paths, **KW)
    last.load_state_dicts(states)
    third = [item(ex) for ex in last]
    assert Counter(first + second + third) == everything(paths)


def test_bad_state_lists_are_errors(paths):
    _, s0 = run_rank(paths, 0, 2, 2, stop_after=1)
    _, s1 = run_rank(paths, 1, 2, 1, stop_after=1)
    ds = ShardDataset(paths, **KW)
    ds.load_state_dicts([s0])  # rank 0's two workers: not enough for another layout
    with pytest.raises(LoaderError, match=r"rank\(s\) \[1\]"):
        next(iter(ds))
    ds.load_state_dict(s1)  # one worker's state alone cannot seed another layout
    with pytest.raises(LoaderError, match="every old rank"):
        next(iter(ds))
    with pytest.raises(LoaderError, match="seed"):
        ShardDataset(paths, seed=1).load_state_dicts([s0, s1])
    with pytest.raises(LoaderError, match="changed"):
        ShardDataset(paths[:2], **KW).load_state_dicts([s0, s1])
    with pytest.raises(LoaderError, match="not a tandem loader state"):
        ds.load_state_dicts([{"slots": {}}])


def test_mixture_elastic_resume_each_component_epoch_once(tmp_path):
    out = tmp_path / "out"
    rows = lt.make_output_dir(out, 24, languages=("en", "fr"), durations=(0.5,), per_item=4, items_per_commit=2,
                              row_group_rows=2)
    from catalogs import mix
    mix.add_mixture(out, "m", "SELECT example_id FROM examples WHERE language = 'en'", 1.0)
    mix.add_mixture(out, "m", "SELECT example_id FROM examples WHERE language = 'fr'", 1.0)
    lang = {r["example_id"]: r["language"] for r in rows}

    def rank_run(rank, world, workers, states=None, steps=5):
        ds = MixtureDataset(out, "m", rank=rank, world_size=world, seed=2, shuffle_buffer=2)
        if states is not None:
            ds.load_state_dicts(states)
        dl = StatefulDataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)
        got = []
        for k, b in enumerate(dl):
            got += [(c, int(p[3]), e, int(p[0]), int(p[1])) for c, p, e in zip(b["component"], b["_pos"],
                                                                               b["example_id"])]
            if k + 1 == steps:
                break
        return got, dl.state_dict()

    # in-process: the state after 7 items continues the very same stream
    ds = MixtureDataset(out, "m", seed=2, shuffle_buffer=2)
    it = iter(ds)
    head = [next(it)["example_id"] for _ in range(7)]
    again = MixtureDataset(out, "m", seed=2, shuffle_buffer=2)
    again.load_state_dict(json.loads(json.dumps(ds.state_dict())))
    it2, it3 = iter(again), iter(MixtureDataset(out, "m", seed=2, shuffle_buffer=2))
    assert head + [next(it2)["example_id"] for _ in range(30)] == [next(it3)["example_id"] for _ in range(37)]

    seen, states = [], []
    for rank in range(2):
        got, st = rank_run(rank, 2, 2, steps=4 + 3 * rank)
        seen += got
        states.append(st)
    for rank in range(3):
        seen += rank_run(rank, 3, 1, states, steps=8)[0]
    per, reached = {}, {}
    for comp, epoch, eid, slot, nslots in seen:
        per.setdefault((comp, epoch), []).append(eid)
        assert lang[eid] == ("en" if comp == "c0" else "fr")
        if nslots == 3:
            reached[(comp, slot)] = max(reached.get((comp, slot), 0), epoch)
    for key, ids in per.items():
        assert len(ids) == len(set(ids)), key  # never twice in one component epoch
    # once every new slot has moved past a component epoch, that epoch was delivered entirely
    complete = [(c, e) for c, e in per if all(reached.get((c, s), -1) > e for s in range(3))]
    assert complete
    for c, e in complete:
        assert len(per[(c, e)]) == 12, (c, e, len(per[(c, e)]))
