"""Hostile and unlucky inputs (issue 20): each case fails on the code before the fix.

Inputs are built on the fly in tmp dirs: playlists posing as .wav, NaN samples, 8 channels,
garbage lock files, duplicate and malformed manifests, tampered shards, stacked SQL.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from tandem.pipelines.core.config import config_hash, load_config
from tandem.pipelines.core.stage import InputError, Stage
from tandem.pipelines.curate.chain import make_items as curate_items
from tandem.pipelines.curate.ingest import IngestStage
from tandem.ray_jobs.runner import run_job

from tandem.testing.toy import expected_example_ids, make_items, toy_config, toy_stages

SR = 16000


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def _speech_like(seconds: float = 2.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def _ingest(cfg, path, out):
    (item,) = curate_items([str(path)], cfg, config_hash(cfg), str(out))
    return IngestStage.from_config(cfg)(item)


def _rejection(item) -> dict:
    assert item["status"] == "rejected", item.get("retry")
    (r,) = item["rejections"]
    return r


# ---- case 12: a bug is never the data's fault -----------------------------------------------------

class BuggyOn(Stage):
    """A stage with a bug that shows on one item (a KeyError: not an input fault)."""

    name = "buggy"

    def __init__(self, bad: set[str]):
        super().__init__()
        self.bad = bad

    def process(self, item):
        if item["toy_key"] in self.bad:
            return {}["no such key"]
        if item["toy_key"] == "toy-2":
            raise InputError(f"{item['uri']}: no speech in it", reason="no_speech")
        return item


def test_case12_a_stage_bug_is_retried_not_committed_as_a_rejection(tmp_path, capsys):
    from tandem.pipelines.store.commit import manifests
    from tandem.ray_jobs.jobs import report_retries
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    res = run_job("toy", make_items(4, cfg), [BuggyOn({"toy-1"}), *toy_stages(cfg)], cfg, out)
    (failed,) = res["retry"]
    assert failed["uri"] == "toy://toy-1" and failed["kind"] == "error" and "KeyError" in failed["detail"]
    assert res["rejections"] == 1  # only the named input fault (toy-2) is a rejection
    assert all("toy://toy-1" not in str(m["work_keys"]) for m in manifests(out))
    assert report_retries(res) == 3
    err = capsys.readouterr().err
    assert "toy://toy-1: buggy: KeyError" in err and "not a fault of the input" in err
    # the next run (bug fixed) retries it; the input fault stays committed
    res2 = run_job("toy", make_items(4, cfg), [BuggyOn(set()), *toy_stages(cfg)], cfg, out)
    assert res2["skipped"] == 3 and res2["items"] == 1 and not res2["retry"]
    from tandem.catalogs import catalog
    _, rows = catalog.query(out, "SELECT example_id FROM examples WHERE status = 'accepted'")
    assert {r[0] for r in rows} == expected_example_ids(4, cfg) - expected_example_ids(1, cfg, start=2)
    _, rej = catalog.query(out, "SELECT stage, reason FROM rejections")
    assert rej == [("buggy", "no_speech")]


# ---- case 1: decode audio, and only audio ---------------------------------------------------------

@pytest.mark.parametrize("body,fmt", [
    ("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{secret}\n#EXT-X-ENDLIST\n", "hls"),
    ("ffconcat version 1.0\nfile '{secret}'\n", "concat"),
])
def test_case1_a_playlist_named_wav_is_refused_naming_its_format(cfg, tmp_path, body, fmt):
    secret = tmp_path / "elsewhere" / "secret.mp3"
    secret.parent.mkdir()
    # an mp3 outside the input that a playlist names: it must never be read
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=3", str(secret)], check=True)
    x = tmp_path / "in" / "x.wav"
    x.parent.mkdir()
    x.write_text(body.format(secret=secret))
    r = _rejection(_ingest(cfg, x, tmp_path / "out"))
    assert r["reason"] == "unsupported_format", r
    assert f"'{fmt}'" in r["detail"] and str(x) in r["detail"]


def test_case1_odd_names_stay_plain_paths(cfg, tmp_path):
    # a file whose name looks like an FFmpeg protocol is opened as that file, nothing else
    d = tmp_path / "concat:a"
    d.mkdir()
    p = d / "speech.m4a"
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=2", str(p)], check=True)
    it = _ingest(cfg, p, tmp_path / "out")
    assert it["status"] == "ok" and it["duration_s"] == pytest.approx(2.0, abs=0.1)


# ---- case 2: NaN / inf samples --------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_case2_invalid_samples_have_their_own_reason(cfg, tmp_path, bad):
    x = _speech_like()
    x[SR // 2: SR // 2 + 10] = bad
    p = tmp_path / "nan.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    r = _rejection(_ingest(cfg, p, tmp_path / "out"))
    assert r["reason"] == "invalid_samples" and "NaN or infinite" in r["detail"] and str(p) in r["detail"]


# ---- case 11: more channels than supported --------------------------------------------------------

def test_case11_eight_channels_say_what_is_unsupported(cfg, tmp_path):
    p = tmp_path / "eight.wav"
    sf.write(p, _speech_like(channels=8), SR)
    r = _rejection(_ingest(cfg, p, tmp_path / "out"))
    assert r["reason"] == "unsupported_channels" and "8 audio channels" in r["detail"]
