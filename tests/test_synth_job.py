"""Synthesis job: work items, bad scripts, the synthesis stage's example rows, determinism."""

import json

import numpy as np
import pytest
from pipelines.core.config import config_hash, load_config
from pipelines.core.contracts import EXAMPLE_SCHEMA, example_table_from_rows, validate
from pipelines.io.audio import decode_flac
from synth.job import SynthesizeStage, format_summary, make_items, summarize, synthesis_stages
from synth.scripts import ScriptError, validate_script

from tandem.testing.synth import sample_script, write_scripts

LANGS = ["en", "fr", "de", "es", "it", "pt"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides={"synth": {"roundtrip": {"enabled": False}}})


@pytest.fixture(scope="module")
def stage(cfg):
    s = SynthesizeStage.from_config(cfg)
    s.ensure_setup()
    return s


@pytest.fixture(scope="module")
def examples(cfg, stage):
    """One built-in dialogue per language, synthesised once for the module."""
    items = list(make_items(None, 6, 5, LANGS, cfg, config_hash(cfg), "/unused"))
    out = [stage(it) for it in items]
    for it in out:
        assert it["status"] == "ok", it["rejections"]
    return out


def test_builtin_items_are_seeded_and_varied(cfg):
    h = config_hash(cfg)
    a = list(make_items(None, 12, 1, LANGS, cfg, h, "/unused"))
    b = list(make_items(None, 12, 1, LANGS, cfg, h, "/unused"))
    assert [i["script"] for i in a] == [i["script"] for i in b]
    assert [i["language"] for i in a] == LANGS * 2
    assert len({i["work_key"] for i in a}) == 12 and len({i["seed"] for i in a}) == 12
    assert all(i["uri"].startswith("builtin:") and i["kind"] == "synthetic" and i["status"] == "ok" for i in a)
    turns = {len(i["script"]["turns"]) for i in a}
    first = {i["script"]["turns"][0]["text"] for i in a}
    assert len(turns) >= 4 and len(first) >= 10  # not one template
    c = list(make_items(None, 12, 2, LANGS, cfg, h, "/unused"))
    assert [i["script"] for i in c] != [i["script"] for i in a]


def test_bad_jsonl_lines_become_rejections_naming_file_and_line(cfg, tmp_path):
    bad = {2: "{not json", 4: json.dumps({"dialogue_id": "x", "language": "en", "turns": [{"speaker": "A"}]}),
           5: json.dumps({"dialogue_id": "y", "language": "nl", "turns": [{"speaker": "A", "text": "hoi"},
                                                                          {"speaker": "B", "text": "dag"}]})}
    p = write_scripts(tmp_path / "s.jsonl", [sample_script("d1"), sample_script("d2", "fr")], bad)
    items = list(make_items(str(p), 0, 0, LANGS, cfg, config_hash(cfg), "/unused"))
    assert [i["status"] for i in items] == ["ok", "rejected", "ok", "rejected", "rejected"]
    details = [i["rejections"][0]["detail"] for i in items if i["status"] == "rejected"]
    assert details[0].startswith(f"{p}:2: not valid JSON")
    assert details[1].startswith(f"{p}:4: turns must be") or f"{p}:4:" in details[1]
    assert "'turns' must be a list" in details[1] or "turn 0" in details[1]
    assert f"{p}:5:" in details[2] and "'nl'" in details[2]
    assert items[0]["uri"] == f"{p}#d1" and items[1]["uri"] == f"{p}#line2"
    assert all(r["reason"] == "bad_script" for i in items for r in i["rejections"])
    with pytest.raises(ScriptError, match="cannot open"):
        list(make_items(str(tmp_path / "missing.jsonl"), 0, 0, LANGS, cfg, "h", "/unused"))


def test_validate_script_messages():
    with pytest.raises(ScriptError, match="f.jsonl:3: a dialogue needs at least two speakers"):
        validate_script({"dialogue_id": "a", "language": "en",
                         "turns": [{"speaker": "A", "text": "hi"}, {"speaker": "A", "text": "yo"}]}, "f.jsonl:3")
    with pytest.raises(ScriptError, match="'speakers' names 'C'"):
        validate_script(dict(sample_script(), speakers={"C": {"voice": "en+m1"}}), "f:1")


def test_example_rows_conform_and_words_sit_on_their_channel(examples):
    rows = [it["examples"][0] for it in examples]
    validate(example_table_from_rows(rows), EXAMPLE_SCHEMA)
    for it, ex in zip(examples, rows):
        audio, sr = decode_flac(ex["audio"])
        assert audio.shape == (2, ex["num_samples"]) and sr == 24000
        assert ex["language"] == it["script"]["language"] and ex["kind"] == "synthetic"
        assert ex["source_ids"] == [it["source_id"]] and it["source"]["source_id"] == it["source_id"]
        assert 0 < ex["overlap_ratio"] < 0.5 and 0.4 < ex["speech_ratio"] <= 1.0
        p = json.loads(ex["params"])
        assert set(p) >= {"voices", "timeline", "augment", "timeline_draws", "targets", "turn_taking"}
        # speakers are ids of their voices, the main (first) speaker first
        assert ex["speakers"][0] == p["speaker_ids"][it["script"]["turns"][0]["speaker"]]
        assert p["speaker_ids"] == {r: f"espeak:{v['name']}" for r, v in p["voices"].items()}
        tt = p["turn_taking"]
        assert tt["ipu_s"] + tt["pause_s"] + tt["gap_s"] - tt["overlap_s"] == pytest.approx(tt["span_s"], abs=0.05)
        assert p["word_times"] == "engine" and p["distinct_voices"] is True
        assert len({v["name"] for v in p["voices"].values()}) == len(p["voices"])
        # every word lies inside the audio, on its speaker's channel, where that channel has energy
        # (channel 0 is never augmented, so its silence is exact)
        chan = {s: (0 if i == 0 else 1) for i, s in enumerate(ex["speakers"])}
        for w in ex["words"]:
            assert 0 <= w["start_s"] < w["end_s"] <= ex["duration_s"]
            assert w["channel"] == chan[w["speaker"]]
            a, b = int(w["start_s"] * sr), int(w["end_s"] * sr)
            rms = float(np.sqrt((audio[w["channel"], a:b] ** 2).mean()))
            assert rms > 0.005, (w, rms)
        # channel 0 is silent where no channel-0 word (or its espeak tail) is
        mask = np.zeros(audio.shape[1], bool)
        for w in ex["words"]:
            if w["channel"] == 0:
                mask[int(w["start_s"] * sr): int((w["end_s"] + 0.05) * sr)] = True
        assert np.abs(audio[0, ~mask]).max() < 0.05
        # the text per channel is the words of that channel
        assert ex["text_ch0"].split() == [w["word"] for w in ex["words"] if w["channel"] == 0]


def test_interrupted_turn_words_end_before_the_cut(cfg, stage):
    # interruptions always, one long turn: the interrupted speaker's words end at the cut
    c = load_config(overrides={"synth": {"timeline": {"interruption_prob": 1.0}, "roundtrip": {"enabled": False}}})
    st = SynthesizeStage.from_config(c)
    it = next(make_items(None, 1, 3, ["en"], c, config_hash(c), "/unused"))
    it = st(it)
    assert it["status"] == "ok", it["rejections"]
    ex = it["examples"][0]
    p = json.loads(ex["params"])
    changes = [ch for ch in p["timeline_draws"]["changes"] if ch["interruption"]]
    assert changes
    script_words = sum(len(t["text"].split()) for t in it["script"]["turns"])
    said = [w for w in ex["words"]]
    assert len([w for w in said if w["word"] not in ("mm-hmm", "yeah", "right", "uh-huh", "okay", "I", "see")]) \
        < script_words
    audio, sr = decode_flac(ex["audio"])
    for ch in changes:
        cut = ch["cut_s"]
        # the words said up to the cut end by it, and that speaker is silent just after it
        spk_words = [w for w in ex["words"] if abs(w["end_s"] - cut) < 2e-3]
        assert spk_words, f"no word ends at the cut {cut}"
        w = spk_words[0]
        from synth.phrasebook import BACKCHANNELS
        bc_words = {x for toks in BACKCHANNELS.values() for t in toks for x in t.split()}
        # (a backchannel over the new speaker's words may follow; the turn's own words may not)
        later = [v for v in ex["words"] if v["speaker"] == w["speaker"] and cut < v["start_s"] < cut + 0.3
                 and v["word"] not in bc_words]
        assert not later
        if w["channel"] == 0 and not [v for v in ex["words"] if v["speaker"] == w["speaker"]
                                      and cut < v["start_s"] < cut + 0.15]:
            a = int((cut + 0.03) * sr)
            assert np.abs(audio[0, a: a + int(0.1 * sr)]).max() < 0.05


def test_same_seed_gives_identical_bytes(cfg, stage, examples):
    it = next(make_items(None, 2, 5, LANGS, cfg, config_hash(cfg), "/unused"))
    again = stage(it)["examples"][0]
    first = examples[0]["examples"][0]
    assert again["audio"] == first["audio"] and again["words"] == first["words"]
    assert again["params"] == first["params"] and again["example_id"] == first["example_id"]


def test_speaking_ahead_keeps_the_bytes(cfg, stage, examples):
    """run_items speaks each next dialogue on a second espeak engine while the current one is
    mixed: every dialogue must come out exactly as when it is made alone, rejected items pass."""
    items = list(make_items(None, 6, 5, LANGS, cfg, config_hash(cfg), "/unused"))
    items.insert(2, {**items[2], "status": "rejected"})  # skipped: the item after it is spoken inline
    out = stage.run_items(items)
    assert stage._spare is not None and stage._ahead is None  # the second engine did speak
    assert out[2]["status"] == "rejected" and "examples" not in out[2]
    got = [it["examples"][0] for it in out if it["status"] == "ok"]
    want = [it["examples"][0] for it in examples]
    assert len(got) == 6
    for a, b in zip(got, want):
        assert a["audio"] == b["audio"] and a["words"] == b["words"] and a["params"] == b["params"]


def test_summary_and_stages(cfg, examples):
    s = summarize(it["examples"][0] for it in examples)
    assert s["dialogues"] == 6 and s["speaker_changes"] > 10
    assert -0.5 < s["fto_median_s"] < 0.8 and s["target_gap_mean_s"] == cfg["synth"]["timeline"]["gap_mean_s"]
    text = format_summary(s)
    assert "Fisher" in text and "pause" in text and "backchannels" in text
    names = [st.name for st in synthesis_stages(load_config())]
    assert names == ["synthesize", "roundtrip"]
    assert all(st.uses_model for st in synthesis_stages(load_config()))


def test_real_espeak_turn_taking_near_fisher(cfg, stage):
    # 36 real espeak dialogues (about 30 minutes), measured on their audio (per-channel VAD). The
    # defaults were tuned on 40 dialogues per seed (within 9% on seeds 3, 7, 11, pooled within 2%);
    # runs of this size differ by up to 11 points, so this one is held to 20%: it checks the real
    # TTS path's audio lands near Fisher.
    from pipelines.core.turntaking import format_per_minute, off_fisher
    items = list(make_items(None, 36, 21, LANGS, cfg, config_hash(cfg), "/unused"))
    s = summarize(stage(it)["examples"][0] for it in items)
    print("\n" + format_summary(s))
    assert s["per_minute"]["minutes"] > 20
    for k, r in off_fisher(s["per_minute"]).items():
        assert abs(r) < 0.20, (k, format_per_minute(s["per_minute"]))


def test_a_bad_next_script_fails_only_its_own_item(cfg, stage, examples):
    """Speaking ahead meets the next item's bad script in the background: the current item is
    made as usual and the bad one is rejected by its own call, naming the problem."""
    items = list(make_items(None, 2, 5, LANGS, cfg, config_hash(cfg), "/unused"))
    bad = dict(items[1], script={**items[1]["script"], "turns": [{"speaker": "A"}]})  # a turn without text
    out = stage.run_items([items[0], bad])
    assert out[0]["status"] == "ok" and out[0]["examples"][0]["audio"] == examples[0]["examples"][0]["audio"]
    assert out[1]["status"] == "rejected" and "text" in out[1]["rejections"][0]["detail"]
