"""`tandem voices`: reference clips cut from the real speakers a curated output holds."""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
from pipelines.core import contracts
from pipelines.io.audio import encode_flac
from pipelines.io.rttm import read_rttm
from pipelines.store.writer import JobWriter
from ray_jobs import voices_cmd

from tandem.testing.audio import sample_paths


def _cli(argv):
    p = argparse.ArgumentParser()
    voices_cmd.add_arguments(p)
    return voices_cmd.run(p.parse_args(argv))


def _curated_output(out: Path) -> None:
    x, sr = sf.read(str(sample_paths()["wav"]), dtype="float32")
    words = [{"channel": 0, "speaker": t["speaker"], "word": "turn", "start_s": t["start_s"], "end_s": t["end_s"],
              "score": 1.0, "overlap": False} for t in read_rttm(sample_paths()["rttm"])]
    row = contracts.example_row(example_id=contracts.stable_hash("call"), kind="real", language="en", duration_s=len(x) / sr,
                                sample_rate=sr, num_samples=len(x),
                                audio=encode_flac(np.stack([x, np.zeros_like(x)]), sr), words=words)
    cfg = {"shards": {"row_group_rows": 4, "max_items_per_commit": 1, "target_bytes": 1 << 40, "compression": "zstd"}}
    w = JobWriter.from_config(out, cfg, run_id="r", job="curate", config_hash="c")
    w.add({"uri": "sample.wav", "kind": "real", "work_key": "wk", "status": "ok", "examples": [row],
           "source": {"source_id": "s", "uri": "sample.wav", "kind": "real", "duration_s": len(x) / sr}})
    w.close()


def test_voices_from_a_curated_output(tmp_path, capsys):
    _curated_output(tmp_path / "out")
    assert _cli([str(tmp_path / "out"), str(tmp_path / "bank"), "--min-seconds", "2"]) == 0
    clips = sorted((tmp_path / "bank" / "en").glob("*.wav"))
    assert len(clips) == 2  # the call's two people, one clip each
    assert "--set synth.voices.bank.en=" in capsys.readouterr().out
    assert _cli([str(tmp_path / "out"), str(tmp_path / "bank2"), "--languages", "fr"]) == 2


def test_voices_needs_a_curated_output(tmp_path, capsys):
    assert _cli([str(tmp_path / "nothing"), str(tmp_path / "bank")]) == 2
    assert "tandem curate" in capsys.readouterr().err
