"""Speaker ids are scoped where they are made: real `<source_id>:<label>` (the diarizer's labels
repeat in every source), synthetic `<tts>:<voice>`; shards, catalog and lhotse export agree and
no id names speakers of two real sources."""

import gzip
import json

import numpy as np
import soundfile as sf
from catalogs import catalog
from pipelines.core.config import config_hash, load_config
from pipelines.core.contracts import speaker_id, stable_hash
from pipelines.curate.assemble import AssembleStage
from pipelines.io.files import iter_rows
from pipelines.store.commit import committed_files
from pipelines.store.writer import JobWriter
from pipelines.train.export_lhotse import export_lhotse
from synth.stages import voice_speaker_ids
from synth.voices import Voice


def _segment(t0, words):
    ws = [{"word": w, "start_s": t0 + 0.4 * i, "end_s": t0 + 0.4 * i + 0.3, "score": 0.9} for i, w in enumerate(words)]
    return {"start_s": ws[0]["start_s"], "end_s": ws[-1]["end_s"], "text": " ".join(words), "language": "en",
            "language_prob": 0.99, "audio_languages": None, "avg_logprob": -0.2, "no_speech_prob": 0.01,
            "compression_ratio": 1.2, "words": ws}


def _diarized(tmp_path, name, cfg, h):
    """An item as the diarize and transcribe stages leave it: two speakers, SPEAKER_00 and _01."""
    sr = 16000
    path = tmp_path / f"{name}.wav"
    rng = np.random.default_rng(len(name))
    sf.write(path, (0.1 * rng.standard_normal(sr * 6)).astype(np.float32), sr)
    turns = [{"start_s": 0.2, "end_s": 2.8, "speaker": "SPEAKER_00"},
             {"start_s": 3.2, "end_s": 5.8, "speaker": "SPEAKER_01"}]
    segs = [_segment(0.3, ["hello", "there", "how", "are", "you"]),
            _segment(3.3, ["fine", "thanks", "and", "you", "then"])]
    return {"uri": str(path), "kind": "real", "work_key": stable_hash("wk", name), "seed": 1, "status": "ok",
            "rejections": [], "cfg_hash": h, "out_dir": str(tmp_path / "out"), "work_path": str(path),
            "source_id": stable_hash("src", name, n=32), "sample_rate": sr, "duration_s": 6.0, "channels": 1,
            "two_channel": False, "turns": turns, "segments": segs}


def test_real_speaker_ids_unique_across_sources_in_shards_catalog_and_lhotse(tmp_path):
    cfg = load_config(overrides={"examples": {"min_speech_s": 1.0}})
    h = config_hash(cfg)
    out = tmp_path / "out"
    stage = AssembleStage.from_config(cfg)
    writer = JobWriter.from_config(out, cfg, run_id="run-speakers", job="curate", config_hash=h)
    try:
        for name in ("one", "two", "three"):
            it = stage(_diarized(tmp_path, name, cfg, h))
            assert it["status"] == "ok" and it["examples"], it.get("rejections") or it.get("retry")
            writer.add(it)
        writer.commit()
    finally:
        writer.release()
    rows = list(iter_rows(committed_files(out, "shards"), columns=["source_ids", "speakers", "words"]))
    owner: dict[str, set] = {}
    for r in rows:
        src = r["source_ids"][0]
        assert sorted(r["speakers"]) == [f"{src}:SPEAKER_00", f"{src}:SPEAKER_01"]
        assert {w["speaker"] for w in r["words"]} == set(r["speakers"])
        for s in r["speakers"]:
            owner.setdefault(s, set()).add(src)
    assert len(owner) == 6 and all(len(v) == 1 for v in owner.values())  # 3 sources x 2, none shared
    catalog.build(out)
    _, got = catalog.query(out, "SELECT count(DISTINCT s), count(DISTINCT source_ids[1]) "
                                "FROM accepted, unnest(speaker_ids) AS t(s)")
    assert got == [(6, 3)]
    _, got = catalog.query(out, "SELECT count(*) FROM examples WHERE speaker_ids <> speakers")
    assert got == [(0,)]  # ids in the shards are not prefixed twice
    export_lhotse(out, tmp_path / "lhotse", shar=False)
    with gzip.open(tmp_path / "lhotse" / "supervisions.jsonl.gz", "rt") as f:
        sups = [json.loads(line) for line in f]
    assert {s["speaker"] for s in sups} == set(owner)


def test_synthetic_speaker_ids_follow_the_voice():
    a = {"A": Voice("en+m3", 40, 160), "B": Voice("en+f2", 60, 170)}
    b = {"A": Voice("en+f2", 45, 150), "B": Voice("en+m7", 50, 180)}
    assert voice_speaker_ids(["A", "B"], a, "espeak") == {"A": "espeak:en+m3", "B": "espeak:en+f2"}
    # the same voice in another dialogue is the same speaker: a split by id holds the voice out
    assert voice_speaker_ids(["A", "B"], b, "espeak")["A"] == "espeak:en+f2"
    # a model or clip goes by its file name; two roles cast with one voice stay apart
    one = {"A": Voice("/models/joe.onnx", 50, 160), "B": Voice("/models/joe.onnx", 50, 160)}
    assert voice_speaker_ids(["A", "B"], one, "piper") == {"A": "piper:joe.onnx#A", "B": "piper:joe.onnx#B"}


def test_speaker_id_scopes_a_label_once():
    assert speaker_id("s1", "SPEAKER_00") == "s1:SPEAKER_00"
    assert speaker_id("s1", "s1:SPEAKER_00") == "s1:SPEAKER_00"
    assert speaker_id("s1", "espeak:en+m3") == "espeak:en+m3"
    assert speaker_id(None, "A") == "A"
