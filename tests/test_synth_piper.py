"""The neural TTS backend (Piper, English voice from PyPI) behind the same interface as espeak."""

import json

import numpy as np
import pytest

from pipelines.core.config import load_config
from pipelines.models.asr import AsrParams
from pipelines.models.cache import ModelsParams
from synth.tts.base import TTSError, WordTimer
from synth.tts.piper import PiperTTS

TEXT = "Good morning, did you see the weather forecast for the weekend?"


@pytest.fixture(scope="module")
def piper():
    cfg = load_config()
    # the fallback word timer: no aligner configured, so Whisper word-time matching (scored below 1)
    return PiperTTS(sample_rate=24000, timer=WordTimer(None, AsrParams.from_config(cfg), ModelsParams.from_config(cfg)))


def test_piper_words_aligned_inside_audio(piper):
    audio, sr, words = piper.synthesize(TEXT, "en")
    dur = len(audio) / sr
    assert sr == 24000 and 2.0 < dur < 6.0
    # every script word gets a time, in order, from the model's own phoneme durations
    assert [w["word"] for w in words] == TEXT.split()
    assert piper.word_times == "engine" and not piper.distinct_voices
    assert all(0.0 < w["score"] <= 1.0 for w in words) and np.median([w["score"] for w in words]) == 1.0
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts)
    for w in words:
        assert 0.0 <= w["start_s"] < w["end_s"] <= dur + 1e-6
        seg = audio[int(w["start_s"] * sr): int(w["end_s"] * sr)]
        assert np.sqrt(np.mean(seg ** 2)) > 1e-3, w  # each word's span holds speech
    # an independent measure agrees: Whisper's word times on the same audio (measured: mean start
    # difference 0.07-0.09 s over the three warps; 0.15-0.16 s on a sentence with a number)
    heard = piper.timer.words(TEXT, audio, sr, "en")
    assert np.mean([abs(a["start_s"] - b["start_s"]) for a, b in zip(words, heard)]) < 0.15


def test_engine_words_follow_the_spoken_phonemes():
    # espeak ran "for the" together into one spoken word; each script word still gets its own span
    from types import SimpleNamespace

    from synth.tts.piper import engine_words
    spoken = [("^", 10), ("f", 4), ("ɚ", 3), ("ð", 2), ("ə", 2), (" ", 5), ("j", 2), ("u", 3), ("?", 4), ("$", 6)]
    chunk = SimpleNamespace(phoneme_alignments=[SimpleNamespace(phoneme=p, num_samples=n) for p, n in spoken],
                            audio_float_array=np.zeros(sum(n for _, n in spoken)))
    words = engine_words("for the you?", [chunk], [list("fɔːɹ"), list("ðə"), list("juː?")], 0.1)
    # the space before "you?" is its onset: the word starts where "the" ends
    assert [(w["word"], w["start_s"], w["end_s"]) for w in words] == [("for", 1.0, 1.7), ("the", 1.7, 2.1),
                                                                       ("you?", 2.1, 3.1)]
    assert [w["score"] for w in words] == [0.25, 1.0, round(2 / 3, 3)]
    # a second sentence chunk continues after the first one's samples; the sentence end and start
    # between them ("$", "^") stay a gap, as a pause does
    words2 = engine_words("for the you? for the you?", [chunk, chunk], [list("fɔːɹ"), list("ðə"), list("juː?")] * 2, 0.1)
    assert words2[3]["start_s"] == pytest.approx(1.0 + 4.1) and words2[5]["end_s"] == pytest.approx(3.1 + 4.1)
    paused = [("^", 10), ("f", 4), ("ɚ", 3), (",", 3), (" ", 5), ("j", 2), ("u", 3), ("$", 6)]
    chunk3 = SimpleNamespace(phoneme_alignments=[SimpleNamespace(phoneme=p, num_samples=n) for p, n in paused],
                             audio_float_array=np.zeros(sum(n for _, n in paused)))
    assert [w["start_s"] for w in engine_words("for, you", [chunk3], [list("fɔːɹ"), list("juː")], 0.1)] == [1.0, 2.5]
    # no durations from the engine: no engine times (the caller falls back to the word timer)
    assert engine_words("for", [SimpleNamespace(phoneme_alignments=None, audio_float_array=np.zeros(3))],
                        [list("fɔːɹ")], 0.1) is None


def test_piper_pads_are_split_between_their_phonemes():
    # Piper counts the PAD after each phoneme (id 0 here) into that phoneme; it is the transition
    # into the next one, so half of it goes to each side: "hi" starts 1 sample early, ends 2 early
    from types import SimpleNamespace

    from synth.tts.piper import engine_words, phoneme_spans
    al = [SimpleNamespace(phoneme=p, phoneme_ids=ids) for p, ids in
          (("^", [1, 0]), ("h", [20, 0]), ("a", [14, 0]), ("ɪ", [21, 0]), ("$", [2]))]
    per_id = [5, 2, 4, 2, 6, 3, 4, 4, 3]
    chunk = SimpleNamespace(phoneme_alignments=al, phoneme_id_samples=per_id, audio_float_array=np.zeros(sum(per_id)))
    assert phoneme_spans(chunk, [0]) == [("^", 0, 6), ("h", 6, 12), ("a", 12, 20), ("ɪ", 20, 28), ("$", 28, 33)]
    assert [(w["start_s"], w["end_s"]) for w in engine_words("hi", [chunk], [list("haɪ")], 1.0, [0])] == [(6.0, 28.0)]
    # without the per-id samples (or the PAD ids) each phoneme keeps the PAD after it, as Piper counts
    for a, n in zip(al, (7, 6, 9, 8, 3)):
        a.num_samples = n
    assert phoneme_spans(chunk, None)[1:3] == [("h", 7, 13), ("a", 13, 22)]


def test_piper_falls_back_to_the_word_timer(piper, monkeypatch):
    import synth.tts.piper as mod
    monkeypatch.setattr(mod, "engine_words", lambda *a, **k: None)
    before = piper.fallbacks
    words = piper.synthesize(TEXT, "en")[2]
    assert piper.fallbacks == before + 1 and [w["word"] for w in words] == TEXT.split()
    assert all(0.0 <= w["score"] <= 0.5 for w in words)  # Whisper-matched times: labelled below 1


def test_piper_session_is_reproducible(piper):
    # Piper's graph draws noise; inside a session the draws come from the session's seed
    def say(seed):
        with piper.session(seed):
            return [piper.synthesize(t, "en")[0] for t in (TEXT, "Yes, of course.")]
    a, b, c = say(3), say(3), say(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c))


def test_piper_missing_language_is_a_clear_error(piper):
    with pytest.raises((TTSError, ValueError), match="fr"):
        piper.synthesize("Bonjour à tous", "fr")


def test_warped_names_round_trip():
    from synth.tts.piper import split_name, warped_names
    names = warped_names(["/v/a.onnx", "/v/b@x.onnx"], [0.88, 1.0, 1.13])
    assert names == ["/v/a.onnx@0.88", "/v/a.onnx", "/v/a.onnx@1.13", "/v/b@x.onnx@0.88", "/v/b@x.onnx",
                     "/v/b@x.onnx@1.13"]
    assert [split_name(n) for n in names[3:]] == [("/v/b@x.onnx", 0.88), ("/v/b@x.onnx", 1.0), ("/v/b@x.onnx", 1.13)]
    with pytest.raises(TTSError, match="outside"):
        warped_names(["/v/a.onnx"], [3.0])


def test_speakers_of_piper_dialogues_differ():
    # Piper's one English model, warped per speaker (synth.tts.piper.warps): the speakers of each
    # dialogue are cast distinct voices, and their speech is as far apart as two real people's
    from resemblyzer import VoiceEncoder, preprocess_wav

    from pipelines.core.config import config_hash
    from pipelines.io.audio import decode_flac
    from synth.job import make_items
    from synth.stages import SynthesizeStage
    cfg = load_config(overrides={"synth": {"tts": {"backend": "piper"}, "roundtrip": {"enabled": False},
                                           "augment": {"enabled": False},
                                           "timeline": {"backchannel_prob": 0.0, "backchannel_overlap_prob": 0.0}}})
    st = SynthesizeStage.from_config(cfg)
    enc = VoiceEncoder("cpu", verbose=False)

    def embed(x, sr):
        return enc.embed_utterance(preprocess_wav(x.astype(np.float32), source_sr=sr))

    diffs, sames = [], []
    for it in make_items(None, 3, 5, ["en"], cfg, config_hash(cfg), "/unused"):
        ex = st(it)["examples"][0]
        params = json.loads(ex["params"])
        assert params["tts"] == "piper" and params["distinct_voices"]
        names = [v["name"] for v in params["voices"].values()]
        assert len(set(names)) == len(names) and all("joe" in n for n in names)
        audio, sr = decode_flac(ex["audio"])
        speech = []
        for ch in (0, 1):
            ws = [w for w in ex["words"] if w["channel"] == ch and w["speaker"] == ex["speakers"][ch]]
            speech.append(np.concatenate([audio[ch, int(w["start_s"] * sr): int(w["end_s"] * sr)] for w in ws])
                          [: 12 * sr])
        e0, e1 = embed(speech[0], sr), embed(speech[1], sr)
        h = len(speech[0]) // 2
        diffs.append(1 - float(np.dot(e0, e1)))
        sames.append(1 - float(np.dot(embed(speech[0][:h], sr), embed(speech[0][h:], sr))))
    print(f"\npiper speakers: cosine distance between speakers {np.round(diffs, 3)}, within {np.round(sames, 3)}")
    # two real people (pyannote's sample call, tests/test_synth_voices.py) measure 0.22-0.25 apart;
    # 20 Piper dialogues (seed 21): between speakers 0.19-0.37, halves of one speaker 0.02-0.11
    assert min(diffs) > 0.15 and min(diffs) > max(sames)
