"""Turn-taking and word times measured on the rendered audio (synth/audiotiming.py): the figures
come from per-channel VAD of the sound, echo is labelled instead of counted as overlap, and each
word's span covers its sound."""

import json

import numpy as np
import pytest
from pipelines.core.config import config_hash, load_config
from synth.audiotiming import error_table, extra_spans, sound_regions, word_audio_errors
from synth.job import SynthesizeStage, format_summary, make_items, summarize
from pipelines.core.turntaking import measure, measure_regions

LANGS = ["en", "fr", "de", "es", "it", "pt"]


def _w(ch, s, e):
    return {"channel": ch, "start_s": s, "end_s": e, "word": "x"}


def test_regions_and_words_share_one_arithmetic():
    words = [_w(0, 0.0, 1.0), _w(0, 1.1, 2.0), _w(0, 2.5, 3.0), _w(1, 3.3, 4.0), _w(0, 3.8, 5.0), _w(1, 4.5, 4.7)]
    regions = [[(w["start_s"], w["end_s"]) for w in words if w["channel"] == c] for c in (0, 1)]
    assert measure_regions(regions) == measure(words)


def test_word_errors_by_hand():
    words = [_w(0, 1.0, 1.5), _w(0, 1.6, 2.0), _w(1, 3.0, 3.5)]
    sound = [[(1.02, 2.1), (5.0, 5.5)], [(3.0, 3.45)]]
    e = word_audio_errors(words, sound)
    assert sorted(e["start_err_s"]) == pytest.approx([0.0, 0.02])
    assert sorted(e["end_err_s"]) == pytest.approx([-0.05, 0.1])
    assert e["outside_words_s"] == pytest.approx(0.5)  # 5.0-5.5 on channel 0: no word there
    t = error_table([e, e])
    assert t["ipus"] == 4 and t["end_abs_p95_s"] == pytest.approx(0.1, abs=0.01)


def test_extra_spans_are_what_augmentation_added():
    clean = [(1.0, 2.0), (4.0, 5.0)]
    aug = [(1.0, 2.3), (3.0, 3.02), (6.0, 7.0)]
    assert extra_spans(aug, clean) == [(2.0, 2.3), (6.0, 7.0)]  # a 20 ms blip is jitter


def test_sound_regions_of_silence_and_a_tone():
    sr = 16000
    x = np.zeros(3 * sr, np.float32)
    x[sr: 2 * sr] = 0.5 * np.sin(np.arange(sr) * 0.1)
    assert sound_regions(x, sr) == [(1.0, 2.0)]
    assert sound_regions(np.zeros(sr, np.float32), sr) == []


@pytest.mark.parametrize("lang,voice,text", [
    ("en", "en-us+m3", "Well, I think we should go to the market tomorrow morning."),
    ("fr", "fr+f2", "Oui, je pense que c'est une bonne idée, pour demain."),
    ("de", "de+m1", "Ich weiß nicht, ob das morgen klappt."),
    ("pt", "pt-br+f3", "Não sei se vou conseguir chegar cedo."),
    # the +f2 variant's breathy tail: ends at -35 dB fell 110-130 ms short of it
    ("en", "en-us+f2", "We should go to the cinema together some time."),
    ("es", "es+f2", "Ha llovido toda la semana."),
    ("de", "de+f2", "mhm"),
])
def test_espeak_words_cover_their_sound(lang, voice, text):
    from synth.tts.espeak import EspeakTTS
    a, sr, words = EspeakTTS(24000).synthesize(text, lang, voice=voice, pitch=50, rate=170)
    words = [{**w, "channel": 0} for w in words]
    e = word_audio_errors(words, [sound_regions(a, sr), []])
    assert e["outside_words_s"] == 0.0 and e["unheard_ipus"] == 0
    assert max(abs(x) for x in e["end_err_s"]) <= 0.02, e
    assert max(abs(x) for x in e["start_err_s"]) <= 0.06, e


@pytest.fixture(scope="module")
def echo_rows():
    """Six espeak dialogues (one per language) with the echo of channel 0 on every one."""
    cfg = load_config(overrides={"synth": {"roundtrip": {"enabled": False},
                                           "augment": {"echo": {"prob": 1.0, "gain_db": [-20.0, -18.0]}}}})
    st = SynthesizeStage.from_config(cfg)
    st.ensure_setup()
    items = list(make_items(None, 6, 13, LANGS, cfg, config_hash(cfg), "/unused"))
    return [st(it)["examples"][0] for it in items]


def test_echo_is_labelled_not_overlap(echo_rows):
    ps = [json.loads(r["params"]) for r in echo_rows]
    assert all("echo" in p["augment"] for p in ps)
    echo_s = sum(lab["end_s"] - lab["start_s"] for p in ps for lab in p["audio_labels"] if lab["label"] == "echo")
    assert echo_s > 5.0
    clean = sum(p["turn_taking_audio"]["overlap_s"] for p in ps)
    heard = sum(p["turn_taking_augmented"]["overlap_s"] for p in ps)
    assert heard > clean + 3.0  # the echo, heard by the VAD on channel 1, is kept out of the figure


def test_audio_figures_track_the_planned_ones(echo_rows):
    s = summarize(echo_rows)
    text = format_summary(s)
    print("\n" + text)
    assert "audio" in text and "planned" in text and "echo" in text
    pm, planned = s["per_minute"], s["per_minute_planned"]
    # the VAD hears ~70 ms past each IPU's last sound (silero's hangover and padding), so the audio
    # has a little more overlap than the words; echo counted as overlap gave about twice
    assert 0.8 < pm["overlap"] / planned["overlap"] < 1.5, (pm, planned)
    assert s["per_minute_augmented"]["overlap"] > 1.3 * pm["overlap"]
    wa = s["word_audio"]
    assert wa["ipus"] > 50 and wa["outside_words_s"] < 1.0 and wa["end_abs_p95_s"] <= 0.08, wa
    # the words cover their sound: it rarely goes on past the last word of a stretch of speech
    ends = [x for r in echo_rows for x in json.loads(r["params"])["word_audio"]["end_err_s"]]
    assert np.quantile(ends, 0.98) <= 0.02, sorted(ends)[-10:]
