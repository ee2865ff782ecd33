import os
import subprocess
import sys

import duckdb
import pyarrow.parquet as pq
import pytest
from catalogs import catalog, publish
from pipelines.io.files import sha256_file
from pipelines.store.commit import OutputError, committed_files, verify
from pipelines.store.writer import JobWriter

from tandem.testing.fixtures import rejected_item, tone_item

CFG = {"shards": {"target_bytes": 1 << 30, "row_group_rows": 2, "max_items_per_commit": 3, "compression": "zstd"}}


def write(out, items, run_id="run1", cfg=CFG):
    w = JobWriter.from_config(out, cfg, run_id=run_id, job="test", config_hash="h",
                         on_commit=lambda m: publish.ingest_commit(out, m))
    for it in items:
        w.add(it)
    totals = w.close()
    catalog.refresh_meta(out)
    return w, totals


def test_commit_groups_and_checksums(tmp_path):
    _, totals = write(tmp_path, [tone_item(i) for i in range(7)] + [rejected_item(0)])
    assert totals["examples"] == 7 and totals["commits"] == 3
    files = committed_files(tmp_path, "shards")
    assert len(files) == 3 and all(f.exists() for f in files)
    assert verify(tmp_path) == []
    # row groups small enough to stream
    pf = pq.ParquetFile(files[0])
    assert pf.num_row_groups == 2 and pf.metadata.row_group(0).num_rows == 2
    _, rows = catalog.query(tmp_path, "SELECT path, sha256, rows FROM shards ORDER BY path")
    assert [r[0] for r in rows] == sorted(f.relative_to(tmp_path).as_posix() for f in files)
    assert all(r[1] == sha256_file(tmp_path / r[0]) for r in rows)
    # corruption is detected
    with open(files[0], "r+b") as f:
        f.seek(100)
        f.write(b"XXXX")
    assert any("checksum" in p for p in verify(tmp_path))


def test_rebuild_equals_incremental(tmp_path):
    write(tmp_path, [tone_item(i) for i in range(5)] + [rejected_item(1, "empty")])
    write(tmp_path, [tone_item(i) for i in range(5, 8)], run_id="run2")
    inc = catalog.table_fingerprint(tmp_path)
    (tmp_path / "catalog.duckdb").unlink()
    catalog.build(tmp_path)
    assert catalog.table_fingerprint(tmp_path) == inc
    assert len(inc["examples"]) == 8 and len(inc["rejections"]) == 1 and len(inc["sources"]) == 9


def test_rerun_skips_committed_and_drops_duplicate_audio(tmp_path):
    w, _ = write(tmp_path, [tone_item(i) for i in range(4)])
    assert len(w.committed_work_keys()) == 4
    w2 = JobWriter.from_config(tmp_path, CFG, run_id="run2", job="test", config_hash="h")
    assert w2.committed_work_keys() == w.committed_work_keys()
    dup = tone_item(2)
    dup["work_key"] = "another-name"
    dup["uri"] = "copy_of_tone_2.wav"
    w2.add(dup)
    t = w2.close()
    assert t["duplicates"] == 1 and t["examples"] == 0
    catalog.build(tmp_path)
    _, rows = catalog.query(tmp_path, "SELECT uri, reason FROM rejections")
    # the smallest uri keeps the source, even against one an earlier run committed
    assert rows == [("tone_2.wav", "duplicate_source")]
    _, rows = catalog.query(tmp_path, "SELECT count(*), count(DISTINCT example_id) FROM examples")
    assert rows == [(4, 4)]


CRASH = """
import os, sys
from pipelines.io.files import sha256_file
from pipelines.store.commit import OutputError, committed_files, verify
from pipelines.store.writer import JobWriter
from tandem.testing.fixtures import tone_item
out = sys.argv[1]
real_replace = os.replace
def dying_replace(src, dst):
    # die right after the first data file of the second commit is staged, before its manifest
    if "_staging" in str(dst) and "000001" in str(dst):
        os._exit(9)
    return real_replace(src, dst)
os.replace = dying_replace
w = JobWriter.from_config(out, {"shards": {"max_items_per_commit": 2}}, run_id="crash", job="t", config_hash="h")
for i in range(6):
    w.add(tone_item(i))
w.close()
"""


def test_interrupted_write_leaves_nothing_visible_and_resume_completes(tmp_path):
    r = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], capture_output=True, check=False)
    assert r.returncode == 9
    # the first commit is visible; the crashed second one is not, not even as a file
    assert len(committed_files(tmp_path, "shards")) == 1
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == \
        [committed_files(tmp_path, "shards")[0].name]
    assert not any(p.name.startswith(".") for p in (tmp_path / "shards").iterdir())
    # resume: recovery drops the staged leftovers, committed keys are skipped
    w = JobWriter.from_config(tmp_path, CFG, run_id="resume", job="t", config_hash="h")
    assert w.recovered["dropped_uncommitted"] == 1
    for i in range(6):
        it = tone_item(i)
        if not w.is_committed(it["work_key"]):
            w.add(it)
    w.close()
    catalog.build(tmp_path)
    _, rows = catalog.query(tmp_path, "SELECT count(*), count(DISTINCT example_id) FROM examples")
    assert rows == [(6, 6)]
    assert not (tmp_path / "_staging").exists() or not any((tmp_path / "_staging").iterdir())


def test_unwritable_output_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits: make the output path a file instead
        target = tmp_path / "out"
        target.write_text("not a dir")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(OutputError, match=str(target)):
        JobWriter.from_config(target, CFG, run_id="x", job="t")


def test_duckdb_and_hf_datasets_read_a_shard(tmp_path):
    write(tmp_path, [tone_item(i) for i in range(3)])
    glob = str(tmp_path / "shards" / "*.parquet")
    n, first_word = duckdb.sql(f"SELECT count(*), min(words[1].word) FROM read_parquet('{glob}')").fetchall()[0]
    assert n == 3 and first_word == "hello0"
    import datasets
    ds = datasets.load_dataset("parquet", data_files=glob, split="train")
    assert len(ds) == 3 and ds[0]["words"][0]["channel"] in (0, 1)
    # the README recipe: wrap FLAC bytes as an Audio feature
    ds = ds.map(lambda r: {"audio": {"bytes": r["audio"], "path": None}})
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    assert ds.features["audio"].__class__.__name__ == "Audio"
    import io

    import soundfile as sf
    x, sr = sf.read(io.BytesIO(ds[0]["audio"]["bytes"]))
    assert sr == 24000 and x.shape[1] == 2


def _copy_of(i: int, n: int, **kw) -> dict:
    """tone_item(i)'s audio under another name: new work key, source and example ids."""
    from pipelines.core.contracts import stable_hash
    it = tone_item(i, **kw)
    sid = stable_hash("copy-source", i, n)
    ex = it["examples"][0]
    ex.update(example_id=stable_hash("copy", i, n), source_ids=[sid])
    it.update(work_key=stable_hash("copy-work", i, n), uri=f"copy_{n}_of_{i}.wav", source_id=sid)
    it["source"].update(source_id=sid, uri=it["uri"])
    return it


def test_dedup_signatures_are_committed_and_reloaded_by_the_next_run(tmp_path):
    from pipelines.core.config import load_config
    from pipelines.io.files import iter_rows
    cfg = load_config(overrides={"shards": {"max_items_per_commit": 2}})
    w = JobWriter.from_config(tmp_path, cfg, run_id="r1", job="t", config_hash="h", dedup=True)
    long = "we should meet on tuesday to go over the budget for next year and the hiring plan"
    near = tone_item(5)
    near["examples"][0].update(text_ch0=long, text_ch1="")
    near2 = tone_item(6)
    near2["examples"][0].update(text_ch0=long.replace("tuesday", "Tuesday!"), text_ch1="")
    for it in (tone_item(1), _copy_of(1, 1), near, near2):
        w.add(it)
    t = w.close()
    assert (t["examples"], t["rejected_examples"]) == (2, 2)
    rej = {r["reason"] for r in iter_rows(committed_files(tmp_path, "rejections"))}
    assert rej == {"duplicate_audio", "near_duplicate_text"}
    sigs = list(iter_rows(committed_files(tmp_path, "dedup")))
    assert len(sigs) == 2 and all(len(s["audio_hash"]) == 16 for s in sigs)
    assert sum(s["minhash"] is not None for s in sigs) == 1  # "hello1 world1" is too short to compare
    assert not (tmp_path / "_state" / "dedup").exists()  # no index pickled at each commit
    # the next run loads the committed signatures: another copy is still caught
    w2 = JobWriter.from_config(tmp_path, cfg, run_id="r2", job="t", config_hash="h", dedup=True)
    # kept and rejected signatures both load (3 distinct audio hashes), and the two edges
    assert w2.index.stats()["signatures"] == 3 and w2.index.stats()["duplicate_examples"] == 2
    assert len(list(iter_rows(committed_files(tmp_path, "dupes")))) == 2
    w2.add(_copy_of(1, 2))
    assert w2.close()["rejected_examples"] == 1


def test_refilter_rechecks_a_promoted_example_against_the_index(tmp_path):
    from pipelines.core.config import load_config
    from pipelines.core.contracts import rejection_row
    from pipelines.io.files import iter_rows
    from ray_jobs.refilter import refilter
    cfg = load_config(overrides={"filters": {"enabled": ["quality"], "quality": {"dnsmos": False}}})
    w = JobWriter.from_config(tmp_path, cfg, run_id="r1", job="t", config_hash="h", dedup=True)
    w.add(tone_item(1))
    for n, it in ((1, _copy_of(1, 1)), (2, tone_item(2))):  # filtered out earlier: a copy, and a new one
        ex = it.pop("examples")[0]
        it["rejected_examples"] = [ex]
        it["rejections"] = [rejection_row(uri=it["uri"], source_id=it["source_id"], example_id=ex["example_id"],
                                          stage="filter", filter="quality", reason="snr_low", detail="x")]
        w.add(it)
    w.close()
    counts = refilter(tmp_path, cfg, log=lambda *a: None)
    # the promoted copy joins the cluster of the kept one, which keeps its smallest example id
    a, c = tone_item(1)["examples"][0]["example_id"], _copy_of(1, 1)["examples"][0]["example_id"]
    keep, drop = min(a, c), max(a, c)
    assert counts["moved_to_shards"] == 1 + (c < a) and counts["moved_to_rejected"] == (c < a)
    assert counts["rejected_duplicate_audio"] == 1 and counts["kept"] == 2
    shards = {r["example_id"] for r in iter_rows(committed_files(tmp_path, "shards"))}
    assert shards == {keep, tone_item(2)["examples"][0]["example_id"]}
    reasons = {r["example_id"]: r["reason"] for r in iter_rows(committed_files(tmp_path, "rejections"))}
    assert reasons == {drop: "duplicate_audio"}
    dedup = {r["example_id"] for r in iter_rows(committed_files(tmp_path, "dedup"))}
    assert dedup == shards  # the promoted ones joined the index
    assert [(r["example_id"], r["duplicate_of"]) for r in iter_rows(committed_files(tmp_path, "dupes"))] == \
        [(drop, [keep])]
