"""Dedup keeps the same example of each duplicate cluster whatever order the parts commit in."""

import pytest
from pipelines.core.config import load_config
from pipelines.core.contracts import stable_hash
from pipelines.io.files import iter_rows
from pipelines.store.commit import committed_files, manifests, retired_path, verify
from pipelines.store.writer import JobWriter

from tandem.testing.fixtures import tone_item

TEXT = "we should meet on tuesday to go over the budget for next year and the hiring plan"


def _copy(i: int, n: int) -> dict:
    """tone_item(i)'s audio under another name (new work key, source and example ids)."""
    it = tone_item(i)
    sid = stable_hash("copy-source", i, n)
    it["examples"][0].update(example_id=stable_hash("copy", i, n), source_ids=[sid])
    it.update(work_key=stable_hash("copy-work", i, n), uri=f"copy_{n}_of_{i}.wav", source_id=sid)
    it["source"].update(source_id=sid, uri=it["uri"])
    return it


def _near(i: int, text: str) -> dict:
    it = tone_item(i)
    it["examples"][0].update(text_ch0=text, text_ch1="")
    return it


def _items() -> list[dict]:
    """Two clusters (three copies of one audio; two near-duplicate transcripts) and a loner."""
    return [tone_item(1), _copy(1, 1), _copy(1, 2), _near(5, TEXT), _near(6, TEXT.replace("tuesday", "Tuesday!")),
            tone_item(7)]


def _eid(it: dict) -> str:
    return it["examples"][0]["example_id"]


CFG = load_config(overrides={"shards": {"max_items_per_commit": 1}})  # one part per item


def _state(out) -> dict:
    shards = {r["example_id"] for r in iter_rows(committed_files(out, "shards"))}
    rejected = {r["example_id"] for r in iter_rows(committed_files(out, "rejected"))}
    rej = {r["example_id"]: r["reason"] for r in iter_rows(committed_files(out, "rejections"))}
    src = {r["source_id"]: (r["status"], r["num_examples"]) for r in iter_rows(committed_files(out, "sources"))}
    dedup = {r["example_id"] for r in iter_rows(committed_files(out, "dedup"))}
    dupes = {r["example_id"] for r in iter_rows(committed_files(out, "dupes"))}
    return {"shards": shards, "rejected": rejected, "rejections": rej, "sources": src, "dedup": dedup,
            "dupes": dupes}


def _expected(items):
    audio = min(_eid(it) for it in items[:3])
    near = min(_eid(items[3]), _eid(items[4]))
    return {audio, near, _eid(items[5])}


@pytest.mark.parametrize("order", ["forward", "backward", "mixed"])
def test_the_same_examples_are_kept_in_any_commit_order(tmp_path, order):
    items = _items()
    seq = {"forward": items, "backward": items[::-1], "mixed": [items[2], items[4], items[0], items[5],
                                                                items[3], items[1]]}[order]
    w = JobWriter.from_config(tmp_path, CFG, run_id="r1", job="t", config_hash="h", dedup=True)
    for it in seq:
        w.add(it)
    w.close()
    st = _state(tmp_path)
    keep = _expected(items)
    assert st["shards"] == keep == st["dedup"]
    assert st["rejected"] == st["dupes"] == {_eid(it) for it in items} - keep
    # one dedup rejection per rejected example, none for a kept one
    assert set(st["rejections"]) == st["rejected"]
    assert {st["rejections"][_eid(it)] for it in items[:3] if _eid(it) not in keep} == {"duplicate_audio"}
    assert {st["rejections"][_eid(it)] for it in items[3:5] if _eid(it) not in keep} == {"near_duplicate_text"}
    for it in items:
        kept = _eid(it) in keep
        assert st["sources"][it["source_id"]] == (("accepted", 1) if kept else ("rejected", 0))
    assert verify(tmp_path) == []
    # settled for good: the next run's index finds nothing to move
    w2 = JobWriter.from_config(tmp_path, CFG, run_id="r2", job="t", config_hash="h", dedup=True)
    assert w2.index.settle_plan() == []
    w2.release()


def test_a_run_that_dies_before_settling_is_settled_by_the_next(tmp_path):
    a, b = tone_item(1), _copy(1, 1)
    first, second = sorted([a, b], key=_eid, reverse=True)  # the non-canonical copy commits first
    w = JobWriter.from_config(tmp_path, CFG, run_id="r1", job="t", config_hash="h", dedup=True)
    w.add(first)
    w.add(second)
    w.commit()
    w.release()  # killed before its settle
    assert _state(tmp_path)["shards"] == {_eid(first)}
    n_commits = len(manifests(tmp_path))
    w2 = JobWriter.from_config(tmp_path, CFG, run_id="r2", job="t", config_hash="h", dedup=True)
    assert [p["example_id"] for p in w2.index.settle_plan()] == sorted([_eid(a), _eid(b)])
    totals = w2.close()
    assert totals["settled"] == 2 and len(manifests(tmp_path)) == n_commits + 1  # one commit
    st = _state(tmp_path)
    assert st["shards"] == {_eid(second)} and st["rejected"] == {_eid(first)}
    assert st["rejections"] == {_eid(first): "duplicate_audio"}
    detail = next(iter_rows(committed_files(tmp_path, "rejections")))["detail"]
    assert _eid(second) in detail and "smallest example id" in detail
    # the files it replaced are retired, not deleted (gc deletes them later), and out of the globbed folders
    last = manifests(tmp_path)[-1]
    assert last["retired"] and all(not (tmp_path / rel).exists() and retired_path(tmp_path, last["commit_id"], rel).exists()
                                   for rel in last["retired"])
    assert verify(tmp_path) == []


def test_a_later_run_can_move_the_keeper_and_a_refilter_after_it_still_works(tmp_path):
    from ray_jobs.refilter import refilter
    a, b = tone_item(1), _copy(1, 1)
    big, small = sorted([a, b], key=_eid, reverse=True)
    w = JobWriter.from_config(tmp_path, CFG, run_id="r1", job="t", config_hash="h", dedup=True)
    w.add(big)
    w.close()
    w = JobWriter.from_config(tmp_path, CFG, run_id="r2", job="t", config_hash="h", dedup=True)
    w.add(small)  # the canonical copy arrives in a later run
    assert w.close()["settled"] == 2
    assert _state(tmp_path)["shards"] == {_eid(small)}
    cfg = load_config(overrides={"filters": {"enabled": ["quality"], "quality": {"dnsmos": False}}})
    refilter(tmp_path, cfg, log=lambda *a: None)
    st = _state(tmp_path)
    assert st["shards"] == {_eid(small)} and st["rejections"] == {_eid(big): "duplicate_audio"}
    # rows a re-filtering rewrote are found by their ids: a third copy still settles
    third = _copy(1, 0)
    w = JobWriter.from_config(tmp_path, CFG, run_id="r3", job="t", config_hash="h", dedup=True)
    w.add(third)
    w.close()
    keep = min(_eid(small), _eid(third))
    assert _state(tmp_path)["shards"] == {keep}
    assert set(_state(tmp_path)["rejections"]) == {_eid(a), _eid(b), _eid(third)} - {keep}


def _named(uri: str) -> dict:
    """tone_item(1) read from `uri`: the same decoded audio (source id, examples), one example
    kept and one rejected by a filter."""
    import copy

    from pipelines.core.contracts import rejection_row
    it = copy.deepcopy(tone_item(1))
    it.update(uri=uri, work_key=stable_hash("work", uri))
    it["source"].update(uri=uri)
    bad = dict(tone_item(2)["examples"][0], source_ids=[it["source_id"]])
    it["rejected_examples"] = [bad]
    it["rejections"] = [rejection_row(uri=uri, source_id=it["source_id"], example_id=bad["example_id"],
                                      stage="filter", filter="quality", reason="snr_low", detail="x")]
    return it


@pytest.mark.parametrize("settled_by", ["same run", "next run"])
@pytest.mark.parametrize("first", ["tone_1.wav", "a_copy.flac"])
def test_a_source_under_two_names_is_kept_under_the_smallest_uri(tmp_path, first, settled_by):
    from catalogs import catalog, publish
    uris = [first, ({"tone_1.wav", "a_copy.flac"} - {first}).pop()]
    w = JobWriter.from_config(tmp_path, CFG, run_id="r1", job="t", config_hash="h",
                  on_commit=lambda m: publish.ingest_commit(tmp_path, m))
    for u in uris:
        w.add(_named(u))
    if settled_by == "same run":
        w.close()
    else:
        w.commit()
        w.release()  # killed before settling
        JobWriter.from_config(tmp_path, CFG, run_id="r2", job="t", config_hash="h").close()
    src = {r["uri"]: (r["status"], r["num_examples"]) for r in iter_rows(committed_files(tmp_path, "sources"))}
    assert src == {"a_copy.flac": ("accepted", 1), "tone_1.wav": ("duplicate", 0)}
    rej = sorted((r["uri"], r["reason"]) for r in iter_rows(committed_files(tmp_path, "rejections")))
    assert rej == [("a_copy.flac", "snr_low"), ("tone_1.wav", "duplicate_source")]
    assert [r["example_id"] for r in iter_rows(committed_files(tmp_path, "shards"))] == [_eid(tone_item(1))]
    assert verify(tmp_path) == []
    if settled_by == "same run":  # the catalog, fed commit by commit, drops the retired rows
        catalog.refresh_meta(tmp_path)
        _, rows = catalog.query(tmp_path, "SELECT uri, reason FROM rejections ORDER BY uri")
        assert [tuple(r) for r in rows] == rej
        _, rows = catalog.query(tmp_path, "SELECT uri, status FROM sources ORDER BY uri")
        assert [tuple(r) for r in rows] == [("a_copy.flac", "accepted"), ("tone_1.wav", "duplicate")]
    w = JobWriter.from_config(tmp_path, CFG, run_id="r3", job="t", config_hash="h")
    assert w.index.source_plan() == [] and w.index.settle_plan() == []
    w.release()


# re-filtering: the duplicate graph holds the examples that pass, whatever order they are visited in
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
         "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
         "xray", "yankee", "zulu", "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum"]
# a chain: each end is a near-duplicate of the middle, the ends are not of each other (estimated
# Jaccard 0.91 and 0.86 with the middle, 0.77 between the ends, against the 0.82 below)
CHAIN = {"chain-a": " ".join(["one", "two", *WORDS[2:]]), "chain-b": " ".join([*WORDS[:-2], "four", "five"]),
         "chain-m": " ".join(WORDS)}
RCFG = load_config(overrides={"shards": {"max_items_per_commit": 1},
                              "filters": {"enabled": ["quality"], "quality": {"dnsmos": False},
                                          "dedup": {"jaccard": 0.82}}})


def _filtered_out(it: dict) -> dict:
    """`it` as the filter stage rejected it earlier (its stored metrics pass the filters now)."""
    from pipelines.core.contracts import rejection_row
    ex = it.pop("examples")[0]
    it["rejected_examples"] = [ex]
    it["rejections"] = [rejection_row(uri=it["uri"], source_id=it["source_id"], example_id=ex["example_id"],
                                      stage="filter", filter="quality", reason="snr_low", detail="earlier threshold")]
    return it


def _refilter_items() -> list[dict]:
    """A kept example that the filters now reject (SNR 3 dB) with a kept copy and a filtered-out
    copy; two filtered-out near-duplicates; a filtered-out chain of near-duplicates; a loner."""
    demoted = tone_item(1)
    demoted["examples"][0]["metrics"] = {"q.snr_db": 3.0}
    chain = []
    for n, (eid, text) in enumerate(CHAIN.items()):
        it = _near(10 + n, text)
        it["examples"][0]["example_id"] = eid
        chain.append(_filtered_out(it))
    return [demoted, _copy(1, 1), _filtered_out(_copy(1, 2)), _filtered_out(_near(5, TEXT)),
            _filtered_out(_near(6, TEXT.replace("tuesday", "Tuesday!"))), *chain, tone_item(7)]


def _xid(it: dict) -> str:
    return (it.get("examples") or it["rejected_examples"])[0]["example_id"]


def _rows(out) -> dict:
    """Every live row of every kind (as text, sorted): what a reader of the output sees."""
    from pipelines.store.commit import KINDS
    return {k: sorted(repr(sorted(r.items())) for r in iter_rows(committed_files(out, k))) for k in KINDS}


def _curate_and_refilter(out, items) -> dict:
    import copy

    from ray_jobs.refilter import refilter
    w = JobWriter.from_config(out, RCFG, run_id="r1", job="t", config_hash="h", dedup=True)
    for it in copy.deepcopy(items):
        w.add(it)
    w.close()
    return refilter(out, RCFG, run_id="f1", log=lambda *a: None)


@pytest.mark.parametrize("order", ["backward", "mixed"])
def test_refiltering_gives_the_same_output_whatever_order_it_visits_examples_in(tmp_path, order):
    from catalogs import catalog
    from filters.dedup import DedupParams, SignatureIndex, signature
    p = DedupParams.from_config(RCFG)
    idx = SignatureIndex(p)
    sig = {k: signature({"example_id": k, "text_ch0": t}, p) for k, t in CHAIN.items()}
    idx.add("chain-m", None, sig["chain-m"]["minhash"])
    assert [h for h, _ in idx.matches(sig["chain-a"])[1]] == ["chain-m"] == [h for h, _ in idx.matches(sig["chain-b"])[1]]
    idx = SignatureIndex(p)
    idx.add("chain-a", None, sig["chain-a"]["minhash"])
    assert idx.matches(sig["chain-b"]) == (None, [])  # so the chain's clusters need settling
    items = _refilter_items()
    seq = {"backward": items[::-1], "mixed": [items[i] for i in (4, 0, 8, 2, 7, 3, 6, 1, 5)]}[order]
    counts = {name: _curate_and_refilter(tmp_path / name, s) for name, s in (("fwd", items), (order, seq))}
    a, b = tmp_path / "fwd", tmp_path / order
    # the files hold the rows in another order, so the visits differ; what they hold does not
    assert _rows(a) == _rows(b) and counts["fwd"] == counts[order]
    st = _state(a)
    copies = sorted(_xid(it) for it in items[1:3])  # the demoted example's copies
    near = sorted(_xid(it) for it in items[3:5])
    keep = {copies[0], near[0], "chain-a", _xid(items[8])}
    assert st["shards"] == keep == st["dedup"]
    assert st["rejected"] == {_xid(it) for it in items} - keep
    assert st["dupes"] == st["rejected"] - {_xid(items[0])}  # the demoted one left the duplicate graph
    assert st["rejections"] == {_xid(items[0]): "snr_low", copies[1]: "duplicate_audio", near[1]: "near_duplicate_text",
                                "chain-b": "near_duplicate_text", "chain-m": "near_duplicate_text"}
    dupes = {r["example_id"]: r["duplicate_of"] for r in iter_rows(committed_files(a, "dupes"))}
    # judged in id order: the middle matched both ends; settling demoted chain-b, recording the keeper
    assert dupes == {copies[1]: [copies[0]], near[1]: [near[0]], "chain-m": ["chain-a", "chain-b"],
                     "chain-b": ["chain-a"]}
    c = counts["fwd"]
    assert (c["kept"], c["settled"], c["rejected_duplicate_audio"], c["rejected_near_duplicate_text"]) == (4, 1, 1, 3)
    before = {min(_xid(items[0]), _xid(items[1])), _xid(items[8])}  # kept by the curate run
    assert (c["moved_to_shards"], c["moved_to_rejected"]) == (len(keep - before), len(before - keep))
    for it in items:
        assert st["sources"][it["source_id"]] == (("accepted", 1) if _xid(it) in keep else ("rejected", 0))
    for out in (a, b):
        assert verify(out) == [] and catalog.live_files_match(out)
        _, rows = catalog.query(out, "SELECT count(*) FROM rejections WHERE example_id IS NOT NULL")
        assert rows == [(5,)]
        retired = [(m["commit_id"], rel) for m in manifests(out) for rel in m["retired"]]
        assert retired and all(retired_path(out, c, rel).exists() and not (out / rel).exists()
                               for c, rel in retired)  # left for `tandem gc`, outside the globbed folders
    # settled for good: a later run's index, loaded from the output, finds nothing to move
    w = JobWriter.from_config(a, RCFG, run_id="r2", job="t", config_hash="h", dedup=True)
    assert w.index.settle_plan() == [] and w.index.stats()["duplicate_examples"] == 4
    w.release()


def test_a_refiltering_killed_midway_is_completed_by_the_next_one(tmp_path, monkeypatch):
    from ray_jobs.refilter import refilter
    items = _refilter_items()
    _curate_and_refilter(tmp_path / "clean", items)
    out = tmp_path / "killed"
    w = JobWriter.from_config(out, RCFG, run_id="r1", job="t", config_hash="h", dedup=True)
    for it in items:
        w.add(it)
    w.close()
    commit, calls = JobWriter.commit, []

    def dies_at_the_third(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return commit(self)

    monkeypatch.setattr(JobWriter, "commit", dies_at_the_third)
    with pytest.raises(RuntimeError, match="killed"):
        refilter(out, RCFG, run_id="f1", log=lambda *a: None)
    monkeypatch.setattr(JobWriter, "commit", commit)
    # two files rewritten (with their signatures), the old signature files retired: missing, never stale
    assert 0 < len(list(iter_rows(committed_files(out, "dedup")))) < len(_state(tmp_path / "clean")["dedup"])
    refilter(out, RCFG, run_id="f1", log=lambda *a: None)
    assert _rows(out) == _rows(tmp_path / "clean") and verify(out) == []
