"""The curation chain end to end (no Ray): inputs, items, speakers on the right channels."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelines.core import contracts
from pipelines.core.config import config_hash, load_config
from pipelines.curate.chain import curation_stages, list_inputs, make_items
from tandem.testing.curate import curate_local
from pipelines.io.audio import decode_flac

from tandem.testing.audio import EN_TURNS_2, make_conversation, two_channel, write_audio, write_broken_files


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    # turns 2-5: B speaks more than A
    audio, ref, words = make_conversation(EN_TURNS_2[1:5], "en", 24000, seed=7, gap_s=0.8)
    mono = write_audio(d / "mono.wav", audio, 24000)
    duplex = write_audio(d / "duplex.flac", two_channel(audio, ref, 24000, main="B"), 24000)
    return {"mono": str(mono), "duplex": str(duplex), "ref": ref, "words": words, "dir": d}


@pytest.fixture(scope="module")
def run(conv, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    # 6 s examples force cuts inside a 16 s conversation
    cfg = load_config(overrides={"examples": {"max_duration_s": 6.0}})
    items = list(curate_local([conv["mono"], conv["duplex"]], cfg, config_hash(cfg), str(out)))
    return {i["uri"]: i for i in items}, out, cfg


def test_list_inputs(conv, tmp_path):
    d = tmp_path / "in"
    write_broken_files(d / "sub")
    (d / "notes.txt").parent.mkdir(exist_ok=True)
    (d / "notes.txt").write_text("x")
    got = list(list_inputs(str(d)))
    assert len(got) == 6 and all("notes" not in g for g in got)
    assert list(list_inputs(str(d / "sub" / "*.wav"))) == sorted(str(p) for p in (d / "sub").glob("*.wav"))
    man = tmp_path / "m.jsonl"
    man.write_text(json.dumps({"uri": "a.wav"}) + "\n\n" + json.dumps({"uri": "/abs/b.wav"}) + "\n")
    assert list(list_inputs(str(man))) == [str(tmp_path / "a.wav"), "/abs/b.wav"]
    pq.write_table(pa.table({"uri": ["x.wav", "y.mp3"]}), tmp_path / "m.parquet")
    assert list(list_inputs(str(tmp_path / "m.parquet"))) == [str(tmp_path / "x.wav"), str(tmp_path / "y.mp3")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(list_inputs(str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(list_inputs(str(tmp_path / "*.opus")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        list(list_inputs(str(bad)))


def test_make_items_is_deterministic(conv):
    cfg = load_config()
    a = list(make_items([conv["mono"], conv["duplex"]], cfg, "h1", "/o"))
    b = list(make_items([conv["mono"], conv["duplex"]], cfg, "h1", "/o"))
    c = list(make_items([conv["mono"]], load_config(overrides={"seed": 1}), "h2", "/o"))
    assert a == b
    assert a[0]["work_key"] != a[1]["work_key"] and a[0]["seed"] != a[1]["seed"]
    assert c[0]["work_key"] != a[0]["work_key"] and c[0]["seed"] != a[0]["seed"]
    assert {"uri", "kind", "work_key", "seed", "status", "rejections", "out_dir", "cfg_hash"} <= set(a[0])
    names = [s.name for s in curation_stages(cfg)]
    assert names == ["ingest", "vad", "diarize", "transcribe", "assemble"]


def _check_words_on_channels(item, ref_words, main):
    exs = item["examples"]
    assert len(exs) >= 3  # cut to <= 6 s
    matched = 0
    for ex in exs:
        assert ex["duration_s"] <= 6.0 + 1e-6
        t0 = ex["source_spans"][0]["start_s"]
        audio, sr = decode_flac(ex["audio"])
        assert audio.shape[0] == 2 and sr == 24000
        for w in ex["words"]:
            # the reference word with the same text closest in time
            cands = [r for r in ref_words if r["word"].lower().strip(",.?") == w["word"].lower().strip(",.?")]
            if not cands:
                continue
            r = min(cands, key=lambda r: abs(r["start_s"] - (w["start_s"] + t0)))
            if abs(r["start_s"] - (w["start_s"] + t0)) > 1.0:
                continue  # a misheard word that happens to spell another one
            assert abs(r["start_s"] - (w["start_s"] + t0)) < 0.3, (w, r)
            if r["word"][-1].isalnum():  # espeak's reference end of "wise," includes the comma's pause
                assert abs(r["end_s"] - (w["end_s"] + t0)) < 0.3, (w, r)
            assert w["channel"] == (0 if r["speaker"] == main else 1), (w, r)
            matched += 1
            # the word's audio is on its channel and silent on the other
            a, b = int(w["start_s"] * sr), int(w["end_s"] * sr)
            assert np.abs(audio[w["channel"], a:b]).max() > 0.05
            assert np.abs(audio[1 - w["channel"], a + 240:b - 240]).max(initial=0) < 0.01
    assert matched >= 0.7 * len(ref_words)
    # cuts never fall inside a word
    for ex in exs:
        assert all(0 <= w["start_s"] <= w["end_s"] <= ex["duration_s"] + 1e-3 for w in ex["words"])


def test_mono_conversation_speakers_on_channels(run, conv):
    items, out, cfg = run
    it = items[conv["mono"]]
    assert it["status"] == "ok", it["rejections"]
    # "most_speech" puts B on channel 0
    _check_words_on_channels(it, conv["words"], main="B")
    ex = it["examples"][0]
    assert ex["language"] == "en" and ex["kind"] == "real"
    assert len({s for e in it["examples"] for s in e["speakers"]}) == 2
    assert len({e["speakers"][0] for e in it["examples"]}) == 1  # one main speaker per source
    assert ex["example_id"] == contracts.stable_hash(it["source_id"], round(ex["source_spans"][0]["start_s"], 3),
                                                     round(ex["source_spans"][0]["end_s"], 3), config_hash(cfg))
    assert (out / "rttm" / f"{it['source_id']}.rttm").exists()
    assert not Path(it["work_path"]).exists() and not list((out / "_work").glob(f"{it['source_id']}*"))
    assert it["source"]["status"] == "accepted" and it["source"]["num_examples"] == len(it["examples"])
    contracts.validate(contracts.example_table_from_rows(it["examples"]), contracts.EXAMPLE_SCHEMA)
    contracts.validate(contracts.to_table([it["source"]], contracts.SOURCE_SCHEMA), contracts.SOURCE_SCHEMA)


def test_two_channel_source_keeps_channels(run, conv):
    items, _, _ = run
    it = items[conv["duplex"]]
    assert it["status"] == "ok" and it["two_channel"], it["rejections"]
    _check_words_on_channels(it, conv["words"], main="B")  # B was written on channel 0
    assert it["examples"][0]["speakers"][0] == f"{it['source_id']}:CH0"


def test_random_main_speaker_is_seeded(conv, tmp_path):
    from pipelines.curate.assemble import pick_main
    turns = [{"speaker": s, "start_s": 0, "end_s": 1} for s in "ABC"]
    picks = {pick_main(turns, "random", seed) for seed in range(20)}
    assert picks == {"A", "B", "C"} and pick_main(turns, "random", 3) == pick_main(turns, "random", 3)


def test_broken_inputs_flow_through_chain(tmp_path):
    expected = write_broken_files(tmp_path / "in")
    cfg = load_config()
    items = list(curate_local(list_inputs(str(tmp_path / "in")), cfg, config_hash(cfg), str(tmp_path / "out")))
    got = {i["uri"].rsplit("/", 1)[-1]: i["rejections"][0]["reason"] for i in items}
    assert got == expected
