"""Voices: every speaker of a dialogue sounds different (speaker-embedding distances), and a voice
bank of reference clips is cut from real speakers (pyannote's sample call, two people)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipelines.core.config import config_hash, load_config
from pipelines.io.audio import decode_flac, encode_flac
from synth.job import make_items
from synth.params import VoicesParams, from_dict
from synth.stages import SynthesizeStage
from synth.voicebank import solo_stretches, write_voice_bank
from synth.voices import cast_voices, voice_bank

LANGS = ["en", "fr", "de", "es", "it", "pt"]


@pytest.fixture(scope="module")
def encoder():
    from resemblyzer import VoiceEncoder
    return VoiceEncoder("cpu", verbose=False)


def _voices(**over) -> VoicesParams:
    return from_dict(VoicesParams, dict(load_config()["synth"]["voices"], **over), "synth.voices")


def _embed(encoder, x: np.ndarray, sr: int) -> np.ndarray:
    from resemblyzer import preprocess_wav
    return encoder.embed_utterance(preprocess_wav(x.astype(np.float32), source_sr=sr))


def _sample_row() -> dict:
    import pyannote.audio
    d = Path(pyannote.audio.__file__).parent / "sample"
    x, sr = sf.read(d / "sample.wav", dtype="float32")
    words = []
    for line in (d / "sample.rttm").read_text().splitlines():
        f = line.split()
        s, dur, spk = float(f[3]), float(f[4]), f[7]
        words.append({"word": "turn", "start_s": s, "end_s": s + dur, "speaker": spk, "channel": 0})
    return {"example_id": "5a3b1e0c", "language": "en", "audio": encode_flac(x[None, :], sr), "words": words}


def test_voice_bank_from_real_speakers(tmp_path, encoder):
    row = _sample_row()
    bank = write_voice_bank([row], tmp_path / "bank", min_s=2.0)
    clips = bank["en"]
    assert len(clips) == 2 and {Path(c).parent for c in clips} == {tmp_path / "bank" / "en"}
    # each clip is one speaker alone: inside a solo stretch of the reference diarization
    for c in clips:
        x, sr = sf.read(c)
        assert sr == 24000 and 2.0 <= len(x) / sr <= 10.0 + 1e-3
    # the clips are two different people: every pair of solo stretches (>= 1.5 s) of different
    # speakers is further apart than any pair of one speaker's (measured: 0.22-0.25 vs 0.08-0.13)
    audio, sr = decode_flac(row["audio"])
    emb = [(spk, _embed(encoder, audio[0, int(s * sr): int(e * sr)], sr)) for spk in ("speaker90", "speaker91")
           for s, e in solo_stretches(row["words"], spk, 0.3, 0.6) if e - s >= 1.5]
    pairs = [(a[0] == b[0], 1 - float(np.dot(a[1], b[1]))) for i, a in enumerate(emb) for b in emb[i + 1:]]
    same = [d for eq, d in pairs if eq]
    diff = [d for eq, d in pairs if not eq]
    print(f"\nreal speakers: cosine distance between {np.round(diff, 3)}, within one speaker {np.round(same, 3)}")
    assert len(same) >= 2 and len(diff) >= 4 and max(same) < min(diff)
    # the bank is what a voice-cloning backend casts from: a directory per language
    vc = _voices(bank={"en": str(tmp_path / "bank" / "en")})
    assert voice_bank("en", vc, kind="clip") == sorted(clips)
    cast = cast_voices(["A", "B"], "en", np.random.default_rng(0), vc, kind="clip")
    assert {v.name for v in cast.values()} == set(clips)


def test_solo_stretches_avoid_the_other_speaker():
    w = [{"speaker": "a", "start_s": 0.0, "end_s": 1.0}, {"speaker": "a", "start_s": 1.2, "end_s": 2.0},
         {"speaker": "b", "start_s": 2.1, "end_s": 2.5}, {"speaker": "a", "start_s": 3.0, "end_s": 6.0}]
    got = solo_stretches(w, "a", guard_s=0.3, join_s=0.6)
    assert np.allclose(got, [(0.0, 1.8), (3.0, 6.0)])


def test_clip_bank_errors_are_clear(tmp_path):
    vc = _voices(bank={"fr": str(tmp_path)})
    with pytest.raises(ValueError, match="no audio files"):
        voice_bank("fr", vc, kind="clip")
    with pytest.raises(ValueError, match="needs reference clips for 'de'"):
        voice_bank("de", vc, kind="clip")


def test_speakers_of_espeak_dialogues_differ(encoder):
    # six dialogues, one per language: for each, the two channels' speech embedded separately;
    # different speakers are further apart than the two halves of one speaker's speech
    cfg = load_config(overrides={"synth": {"roundtrip": {"enabled": False}, "augment": {"enabled": False},
                                           "timeline": {"backchannel_prob": 0.0, "backchannel_overlap_prob": 0.0}}})
    st = SynthesizeStage.from_config(cfg)
    diffs, sames = [], []
    for it in make_items(None, 6, 4, LANGS, cfg, config_hash(cfg), "/unused"):
        ex = st(it)["examples"][0]
        audio, sr = decode_flac(ex["audio"])
        speech = []
        for ch in (0, 1):
            spk = ex["speakers"][ch] if ch < len(ex["speakers"]) else None
            ws = [w for w in ex["words"] if w["channel"] == ch and w["speaker"] == spk]
            # at most 12 s of each speaker's words: enough for a stable d-vector, and quick
            speech.append(np.concatenate([audio[ch, int(w["start_s"] * sr): int(w["end_s"] * sr)] for w in ws])
                          [: 12 * sr])
        e0, e1 = _embed(encoder, speech[0], sr), _embed(encoder, speech[1], sr)
        h = len(speech[0]) // 2
        diffs.append(1 - float(np.dot(e0, e1)))
        sames.append(1 - float(np.dot(_embed(encoder, speech[0][:h], sr), _embed(encoder, speech[0][h:], sr))))
    print(f"\nespeak speakers: cosine distance between speakers {np.round(diffs, 3)}, within {np.round(sames, 3)}")
    assert min(diffs) > max(sames)
