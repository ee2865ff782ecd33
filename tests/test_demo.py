"""The whole chain, end to end, as a user runs it: `tandem demo OUT`, then the catalog answers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tandem.catalogs import catalog


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    r = subprocess.run([sys.executable, "-m", "tandem.ray_jobs.cli", "demo", str(out), "--synth-count", "6",
                        "--no-progress"], capture_output=True, text=True, check=False, timeout=1500)
    assert r.returncode == 0, f"demo failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    (out / "demo.log").write_text(r.stdout)
    return out


def test_demo_prints_summary_and_where_to_look(demo_out):
    log = (demo_out / "demo.log").read_text()
    assert "Where to look" in log and "catalog" in log
    s = catalog.summary(demo_out)
    kinds = {(h["kind"], h["status"]) for h in s["hours"]}
    assert ("real", "accepted") in kinds and ("synthetic", "accepted") in kinds


def test_broken_inputs_are_rejections_with_reasons(demo_out):
    expected = json.loads((demo_out / "raw" / "EXPECTED.json").read_text())
    _, rows = catalog.query(demo_out, "SELECT uri, stage, reason, detail FROM rejections")
    by_name = {}
    for uri, stage, reason, detail in rows:
        by_name.setdefault(Path(uri).name, []).append((stage, reason, detail))
    for name, want in expected.items():
        if want.startswith("rejected:"):
            assert name in by_name, f"{name} has no rejection row"
            stage, reason, detail = by_name[name][0]
            assert reason == want.split(":", 1)[1], (name, by_name[name])
            if stage == "ingest":
                assert name in detail  # the message names the file
    assert by_name["conv_pt_renamed.wav"][0][1] == "duplicate_source" or \
        by_name.get("conv_pt.wav", [(None, "")])[0][1] == "duplicate_source"


def test_every_input_is_accounted_for(demo_out):
    expected = json.loads((demo_out / "raw" / "EXPECTED.json").read_text())
    _, rows = catalog.query(demo_out, "SELECT uri, status FROM sources WHERE kind = 'real'")
    seen = {Path(u).name: s for u, s in rows}
    assert set(seen) == set(expected), set(expected) ^ set(seen)
    _, rows = catalog.query(demo_out, "SELECT count(*), count(DISTINCT work_key) FROM sources")
    assert rows[0][0] == rows[0][1]


def test_six_languages_real_and_synthetic(demo_out):
    _, rows = catalog.query(demo_out, "SELECT DISTINCT language FROM examples WHERE status='accepted' AND kind='synthetic'")
    assert {r[0] for r in rows} == {"en", "fr", "de", "es", "it", "pt"}
    _, rows = catalog.query(demo_out, "SELECT DISTINCT language FROM examples WHERE kind='real'")
    assert {"en", "de"} <= {r[0] for r in rows}


def test_rerun_resumes_without_duplicates(demo_out):
    before = catalog.table_fingerprint(demo_out)["examples"]
    r = subprocess.run([sys.executable, "-m", "tandem.ray_jobs.cli", "curate", str(demo_out / "raw"), str(demo_out),
                        "--no-progress", "--config", str(demo_out / "demo.yaml")], capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert catalog.table_fingerprint(demo_out)["examples"] == before
