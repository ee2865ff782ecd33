"""The dataset report on synthetic dialogues: measured turn-taking against Fisher, durations as
h:mm:ss, per-language thresholds."""

import json
import re

import pytest
from catalogs.report import build_report, hms
from pipelines.core.config import config_hash, load_config
from pipelines.store.writer import JobWriter
from synth.job import make_items
from synth.stages import SynthesizeStage


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "out"
    cfg = load_config(overrides={"synth": {"roundtrip": {"enabled": False}}})
    st = SynthesizeStage.from_config(cfg)
    w = JobWriter.from_config(out, {"shards": {"row_group_rows": 4, "max_items_per_commit": 3, "target_bytes": 1 << 40,
                                   "compression": "zstd"}}, run_id="r", job="synth", config_hash=config_hash(cfg))
    for it in make_items(None, 8, 2, ["en", "fr", "de", "es"], cfg, config_hash(cfg), str(out)):
        w.add(st(it))
    w.close()
    idx = build_report(out, load_config())
    return idx, json.loads((idx.parent / "summary.json").read_text())


def test_turn_taking_measured_and_plotted(report):
    idx, s = report
    tt = s["turn_taking"]
    assert tt["dialogues"] == 8 and tt["fto_s"]["n"] > 20 and tt["pauses_s"]["n"] > 5
    assert tt["overlaps_s"]["n"] > 5 and tt["backchannels_per_min"]["mean"] > 0
    assert set(tt["per_minute"]) >= {"ipu", "pause", "gap", "overlap", "minutes"}
    assert tt["fisher"] == {"ipu": 53.5, "pause": 5.5, "gap": 4.4, "overlap": 3.6}
    assert (idx.parent / "turn_taking.png").stat().st_size > 10_000
    page = idx.read_text()
    assert "Fisher" in page and "turn_taking.png" in page


def test_durations_read_as_hms_and_language_thresholds(report):
    idx, s = report
    page = idx.read_text()
    assert "duration (h:mm:ss)" in page and re.search(r"<td>0:0\d:\d\d</td>", page)
    assert hms(3725.4) == "1:02:05" and hms(None) == "n/a"
    # the round-trip CER threshold differs by language: each language present gets its own line
    thr = s["thresholds"]["roundtrip_cer"]
    lim = load_config()["filters"]["trust"]["max_roundtrip_cer"]
    assert lim["fr"] != lim["default"] and lim["de"] != lim["default"]
    assert thr["synthetic"] == lim["default"] and thr["synthetic fr"] == lim["fr"] and thr["synthetic de"] == lim["de"]
    assert "synthetic en" not in thr  # same as the default


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(report):
    # a real browser lays the page out and loads every plot (Debian: apt-get install chromium)
    import shutil
    import subprocess

    from PIL import Image
    idx, _ = report
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "no chromium on PATH: apt-get install chromium"
    def shoot(page, name):
        shot = idx.parent / name
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,6000", f"--screenshot={shot}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        img = Image.open(shot).convert("L")
        assert img.size == (1280, 6000)
        hist = img.histogram()
        return shot, sum(hist[:200]) / (img.size[0] * img.size[1])

    shot, with_plots = shoot(idx, "screenshot.png")
    # the same page without its images: the plots must be what most of the ink is
    bare = idx.parent / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", idx.read_text()))
    _, text_only = shoot(bare, "screenshot-bare.png")
    print(f"\nscreenshot {shot}: {100 * with_plots:.1f}% non-white pixels, {100 * text_only:.1f}% without plots")
    assert with_plots > 3 * text_only
