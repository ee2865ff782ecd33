"""Round trip: ASR each channel in the script's language; CER per language under a bound."""

import json

import pytest
from pipelines.core.config import config_hash, load_config
from synth.job import RoundTripStage, SynthesizeStage, cer, make_items

# about 3 minutes on 2 shared cores: ASR of six dialogues, two channels each
pytestmark = pytest.mark.slow

# Bounds on channel 0's CER for Whisper base on espeak voices, short built-in dialogues, job
# seed 11. Measured here: clean sentences per voice en 0.006-0.05, de 0.05-0.16, es 0.04-0.29,
# it 0.05-0.37, fr 0.17-0.69, pt-br 0.34-0.63; this seed's es dialogue 0.54 on channel 0, de 0.07.
# Whisper base hears espeak's French and Portuguese worst; bounds sit above the measured spread.
# English: one misheard phrase ("from home on Fridays" as "from foam on fly base") costs this
# seed's short dialogue 0.17 decoded one by one, 0.21 with the batched decoder (asr.batch_size 8),
# so its bound allows one such phrase in a two-turn dialogue.
BOUNDS = {"en": 0.3, "de": 0.45, "es": 0.65, "it": 0.5, "fr": 0.75, "pt": 0.75}


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides={"synth": {"builtin": {"turns": [2, 2], "sentences_per_turn": [1, 2]}}})


@pytest.fixture(scope="module")
def roundtrip(cfg):
    st = RoundTripStage.from_config(cfg)
    st.ensure_setup()
    return st


@pytest.fixture(scope="module")
def results(cfg, roundtrip):
    syn = SynthesizeStage.from_config(cfg)
    items = list(make_items(None, 6, 11, list(BOUNDS), cfg, config_hash(cfg), "/unused"))
    out = [roundtrip(syn(it)) for it in items]
    for it in out:
        assert it["status"] == "ok", it["rejections"]
    return {it["examples"][0]["language"]: it["examples"][0] for it in out}


@pytest.mark.parametrize("lang", sorted(BOUNDS))
def test_language_round_trips(results, lang):
    ex = results[lang]
    m = ex["metrics"]
    print("\nCER", lang, {k: round(v, 3) for k, v in m.items()}, json.loads(ex["params"])["voices"], flush=True)
    assert ex["roundtrip_cer"] == max(m["roundtrip_cer_ch0"], m["roundtrip_cer_ch1"])
    # channel 0 is clean TTS; channel 1 is augmented and holds short backchannels, on which
    # Whisper base sometimes hallucinates (CER above 1 on a few words), so it gets more room
    assert m["roundtrip_cer_ch0"] <= BOUNDS[lang]
    assert m["roundtrip_cer_mean"] <= BOUNDS[lang] + 0.25
    assert ex["segments"] and {s["channel"] for s in ex["segments"]} <= {0, 1}
    assert all(s["language"] == lang for s in ex["segments"])


def test_cer_discriminates(results):
    en, de = results["en"], results["de"]
    hyp = " ".join(s["text"] for s in en["segments"] if s["channel"] == 0)
    assert cer(en["text_ch0"], hyp) < BOUNDS["en"]
    assert cer(de["text_ch0"], hyp) > 0.5  # the wrong script scores badly
    assert cer("Hello, World!", "hello world") == 0.0
    assert cer("abc", "") == 1.0
