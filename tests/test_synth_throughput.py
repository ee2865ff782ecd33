"""Synthesis throughput pieces: the FLAC compression level of example audio, and the round trip
decoding the chunks of a whole batch of dialogues together (batch_size > 1) on the stage's device."""

import numpy as np
import pytest

from pipelines.core.config import config_hash, load_config
from pipelines.core.stage import Resources
from pipelines.io.audio import decode_flac, encode_flac
from synth.job import RoundTripStage, SynthesizeStage, make_items


def _cfg(**synth):
    return load_config(overrides={"synth": {"builtin": {"turns": [2, 3], "sentences_per_turn": [1, 2]},
                                            "roundtrip": {"enabled": False}, **synth}})


@pytest.fixture(scope="module")
def items():
    """Four short dialogues in two languages, synthesised once (round trip off)."""
    cfg = _cfg()
    syn = SynthesizeStage.from_config(cfg)
    out = syn.run_items(list(make_items(None, 4, 3, ["en", "fr"], cfg, config_hash(cfg), "/unused")))
    assert all(it["status"] == "ok" for it in out)
    return out


def test_flac_level_changes_bytes_not_samples(items):
    audio, sr = decode_flac(items[0]["examples"][0]["audio"])
    default = encode_flac(audio, sr)
    assert encode_flac(audio, sr, 5) == default  # libsndfile's default level is 5
    fast, small = encode_flac(audio, sr, 0), encode_flac(audio, sr, 8)
    assert len(small) < len(default) < len(fast)
    for b in (fast, small):
        assert np.array_equal(decode_flac(b)[0], decode_flac(default)[0])  # lossless either way
    assert encode_flac(audio, sr, 3) == encode_flac(audio, sr, 3)  # deterministic
    with pytest.raises(ValueError, match="0-8"):
        encode_flac(audio, sr, 9)
    with pytest.raises(ValueError, match="synth.flac_level"):
        SynthesizeStage.from_config(_cfg(flac_level=12))


def test_stage_encodes_at_configured_level(items):
    cfg = _cfg(flac_level=0)
    ex0 = SynthesizeStage.from_config(cfg)(dict(next(make_items(None, 1, 3, ["en", "fr"], cfg, config_hash(cfg),
                                                                  "/unused"))))["examples"][0]
    ex = items[0]["examples"][0]  # the default level (3)
    assert np.array_equal(decode_flac(ex0["audio"])[0], decode_flac(ex["audio"])[0])
    assert len(ex0["audio"]) > len(ex["audio"])


class FakeAsr:
    """A word per run of non-silent 0.1 s frames of each chunk (the separators between packed
    pieces are digital silence); records every transcribe_chunks call."""

    def __init__(self):
        self.calls = []

    def transcribe_chunks(self, chunks, language=None):
        self.calls.append((language, len(chunks)))
        out = []
        for i, (off, a) in enumerate(chunks):
            n = len(a) // 1600
            on = np.abs(a[:n * 1600]).reshape(n, 1600).max(axis=1) > 0
            edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
            words = [{"word": f"w{k}", "start_s": off + s / 10, "end_s": off + e / 10, "score": 1.0}
                     for k, (s, e) in enumerate(zip(edges[::2], edges[1::2]))]
            out.append({"start_s": off, "end_s": off + len(a) / 16000, "text": " ".join(w["word"] for w in words),
                        "language": language, "words": words, "chunk_index": i})
        return out


def _roundtrip(batch_size: int, monkeypatch, num_gpus: float = 0.0):
    import pipelines.models.asr as asr_mod
    cfg = load_config(overrides={"synth": {"roundtrip": {"batch_size": batch_size}}})
    st = RoundTripStage.from_config(cfg)
    st.resources = Resources(num_gpus=num_gpus)
    fake, seen = FakeAsr(), {}

    def build(p, models, device="cpu", threads=2, **decoder):
        seen.update(device=device, batch_size=p.batch_size)
        return fake
    monkeypatch.setattr(asr_mod, "build_asr", build)
    st.ensure_setup()
    return st, fake, seen


def _copy(items):
    return [{**it, "examples": [dict(ex) for ex in it["examples"]]} for it in items]


def test_batched_round_trip_matches_per_item(items, monkeypatch):
    one, fake1, seen1 = _roundtrip(1, monkeypatch)
    alone = [one(it) for it in _copy(items)]
    many, fake8, seen8 = _roundtrip(8, monkeypatch, num_gpus=1)
    together = many.run_items(_copy(items))
    assert seen1 == {"device": "cpu", "batch_size": 1}
    assert seen8 == {"device": "cuda", "batch_size": 8}  # the stage's GPU request reaches the ASR
    # batch 1: each dialogue's windows alone; batched: one call per language for all four dialogues
    assert len(fake1.calls) >= len(items)
    assert sorted(c[0] for c in fake8.calls) == ["en", "fr"]
    assert sum(c[1] for c in fake8.calls) == sum(c[1] for c in fake1.calls)
    for a, b in zip(alone, together):
        ea, eb = a["examples"][0], b["examples"][0]
        key = [(s["channel"], s["start_s"], s["end_s"], s["text"]) for s in ea["segments"]]  # NaN scores
        assert key == [(s["channel"], s["start_s"], s["end_s"], s["text"]) for s in eb["segments"]]
        assert ea["metrics"] == eb["metrics"]
        assert {s["channel"] for s in eb["segments"]} == {0, 1}
    # each channel's segments are its own chunks: the offsets lie within its own words' span
    for it in together:
        ex = it["examples"][0]
        for s in ex["segments"]:
            own = [w for w in ex["words"] if w["channel"] == s["channel"]]
            assert min(w["start_s"] for w in own) - 0.3 <= s["start_s"] <= max(w["end_s"] for w in own)


def test_batched_round_trip_without_chunk_index_falls_back_per_item(items, monkeypatch):
    st, fake, _ = _roundtrip(8, monkeypatch)
    calls = []

    def no_index(chunks, language=None):
        calls.append(len(chunks))
        return [{"start_s": 0.0, "end_s": 1.0, "text": "x", "language": language}]
    fake.transcribe_chunks = no_index
    out = st.run_items(_copy(items[:2]))
    # the joint call (stopped at its first language), then each item's own: both fail, no chunk index
    assert len(calls) == 1 + 2
    # an ASR answer without chunk indices is the stage's fault, not the input's: retried, not rejected
    assert [it["status"] for it in out] == ["retry", "retry"]
    assert "chunk_index" in out[0]["retry"]["detail"]


def test_packed_round_trip_sends_fewer_windows(items, monkeypatch):
    import pipelines.models.asr as asr_mod
    counts = {}
    for sep in (None, 0.3):
        fake = FakeAsr()
        monkeypatch.setattr(asr_mod, "build_asr", lambda *a, fake=fake, **k: fake)
        st = RoundTripStage.from_config(load_config(overrides={"synth": {"roundtrip": {"pack_sep_s": sep}}}))
        out = st.run_items(_copy(items))
        counts[sep] = sum(c[1] for c in fake.calls)
        for it in out:
            ex = it["examples"][0]
            for s in ex["segments"]:  # back on the dialogue clock, inside the channel's own speech
                own = [w for w in ex["words"] if w["channel"] == s["channel"]]
                assert min(w["start_s"] for w in own) - 0.3 <= s["start_s"] <= s["end_s"]
                assert s["end_s"] <= max(w["end_s"] for w in own) + 0.3
    assert counts[0.3] < counts[None]


def test_round_trip_decoder_settings(monkeypatch):
    import pipelines.models.asr as asr_mod
    got = {}
    monkeypatch.setattr(asr_mod, "build_asr", lambda *a, **k: got.update(k) or FakeAsr())
    RoundTripStage.from_config(load_config(overrides={"synth": {"roundtrip": {"fallback_best_of": 3}}})).ensure_setup()
    # the script's language is given and Whisper's candidates go unread: not asked for
    assert got["best_of"] == 3 and got["hear_languages"] is False
    with pytest.raises(ValueError, match="synth.roundtrip.fallback_best_of"):
        RoundTripStage.from_config(load_config(overrides={"synth": {"roundtrip": {"fallback_best_of": 0}}}))
