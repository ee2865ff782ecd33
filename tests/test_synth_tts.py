"""espeak-ng through ctypes: audio, word times inside the audio, determinism, errors."""

import itertools
import threading

import numpy as np
import pytest
from synth.tts.base import TTSError
from synth.tts.espeak import EspeakTTS, phonemes, say_as, word_ends

TEXTS = {
    "en": "I always pack far too many clothes for a short trip.",
    "fr": "Ça va très bien, merci beaucoup à vous.",
    "de": "Grüß Gott, das Wetter ist heute schön.",
    "es": "¿Qué tal? Mañana vamos al mercado.",
    "it": "Ti piace l'inverno, o ti manca l'estate?",
    "pt": "Olá, tudo bem com você hoje?",
    "nl": "Goedemorgen, hoe gaat het met je?",
    "pl": "Dzień dobry, jak się masz?",
}


@pytest.fixture(scope="module")
def tts():
    return EspeakTTS(24000)


@pytest.mark.parametrize("lang", sorted(TEXTS))
def test_words_cover_every_token_inside_audio(tts, lang):
    text = TEXTS[lang]
    audio, sr, words = tts.synthesize(text, lang)
    assert sr == 24000 and audio.dtype == np.float32 and audio.ndim == 1
    dur = len(audio) / sr
    assert 0.8 < dur < 6 and 0.1 < np.abs(audio).max() <= 1.0
    assert [w["word"] for w in words] == text.split()
    for a, b in itertools.pairwise(words):
        assert a["start_s"] <= a["end_s"] <= b["start_s"] + 1e-9
    assert words[-1]["end_s"] <= dur + 1e-9
    # every word's span holds speech energy
    for w in words:
        seg = audio[int(w["start_s"] * sr): int(w["end_s"] * sr)]
        assert len(seg) and np.sqrt((seg**2).mean()) > 0.01, w


# how espeak-ng reads an interjection it does not know: as letter names or an abbreviation
LETTER_READINGS = {"en": ["ɛmˈɛm", "eɪtʃ"], "fr": ["milim", "ɛmˈɛm"], "de": ["ɛmh", "hˌɑː"], "es": ["eme", "atʃe"],
                   "it": ["ɛmme", "akːa"], "pt": ["ɡˈudʊ", "ɛmʲ", "ɐɡˌɐ"]}


@pytest.mark.parametrize("lang", sorted(LETTER_READINGS))
def test_interjections_are_said_as_sounds_not_spelled(tts, lang):
    # fr "mm" was read "millimètre", pt "é" "e agudo", es "mm" "eme eme": words that did not match the audio
    from synth.phrasebook import BACKCHANNELS, OPENERS
    for text in BACKCHANNELS[lang] + OPENERS[lang]:
        said = phonemes(say_as(text, lang), lang)
        assert not any(r in said for r in LETTER_READINGS[lang]), (text, said)
    audio, sr, words = tts.synthesize(BACKCHANNELS[lang][1] + ", " + BACKCHANNELS[lang][1] + ".", lang)
    assert [w["word"] for w in words] == [BACKCHANNELS[lang][1] + ",", BACKCHANNELS[lang][1] + "."]  # script spelling


def _calls(tts):
    out = [tts.synthesize("Hello there, how are you?", "en", voice="en-us+m3", pitch=40, rate=150),
           tts.synthesize("Hello there, how are you?", "en", voice="en-us+f2", pitch=70, rate=190),
           tts.synthesize("Good morning.", "en")]
    tts.synthesize("Good morning.", "en", pitch=90, rate=300)
    out.append(tts.synthesize("Good morning.", "en"))
    return out


def test_sessions_are_byte_identical_and_parameters_apply(tts):
    # espeak carries waveform state between calls in one process; a session starts fresh
    with tts.session():
        a = _calls(tts)
    tts.synthesize("Something else in between.", "fr", voice="fr+f3")
    with tts.session():
        b = _calls(tts)
    for (x, _, wx), (y, _, wy) in zip(a, b):
        assert np.array_equal(x, y) and wx == wy
    assert len(a[1][0]) < len(a[0][0])  # faster rate, shorter audio
    # defaults after a call with other parameters: same length as defaults before it
    assert abs(len(a[3][0]) - len(a[2][0])) < 50


def test_persistent_worker_sessions_do_not_depend_on_earlier_ones(tts):
    # one fork server per TTS: a session after other sessions (other voices, parameters) gives the
    # bytes a brand-new TTS gives, and the server process is reused, not restarted
    with tts.session():
        tts.synthesize("Numbers 1234 and a long sentence first.", "de", voice="de+m2", pitch=80, rate=190)
    pid = tts._server.proc.pid
    with tts.session():
        a = _calls(tts)
    assert tts._server.proc.pid == pid
    fresh = EspeakTTS(24000)
    with fresh.session():
        b = _calls(fresh)
    fresh.close()
    for (x, _, wx), (y, _, wy) in zip(a, b):
        assert np.array_equal(x, y) and wx == wy
    # without a session, state carries over between calls: the check above could fail
    tts.synthesize("Numbers 1234 and a long sentence first.", "de", voice="de+m2", pitch=80, rate=190)
    c = _calls(tts)
    assert any(not np.array_equal(x, y) for (x, _, _), (y, _, _) in zip(c, b))


def test_native_rate_and_resampling():
    a22, sr22, _ = EspeakTTS(22050).synthesize("Testing one two.", "en")
    a16, sr16, _ = EspeakTTS(16000).synthesize("Testing one two.", "en")
    assert (sr22, sr16) == (22050, 16000)
    assert abs(len(a16) / 16000 - len(a22) / 22050) < 0.002


def test_thread_safe(tts):
    ref = tts.synthesize("Parallel speech is serialised.", "en")[0]
    out = []
    ts = [threading.Thread(target=lambda: out.append(tts.synthesize("Parallel speech is serialised.", "en")[0]))
          for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # serialised calls: every result is a whole utterance (waveform state may shift a few samples)
    assert len(out) == 4 and all(abs(len(o) - len(ref)) < 50 for o in out)


def test_errors_name_the_problem(tts):
    with pytest.raises(TTSError, match="no voice 'xx'"):
        tts.synthesize("hello", "xx")
    with pytest.raises(TTSError, match="empty text"):
        tts.synthesize("   ", "en")


def test_word_ends_from_energy():
    sr = 1000
    x = np.zeros(3000, dtype=np.float32)
    x[0:400] = 0.5
    x[1000:1700] = 0.5
    ends = word_ends(x, sr, [0.0, 1.0])
    assert ends == pytest.approx([0.4, 1.7], abs=0.011)
