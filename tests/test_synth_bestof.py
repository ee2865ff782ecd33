"""Best of N renditions per dialogue (synth.roundtrip.best_of): N candidates from their own seeds,
the round trip keeps the lowest CER; N = 1 is the plain rendition; bad settings are errors."""

import pytest
from pipelines.core.config import config_hash, load_config
from synth.job import RoundTripStage, SynthesizeStage, make_items
from synth.roundtrip import keep_best
from synth.stages import candidate_seed

SHORT = {"builtin": {"turns": [2, 2], "sentences_per_turn": [1, 2]}}


def _cfg(best_of: int, roundtrip: bool = True) -> dict:
    return load_config(overrides={"synth": {**SHORT, "roundtrip": {"enabled": roundtrip, "best_of": best_of}}})


def _item(cfg, lang="en"):
    return next(make_items(None, 1, 4, [lang], cfg, config_hash(cfg), "/unused"))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="needs synth.roundtrip.enabled"):
        SynthesizeStage.from_config(_cfg(3, roundtrip=False))
    with pytest.raises(ValueError, match="best_of must be >= 1"):
        RoundTripStage.from_config(_cfg(0))
    assert SynthesizeStage.from_config(_cfg(1, roundtrip=False)).params.best_of == 1


def test_candidates_differ_and_the_first_is_the_plain_rendition():
    one = SynthesizeStage.from_config(_cfg(1))(_item(_cfg(1)))["examples"]
    cfg = _cfg(3)
    it = SynthesizeStage.from_config(cfg)(_item(cfg))
    exs = it["examples"]
    assert len(one) == 1 and len(exs) == 3
    assert exs[0]["audio"] == one[0]["audio"] and exs[0]["words"] == one[0]["words"]  # same seed, same bytes
    seeds = [ex["seed"] for ex in exs]
    assert seeds == [candidate_seed(it["seed"], k) for k in range(3)] and len(set(seeds)) == 3
    assert len({ex["example_id"] for ex in exs}) == 3 and len({ex["audio"] for ex in exs}) == 3
    assert it["duration_s"] == exs[0]["duration_s"] and it["source"]["num_examples"] == 1


def test_keep_best_takes_the_lowest_cer_first_on_ties():
    def ex(i, c):
        return {"roundtrip_cer": c, "metrics": {"roundtrip_cer_mean": c}, "duration_s": 10.0 + i, "audio": b"x" * i}
    item = {"examples": [ex(1, 0.30), ex(2, 0.10), ex(3, 0.10)], "source": {"duration_s": 11.0, "bytes": 1}}
    keep_best(item)
    (best,) = item["examples"]
    assert best["metrics"]["best_of_kept"] == 1 and best["metrics"]["best_of_cers"] == [0.3, 0.1, 0.1]
    assert item["duration_s"] == 12.0 and item["source"] == {"duration_s": 12.0, "bytes": 2}


@pytest.mark.slow
def test_round_trip_keeps_the_best_of_real_renditions():
    """Whisper base on three espeak renditions of one short French dialogue (the language it
    hears worst): the kept one has the lowest measured CER of the three."""
    cfg = _cfg(3)
    rt = RoundTripStage.from_config(cfg)
    it = rt(SynthesizeStage.from_config(cfg)(_item(cfg, "fr")))
    assert it["status"] == "ok", it.get("rejections")
    (best,) = it["examples"]
    cers = best["metrics"]["best_of_cers"]
    assert len(cers) == 3 and best["roundtrip_cer"] == pytest.approx(min(cers), abs=1e-4)
    assert best["seed"] == candidate_seed(it["seed"], best["metrics"]["best_of_kept"])
