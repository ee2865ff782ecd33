"""The `synth` section typed once at job assembly: every key has a type, and a missing, unknown or
ill-shaped key is an error naming it (no default in code)."""

import pytest
from synth.params import MainVoice, SynthSection, from_dict
from synth.stages import SynthParams


def test_section_is_typed_throughout():
    s = SynthSection.from_config({"synth": {"voices": {"main": {"en": {"name": "en-us+m3", "pitch": 45, "rate": 170}},
                                                       "bank": {"fr": ["fr+m3"], "pt": "/clips/pt"}}}})
    assert s.voices.main == {"en": MainVoice("en-us+m3", 45, 170)}
    assert s.voices.bank == {"fr": ("fr+m3",), "pt": "/clips/pt"} and s.voices.pitch == (30, 75)
    assert s.tts.piper.warps == (0.88, 1.0, 1.13) and s.tts.pocket.models == {} and s.llm.api_key is None
    assert s.augment.reverb.wet == (0.1, 0.4) and s.builtin.turns == (4, 12)
    p = SynthParams.from_config({})
    assert p.tts is not None and p.sample_rate == 24000 and p.languages == ("en", "fr", "de", "es", "it", "pt")


@pytest.mark.parametrize("over, err, msg", [
    ({"tts": {"piper": {"warpz": [1.0]}}}, KeyError, r"synth.tts.piper: unknown key\(s\) \['warpz'\]"),
    ({"voices": {"main": {"en": {"name": "x", "pitch": 40}}}}, KeyError, r"synth.voices.main.en.rate: missing"),
    ({"llm": {"turns": [9, 3]}}, ValueError, r"synth.llm.turns: expected a \[low, high\] range"),
    ({"voices": {"pitch": None}}, ValueError, r"synth.voices.pitch: must be set"),
    ({"tts": {"pocket": {"models": {"fr": ["a.yaml"]}}}}, ValueError, r"synth.tts.pocket.models.fr: expected str"),
    ({"flac_level": 9}, ValueError, r"synth.flac_level must be a FLAC compression level 0-8"),
])
def test_bad_settings_name_the_key(over, err, msg):
    with pytest.raises(err, match=msg):
        SynthSection.from_config({"synth": over})


def test_from_dict_needs_every_field():
    with pytest.raises(KeyError, match=r"synth.voices.main.en.pitch: missing"):
        from_dict(MainVoice, {"name": "x", "rate": 1}, "synth.voices.main.en")
