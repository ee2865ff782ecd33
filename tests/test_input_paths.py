"""Inputs are stored by absolute path (and as the user named them); a rerun from another working
directory finds the same work keys and skips everything."""

import functools
import os

import duckdb
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from pipelines.core.config import config_hash, load_config
from pipelines.curate.chain import make_items
from pipelines.curate.ingest import IngestStage
from pipelines.io.inputs import InputListing, list_inputs
from pipelines.store.commit import committed_files
from ray_jobs.runner import run_job


def _inputs(d):
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav"):
        sf.write(d / name, (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000)
    return d


def test_listing_is_absolute_and_keeps_the_given_name(tmp_path, monkeypatch):
    d = _inputs(tmp_path / "data" / "in")
    (tmp_path / "data" / "m.jsonl").write_text('{"uri": "in/./a.wav"}\n')
    monkeypatch.chdir(tmp_path / "data")
    for spec, given in (("in", ["in/a.wav", "in/b.wav"]), ("in/*.wav", ["in/a.wav", "in/b.wav"]),
                        ("in/a.wav", ["in/a.wav"]), ("m.jsonl", ["in/./a.wav"])):
        got = list(list_inputs(spec))
        assert [u.given for u in got] == given, spec
        assert got == [str((d / g.rsplit("/", 1)[-1]).resolve()) for g in given], spec
        assert all(os.path.isabs(u) for u in got)
    # a listing task on a Ray worker lists against the driver's directory, wherever it runs
    here = list(list_inputs("in/*.wav"))
    monkeypatch.chdir(tmp_path)
    there = list(list_inputs("in/*.wav", cwd=str(tmp_path / "data")))
    assert there == here and [u.given for u in there] == [u.given for u in here]


def test_rerun_from_another_directory_resumes(tmp_path, monkeypatch):
    d = _inputs(tmp_path / "data" / "in")
    out = tmp_path / "out"
    cfg = load_config()
    cfg["resources"].update(local=True, progress=False)
    h = config_hash(cfg)

    def job(spec):
        listing = InputListing(spec, functools.partial(make_items, cfg=cfg, cfg_hash=h, out_dir=str(out)))
        return run_job("curate", listing, [IngestStage.from_config(cfg)], cfg, out, argv=["test"])

    monkeypatch.chdir(tmp_path / "data")
    first = job("in")
    assert first["items"] == 2
    monkeypatch.chdir(tmp_path)  # the same inputs named from elsewhere
    again = job("data/in")
    assert (again["items"], again["skipped"]) == (0, 2)
    monkeypatch.chdir(d)
    assert job(".")["skipped"] == 2
    rows = pq.read_table(committed_files(out, "sources")).to_pylist()
    assert sorted((r["uri"], r["uri_given"]) for r in rows) == [
        (str((d / "a.wav").resolve()), "in/a.wav"), (str((d / "b.wav").resolve()), "in/b.wav")]
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    assert sorted(con.execute("SELECT uri_given FROM sources").fetchall()) == [("in/a.wav",), ("in/b.wav",)]
