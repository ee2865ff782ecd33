"""The README's glob recipes return exactly the current rows: after a re-filter, after dedup
settling, after a crash between a commit point and its roll-forward, and after `tandem gc`."""

import glob
import os

import duckdb
import pyarrow.parquet as pq
import pytest
from catalogs import catalog
from pipelines.io.files import iter_rows
from pipelines.store.commit import RETIRED, committed_files, locate, manifests, recover, retired_path
from ray_jobs.cli import main

from tandem.testing.outputs import dialogue_output, settled_output


def _glob_ids(out, kind="shards") -> list[str]:
    """example ids from the README recipe `SELECT * FROM read_parquet('OUT/shards/*.parquet')`."""
    pattern = os.path.join(str(out), kind, "*.parquet")
    if not glob.glob(pattern):
        return []
    return sorted(r[0] for r in duckdb.execute("SELECT example_id FROM read_parquet(?)", [pattern]).fetchall())


def _hf_ids(out, cache) -> list[str]:
    import datasets
    ds = datasets.load_dataset("parquet", data_files=os.path.join(str(out), "shards", "*.parquet"), split="train",
                               cache_dir=str(cache))
    return sorted(ds["example_id"])


def _catalog_ids(out, status) -> list[str]:
    _, rows = catalog.query(out, "SELECT example_id FROM examples WHERE status = ?", [status])
    return sorted(r[0] for r in rows)


def _committed_ids(out, kind) -> list[str]:
    return sorted(r["example_id"] for r in iter_rows(committed_files(out, kind), columns=["example_id"]))


def _check_exact(out):
    accepted = _committed_ids(out, "shards")
    assert accepted and _glob_ids(out) == accepted == _catalog_ids(out, "accepted")
    assert len(set(accepted)) == len(accepted)
    assert _glob_ids(out, "rejected") == _committed_ids(out, "rejected") == _catalog_ids(out, "rejected")
    for kind in ("rejections", "sources"):  # every globbed folder holds the live files only
        assert sorted(glob.glob(str(out / kind / "*.parquet"))) == sorted(map(str, committed_files(out, kind)))
    return accepted


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("glob") / "it's an output"
    return d, dialogue_output(d)["ids"]


def test_after_refilter_and_back_the_glob_is_the_accepted_rows(out, tmp_path):
    out, ids = out
    before = _check_exact(out)
    assert ids["es-noisy"] in before and ids["en-clean"] in before
    assert _hf_ids(out, tmp_path / "hf0") == before
    held = committed_files(out, "shards")[0]
    f = open(held, "rb")  # a trainer reading this shard while the re-filter retires it
    pf = pq.ParquetFile(f)
    assert main(["filter", str(out), "--set", "filters.quality.min_snr_db.synthetic=20"]) == 0
    assert not held.exists() and sorted(pf.read(columns=["example_id"]).column(0).to_pylist())
    f.close()
    assert locate(out, held.relative_to(out).as_posix()).exists()  # found again by a reader that listed it
    stricter = _check_exact(out)
    assert stricter == sorted(set(before) - {ids["es-noisy"]})
    assert _hf_ids(out, tmp_path / "hf1") == stricter  # no retired copy comes back through `datasets`
    # the retired files are kept, out of the globbed folders, until `gc`
    retired = [(m["commit_id"], rel) for m in manifests(out) for rel in m.get("retired", [])]
    assert retired and all(retired_path(out, c, rel).exists() for c, rel in retired)
    assert main(["filter", str(out), "--set", "filters.quality.min_snr_db.synthetic=10"]) == 0
    assert _check_exact(out) == before
    assert main(["gc", str(out), "--grace", "0s"]) == 0
    assert _check_exact(out) == before and not any(p.is_file() for p in (out / RETIRED).rglob("*"))
    assert _hf_ids(out, tmp_path / "hf2") == before


def test_after_settling_the_glob_is_the_keepers(tmp_path):
    res = settled_output(tmp_path)
    assert res["settled"] > 0  # settling moved examples between shards/ and rejected/
    assert _check_exact(tmp_path) == sorted(res["keep"])


def test_a_crash_after_the_commit_point_is_rolled_forward_with_its_retirements(tmp_path, monkeypatch):
    from pipelines.store import writer as W
    settled_output(tmp_path)
    keep = _check_exact(tmp_path)
    old = committed_files(tmp_path, "shards")
    w = W.JobWriter.from_config(tmp_path, {}, run_id="crash", job="t")
    w.add_rows("shards", list(iter_rows(old)))
    w.retire(old)
    monkeypatch.setattr(W, "roll_forward", lambda *a, **k: 0)  # killed right after the manifest rename
    w.commit()
    w.release()
    monkeypatch.undo()
    assert all(p.exists() for p in old)  # the old files still public, the new ones still staged
    first = recover(tmp_path)
    assert first["rolled_forward"] == 1 and recover(tmp_path) == {"rolled_forward": 0, "dropped_uncommitted": 0}
    assert not any(p.exists() for p in old)
    catalog.build(tmp_path)
    assert _check_exact(tmp_path) == keep
