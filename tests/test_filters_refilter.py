"""FilterStage into shards, then `tandem filter` with a stricter threshold and back (no models)."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from filters.stage import FilterStage, stored_metrics
from pipelines.core.config import load_config
from pipelines.io.files import iter_rows
from pipelines.store.commit import committed_files
from pipelines.store.writer import JobWriter

from tandem.testing import filters as T

# "noisy" is "clean" with noise added (the same script, the same recording): a near-duplicate of
# text and of sound under the default dedup, which re-filtering applies to every example that
# passes; these tests are about the thresholds
BASE = {"filters": {"enabled": ["quality", "trust"], "quality": {"dnsmos": False},
                    "trust": {"compute_roundtrip": False}, "dedup": {"near_text": False, "near_audio": False}}}


def stricter(snr):
    return load_config(overrides={**BASE, "filters": {**BASE["filters"], "quality": {
        "dnsmos": False, "min_snr_db": {"real": 10.0, "synthetic": snr}}}})


@pytest.fixture(scope="session")
def out(tmp_path_factory):
    cfg = load_config(overrides=BASE)
    audio, words, texts = T.dialogue("en")
    noisy = np.stack([T.add_noise(audio[0], 15, seed=1), T.add_noise(audio[1], 15, seed=2)])
    import json

    from pipelines.core.turntaking import measure
    params = json.dumps({"gap_s": [0.3], "overlap": 0.0, "turn_taking": measure(words)})
    exs = [T.example(a, kind="synthetic", language="en", words=words, text=tuple(texts), example_id=eid,
                     roundtrip_cer=0.03, params=params)
           for eid, a in (("clean", audio), ("noisy", noisy))]
    exs.append(T.example(T.white_noise(3, seed=3), kind="synthetic", language="en", example_id="noise",
                         words=words[:2], text=("good morning", ""), roundtrip_cer=0.9))
    d = tmp_path_factory.mktemp("refilter")
    w = JobWriter.from_config(d, cfg, run_id="run1", job="synth")
    st = FilterStage.from_config(cfg)
    for i, ex in enumerate(exs):
        w.add(st(T.item([ex], uri=f"script-{i}", kind="synthetic")))
    w.close()
    return d


def ids(out, kind):
    return sorted(r["example_id"] for r in iter_rows(committed_files(out, kind), columns=["example_id"]))


def test_stage_wrote_metrics_and_rejections(out):
    assert ids(out, "shards") == ["clean", "noisy"] and ids(out, "rejected") == ["noise"]
    rej = list(iter_rows(committed_files(out, "rejections")))
    assert [(r["example_id"], r["reason"]) for r in rej] == [("noise", "noise")]
    row = next(iter_rows(committed_files(out, "shards")))
    assert np.isfinite(row["snr_db"]) and stored_metrics(row)["q.snr_db"] == pytest.approx(row["snr_db"], rel=1e-5)


def test_refilter_moves_rows_and_back(out):
    from ray_jobs.refilter import refilter
    c = refilter(out, stricter(25.0), log=lambda *a: None)
    assert c["moved_to_rejected"] == 1 and c["rejected_snr_low"] == 1
    assert ids(out, "shards") == ["clean"] and ids(out, "rejected") == ["noise", "noisy"]
    reasons = {r["example_id"]: r["reason"] for r in iter_rows(committed_files(out, "rejections"))}
    assert reasons == {"noise": "noise", "noisy": "snr_low"}
    src = {r["uri"]: (r["status"], r["num_examples"]) for r in iter_rows(committed_files(out, "sources"))}
    assert src == {"script-0": ("accepted", 1), "script-1": ("rejected", 0), "script-2": ("rejected", 0)}
    # the retired files are gone from the committed view; every live file reads
    assert all(pq.ParquetFile(p).metadata.num_rows >= 0 for p in committed_files(out, "shards"))
    c = refilter(out, load_config(overrides=BASE), log=lambda *a: None)
    assert c["moved_to_shards"] == 1
    assert ids(out, "shards") == ["clean", "noisy"] and ids(out, "rejected") == ["noise"]
    src = {r["uri"]: r["status"] for r in iter_rows(committed_files(out, "sources"))}
    assert src == {"script-0": "accepted", "script-1": "accepted", "script-2": "rejected"}
    from catalogs import catalog
    assert catalog.live_files_match(out)
    _, rows = catalog.query(out, "SELECT count(*), count(DISTINCT uri) FROM sources")
    assert rows == [(3, 3)]


def test_report(out):
    import json

    from catalogs.report import build_report
    idx = build_report(out, load_config(overrides=BASE))
    s = json.loads((idx.parent / "summary.json").read_text())
    tot = {r["status"]: r["examples"] for r in s["totals"]}
    assert tot == {"accepted": 2, "rejected": 1}
    assert [r["reason"] for r in s["rejections"]] == ["noise"]
    for p in s["plots"]:
        assert (idx.parent / p).stat().st_size > 5000
    assert "turn_taking.png" in s["plots"] and s["turn_taking"]["dialogues"] == 2
    assert "Rejection reasons" in idx.read_text()


def test_tandem_filter_starts_from_the_runs_stored_config(out, capsys):
    import json
    import shutil

    from pipelines.core.config import config_json
    from pipelines.io.files import write_json_atomic
    from ray_jobs.cli import main
    from ray_jobs.filter import filter_config
    shutil.rmtree(out / "runs", ignore_errors=True)  # the records of the re-filtering above
    stored = load_config(overrides=BASE)
    write_json_atomic({"run_id": "run1", "job": "synth", "status": "finished", "finished_at": "2026-01-01T00:00:00Z",
                       "config": config_json(stored)}, out / "runs" / "run1.json")
    cfg, origin = filter_config(out, None, ["filters.quality.min_snr_db.synthetic=25"])
    assert origin.endswith("run1.json")
    assert cfg["filters"]["enabled"] == ["quality", "trust"] and cfg["filters"]["quality"]["dnsmos"] is False
    assert cfg["filters"]["quality"]["min_snr_db"]["synthetic"] == 25
    assert load_config()["filters"]["enabled"] != ["quality", "trust"]  # the defaults would differ
    # the command itself: only the named threshold changes
    assert main(["filter", str(out), "--set", "filters.quality.min_snr_db.synthetic=25", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["moved_to_rejected"] == 1 and counts["rejected_snr_low"] == 1
    assert ids(out, "shards") == ["clean"]
    # the filter recorded its run: the next one starts from it (SNR 25 stays unless set again)
    assert filter_config(out)[0]["filters"]["quality"]["min_snr_db"]["synthetic"] == 25
    assert main(["filter", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["moved_to_shards"] == 0
    assert main(["filter", str(out), "--set", "filters.quality.min_snr_db.synthetic=10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["moved_to_shards"] == 1
    assert ids(out, "shards") == ["clean", "noisy"]
    shutil.rmtree(out / "runs")
