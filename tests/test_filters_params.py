"""Filter thresholds are typed parameters from the YAML defaults; a missing one is an error."""

import numpy as np
import pytest
from filters.base import threshold
from filters.quality import QualityFilter, QualityParams
from filters.stage import FilterStage, build_filters
from filters.trust import TrustParams
from pipelines.core.config import default_config, load_config

from tandem.testing import filters as T


def test_partial_config_gets_the_yaml_defaults_key_by_key():
    # a config that sets one quality key keeps every other default (no NaN threshold)
    p = QualityParams.from_config({"filters": {"quality": {"min_snr_db": 7.0}}})
    d = default_config()["filters"]["quality"]
    assert p.min_snr_db == 7.0 and p.max_clipping_ratio == d["max_clipping_ratio"]
    assert p.min_dnsmos_ovrl == d["min_dnsmos_ovrl"]
    assert TrustParams.from_config({}).max_compression_ratio == default_config()["filters"]["trust"][
        "max_compression_ratio"]


@pytest.mark.parametrize("over,key", [
    ({"quality": {"max_clipping_ratio": None}}, "filters.quality.max_clipping_ratio"),
    ({"quality": {"min_snr_db": {"synthetic": 10.0}}}, "filters.quality.min_snr_db"),
    ({"trust": {"max_roundtrip_cer": {"fr": 0.5}}}, "filters.trust.max_roundtrip_cer"),
    ({"language": {"min_prob": None}}, "filters.language.min_prob"),
])
def test_missing_threshold_is_an_error_naming_the_key(over, key):
    cfg = load_config()
    for name, kv in over.items():  # replaced whole (a merge would keep the other kinds' defaults)
        cfg["filters"][name].update(kv)
    with pytest.raises((ValueError, KeyError), match=key.replace(".", r"\.")):
        FilterStage.from_config(cfg)
    with pytest.raises((ValueError, KeyError), match=key.replace(".", r"\.")):
        build_filters(cfg)


def test_key_absent_from_section_is_an_error():
    from filters.base import build_params
    sec = dict(default_config()["filters"]["quality"])
    del sec["min_bandwidth_hz"]
    with pytest.raises(KeyError, match=r"filters\.quality\.min_bandwidth_hz: missing"):
        build_params(QualityParams, sec, "filters.quality")


def test_threshold_resolution_per_kind_and_language():
    assert threshold({"real": 2.0, "synthetic": 1.8}, "k", "real") == 2.0
    assert threshold({"default": 0.35, "fr": 0.5}, "k", "synthetic", "fr") == 0.5
    assert threshold({"default": 0.35, "fr": 0.5}, "k", "synthetic", "en") == 0.35
    with pytest.raises(ValueError, match="k: no threshold for synthetic data in en"):
        threshold({"real": 2.0}, "k", "synthetic", "en")


def test_decide_never_passes_on_a_threshold_it_cannot_resolve():
    # a filter built by hand with a per-language map lacking the example's language fails loudly
    p = QualityParams.from_config({})
    p = QualityParams(**{**p.__dict__, "min_snr_db": {"default": 10.0}})
    qf = QualityFilter(p)
    ex = T.example(np.zeros((2, 2400), np.float32), kind="real", language="en")
    assert qf.decide({"q.snr_db": 5.0, "q.speech_ratio": 0.9, "q.level_dbfs": -20.0}, ex).reason == "snr_low"
    object.__setattr__(p, "min_snr_db", {"fr": 10.0})
    with pytest.raises(ValueError, match=r"filters\.quality\.min_snr_db: no threshold for real data in en"):
        qf.decide({"q.snr_db": 5.0, "q.speech_ratio": 0.9, "q.level_dbfs": -20.0}, ex)


def test_default_filter_stage_loads_no_asr():
    st = FilterStage.from_config(load_config())
    assert st.enabled == ("quality", "language", "trust") and st.asr_params is None
    # the synth job without its round-trip stage: the filter computes the CER, so it needs ASR
    st = FilterStage.from_config(load_config(overrides={"synth": {"roundtrip": {"enabled": False}}}))
    assert st.asr_params is not None
