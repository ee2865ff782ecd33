import json
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from pipelines.io.audio import decode_flac
from pipelines.train import LoaderError, ShardDataset, collate, shard_paths, shuffle_plan
from pipelines.train.tokens import ByteTokenizer, frame_of
from torch.utils.data import DataLoader

from tandem.testing import loader as lt

TOK = ByteTokenizer()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    paths = lt.make_shards(d, n_shards=3, per_shard=10, row_group_size=4, durations=(1.0, 1.5, 2.0))
    rows = {r["example_id"]: r for p in paths for r in pq.read_table(p).to_pylist()}
    return d, paths, rows


def batches(ds, num_workers=2, batch_size=3, limit=None):
    out = []
    dl = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    for b in dl:
        out.append(b)
        if limit is not None and len(out) == limit:
            break
    return out


def ids(bs):
    return [i for b in bs for i in b["example_id"]]


def by_slot(bs):
    d = defaultdict(list)
    for b in bs:
        for eid, pos in zip(b["example_id"], b["_pos"].tolist()):
            d[pos[0]].append((eid, pos[5], pos[6]))
    return d


def test_sources(shards):
    d, paths, _ = shards
    assert shard_paths(d) == paths  # a directory without commits: shards/*.parquet or the files
    assert shard_paths(str(d / "shard-*.parquet")) == paths
    assert shard_paths(paths[:2]) == paths[:2]
    with pytest.raises(LoaderError, match="glob matches no files"):
        shard_paths(str(d / "nothing-*.parquet"))


def test_two_ranks_two_workers_every_example_once_per_epoch(shards):
    _d, paths, rows = shards
    epochs = {}
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ds = ShardDataset(paths, rank=rank, world_size=2, seed=7, epoch=epoch, shuffle_buffer=5)
            seen += ids(batches(ds))
        assert Counter(seen) == Counter(rows.keys())  # exactly once: no overlap, no gap
        epochs[epoch] = seen
    assert epochs[0] != epochs[1]
    # each epoch reproducible, and rank streams disjoint
    again = ids(batches(ShardDataset(paths, rank=0, world_size=2, seed=7, epoch=1, shuffle_buffer=5)))
    assert again == epochs[1][: len(again)]


def test_unshuffled_is_file_order(shards):
    _, paths, rows = shards
    got = ids(batches(ShardDataset(paths, shuffle=False), num_workers=0))
    assert got == list(rows.keys())


@pytest.mark.parametrize("crop,max_dur", [("random", 0.8), ("chunk", 0.5)])
def test_resume_gives_exactly_the_rest(shards, tmp_path, crop, max_dur):
    from torchdata.stateful_dataloader import StatefulDataLoader
    _, paths, _ = shards
    kw = {"rank": 1, "world_size": 2, "seed": 3, "epoch": 2, "shuffle_buffer": 6, "max_duration_s": max_dur, "crop": crop}
    full = batches(ShardDataset(paths, **kw))
    dl = StatefulDataLoader(ShardDataset(paths, **kw), batch_size=3, num_workers=2, collate_fn=collate)
    k, head = 4, []
    for b in dl:
        head.append(b)
        if len(head) == k:
            break
    (tmp_path / "state.json").write_text(json.dumps(dl.state_dict()))  # survives a JSON checkpoint
    ds2 = ShardDataset(paths, **kw)
    ds2.load_state_dicts([json.loads((tmp_path / "state.json").read_text())])
    rest = batches(ds2)
    full_slots, head_slots, tail = by_slot(full), by_slot(head), by_slot(rest)
    for slot in full_slots:  # each worker continues its own stream where it stopped
        assert head_slots.get(slot, []) + tail.get(slot, []) == full_slots[slot]
    assert sorted(ids(head) + ids(rest)) == sorted(ids(full))
    ds2.set_epoch(3)
    assert ds2.state_dict()["own"]["epochs"] == {} and ds2.state_dict()["epoch"] == 3


def test_crop_audio_words_and_tokens_stay_together(shards):
    _, paths, rows = shards
    ds = ShardDataset(paths, max_duration_s=0.8, crop="random", tokenizer=TOK, seed=5)
    offsets = {}
    for ex in ds:
        row = rows[ex["example_id"]]
        full, sr = decode_flac(row["audio"])
        off = round(ex["offset_s"] * sr)
        assert abs(ex["offset_s"] * 12.5 - round(ex["offset_s"] * 12.5)) < 1e-9  # on the frame grid
        np.testing.assert_array_equal(ex["audio"].numpy(), full[:, off:off + ex["audio"].shape[1]])
        assert ex["audio"].shape[1] == min(round(0.8 * sr), full.shape[1])
        want = [(w["word"], w["start_s"] - ex["offset_s"]) for w in row["words"]
                if ex["offset_s"] <= w["start_s"] < ex["offset_s"] + ex["duration_s"]]
        got = [(w["word"], w["start_s"]) for ch in ex["words"] for w in ch]
        assert sorted(got) == sorted(want)
        toks = ex["text_tokens"]
        assert toks.shape == (2, int(np.ceil(ex["audio"].shape[1] / sr * 12.5 - 1e-9)))
        for ch, ws in enumerate(ex["words"]):
            prev_end = 0
            for w in ws:
                assert 0 <= w["start_s"] and w["end_s"] <= ex["duration_s"] + 1e-9
                # the word's tone is on its own channel of the cropped audio
                a = ex["audio"][ch, round(w["start_s"] * sr): round(w["end_s"] * sr)]
                assert len(a) == 0 or float(a.abs().max()) > 0.1
                f = frame_of(w["start_s"])
                if f >= prev_end:
                    assert toks[ch, f].item() == TOK(w["word"])[0]
                prev_end = max(f, prev_end) + len(TOK(w["word"]))
        offsets[ex["example_id"]] = ex["offset_s"]
    assert len(set(offsets.values())) > 2  # random offsets actually vary
    again = {ex["example_id"]: ex["offset_s"] for ex in ShardDataset(paths, max_duration_s=0.8, seed=5)}
    assert again == offsets  # seeded
    other = {ex["example_id"]: ex["offset_s"] for ex in ShardDataset(paths, max_duration_s=0.8, seed=5, epoch=1)}
    assert other != offsets


def test_random_crops_decode_only_their_frames(shards, monkeypatch):
    import soundfile as sf
    _, paths, rows = shards
    asked = []
    orig = sf.SoundFile.read

    def spy(self, frames=-1, *a, **k):
        asked.append(frames)
        return orig(self, frames, *a, **k)
    monkeypatch.setattr(sf.SoundFile, "read", spy)
    exs = list(ShardDataset(paths, max_duration_s=0.8, seed=1))
    sr = 16000
    assert len(asked) == len(exs) == len(rows)
    assert all(0 < f <= round(0.8 * sr) for f in asked)  # seek to the crop, decode its frames only
    assert sum(asked) < 0.6 * sum(r["num_samples"] for r in rows.values())


def test_first_token_of_each_word_on_its_start_frame(shards):
    _, paths, _rows = shards
    ds = ShardDataset(paths, tokenizer=TOK, shuffle=False)
    checked = 0
    for ex in ds:
        for ch, ws in enumerate(ex["words"]):
            prev_end = 0
            for w in ws:
                t = TOK(w["word"])
                f = frame_of(w["start_s"])
                if f >= prev_end:  # not pushed by the previous word
                    assert ex["text_tokens"][ch, f].item() == t[0]
                    checked += 1
                prev_end = max(f, prev_end) + len(t)
    assert checked > 50


def test_chunks_cover_the_example_and_resample(shards):
    _, paths, rows = shards
    ds = ShardDataset(paths[:1], max_duration_s=0.4, crop="chunk", min_chunk_s=0.0, shuffle=False)
    parts = defaultdict(list)
    for ex in ds:
        parts[ex["example_id"]].append(ex)
    for eid, exs in parts.items():
        full, _sr = decode_flac(rows[eid]["audio"])
        np.testing.assert_array_equal(np.concatenate([e["audio"].numpy() for e in exs], axis=1), full)
        assert [e["offset_s"] for e in exs] == pytest.approx([0.4 * i for i in range(len(exs))])
        assert sum(len(ch) for e in exs for ch in e["words"]) == len(rows[eid]["words"])
    ds = ShardDataset(paths[:1], sample_rate=24000, tokenizer=TOK, max_duration_s=1.0, crop="start")
    for ex in ds:
        assert ex["sample_rate"] == 24000 and ex["audio"].shape[1] == 24000
        assert ex["text_tokens"].shape[1] == 13


def test_catalog_query_selects_accepted_examples(tmp_path):
    out = tmp_path / "out"
    rows = lt.make_output_dir(out, 12, languages=("en", "fr"), durations=(1.0,))
    fr = {r["example_id"] for r in rows if r["language"] == "fr"}
    ds = ShardDataset.from_sql(out, "SELECT example_id FROM examples WHERE language = 'fr'", shuffle_buffer=3)
    got = [ex["example_id"] for ex in ds]
    assert Counter(got) == Counter(fr)
    assert {ex["example_id"] for ex in ShardDataset(out)} == {r["example_id"] for r in rows}
    with pytest.raises(LoaderError, match="must select example_id"):
        ShardDataset.from_sql(out, "SELECT language FROM examples")
    with pytest.raises(LoaderError, match="no catalog"):
        ShardDataset.from_sql(tmp_path, "SELECT example_id FROM examples")


def test_catalog_selection_places_rows_without_scanning(tmp_path, monkeypatch):
    from pipelines.store.commit import committed_files
    out = tmp_path / "out"
    rows = lt.make_output_dir(out, 12, languages=("en", "fr", "fr"), durations=(0.5,), row_group_rows=2)
    fr = {r["example_id"] for r in rows if r["language"] == "fr"}
    reads = []
    orig = pq.ParquetFile.read_row_group

    def counting(self, *a, **k):
        reads.append(a)
        return orig(self, *a, **k)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    ds = ShardDataset.from_sql(out, "SELECT example_id FROM examples WHERE language = 'fr'")
    assert reads == []  # placed by the catalog's (shard, row) and the footers alone
    assert sum(u.n for u in ds.units) == len(fr) and all(u.rows is not None for u in ds.units)
    assert Counter(ex["example_id"] for ex in ds) == Counter(fr)
    assert len(reads) == len({(u.path, u.row_group) for u in ds.units})  # only row groups holding them
    # a shard rewritten behind the catalog's back: an error, not other examples
    shard = min(committed_files(out, "shards"))
    t = pq.read_table(shard)
    pq.write_table(t.take(list(range(t.num_rows))[::-1]), shard, row_group_size=2)
    with pytest.raises(LoaderError, match="does not match its commit manifest"):
        list(ShardDataset.from_sql(out, "SELECT example_id FROM examples WHERE language = 'fr'"))
    # ... and with its manifest updated too (the catalog alone is stale): the rows are checked
    import json

    from pipelines.io.files import sha256_file
    from pipelines.store.commit import COMMITS
    rel = shard.relative_to(out).as_posix()
    for m in (out / COMMITS).glob("*.json"):
        d = json.loads(m.read_text())
        if rel in d["files"]:
            d["files"][rel]["sha256"] = sha256_file(shard)
            m.write_text(json.dumps(d))
    with pytest.raises(LoaderError, match="stale catalog"):
        list(ShardDataset.from_sql(out, "SELECT example_id FROM examples WHERE language = 'fr'"))


def test_bad_inputs_name_the_file(tmp_path, shards):
    _, paths, rows = shards
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(LoaderError, match="bad.parquet"):
        ShardDataset([bad])
    r = dict(next(iter(rows.values())))
    r["audio"] = b"garbage"
    p = lt.write_shard(tmp_path / "corrupt.parquet", [r])
    with pytest.raises(LoaderError, match=r"corrupt.parquet.*cannot decode audio"):
        list(ShardDataset([p]))
    with pytest.raises(LoaderError, match="crop"):
        ShardDataset(paths, crop="middle")


def test_streams_row_groups_and_buffer_bounds_memory(shards, monkeypatch):
    _, paths, _ = shards

    def boom(*a, **k):
        raise AssertionError("whole-file read")
    monkeypatch.setattr(pq.ParquetFile, "read", boom)
    monkeypatch.setattr(pq, "read_table", boom)
    ds = ShardDataset(paths, shuffle_buffer=5)
    loaded, emitted, peak = 0, 0, 0
    orig = ShardDataset._read_unit

    def counting(self, unit):
        nonlocal loaded
        rows = orig(self, unit)
        loaded += len(rows)
        return rows
    monkeypatch.setattr(ShardDataset, "_read_unit", counting)
    for _ in ds:
        emitted += 1
        peak = max(peak, loaded - emitted)
    assert emitted == 30
    assert peak <= 5 + 4  # buffer + one row group


def test_shuffle_plan_is_a_permutation():
    sizes = [4, 4, 2, 3]
    plan = list(shuffle_plan(sizes, 5, np.random.default_rng(0)))
    assert sorted(plan) == [(u, r) for u, n in enumerate(sizes) for r in range(n)]
    assert plan != sorted(plan)
    assert list(shuffle_plan(sizes, 5, None)) == sorted(plan)


def test_collate_pads_and_reports_lengths(shards):
    _, paths, _ = shards
    exs = list(ShardDataset(paths[:1], tokenizer=TOK, shuffle=False))[:3]
    b = collate(exs)
    assert b["audio"].shape == (3, 2, max(e["audio"].shape[1] for e in exs))
    assert b["audio_lengths"].tolist() == [e["audio"].shape[1] for e in exs]
    assert b["token_lengths"].tolist() == [e["text_tokens"].shape[1] for e in exs]
    for i, e in enumerate(exs):
        n, f = e["audio"].shape[1], e["text_tokens"].shape[1]
        assert (b["audio"][i, :, n:] == 0).all() and (b["text_tokens"][i, :, f:] == -1).all()
        assert (b["text_tokens"][i, :, :f] == e["text_tokens"]).all()
    assert b["_pos"].shape == (3, 7) and b["example_id"] == [e["example_id"] for e in exs]


@pytest.mark.slow  # 3 runs x 2 ranks x 2 workers of process start-up: 20-40 s on 2 shared cores
def test_train_loop_example_resumes_exactly():
    """bench/train_loop_example.py (the loop in docs/TRAINERS.md): 2 ranks x 2 workers on a mixture,
    crash after step 3, resume from the step-2 checkpoint: every step sees what an uninterrupted run saw;
    resumed on 3 ranks x 1 worker instead, no example comes twice in a component epoch."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "bench" / "train_loop_example.py"
    r = subprocess.run([sys.executable, str(script), "--verify", "--steps", "5", "--ckpt-every", "2",
                        "--crash-at", "3", "--elastic", "3", "1"], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resume check: OK" in r.stdout
    assert "elastic resume 2x2 -> 3x1 from step 2:" in r.stdout and ", 0 twice: OK" in r.stdout
    assert r.stdout.count("identical") == 2
