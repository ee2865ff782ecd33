"""Quality filter on inputs the tests make: noise, silence, a chord, clipped and noisy speech."""

import numpy as np
import pytest
import soxr
from filters.quality import QualityFilter, bandwidth_hz, clipping_ratio, wada_snr
from pipelines.core.config import load_config
from pipelines.io.audio import decode_flac
from pipelines.models.dnsmos import Dnsmos

from tandem.testing import filters as T


@pytest.fixture(scope="session")
def cfg():
    # DNSMOS is the slow part: tested once on its own below
    return load_config(overrides={"filters": {"quality": {"dnsmos": False}}})


@pytest.fixture(scope="session")
def qf(cfg):
    return QualityFilter.from_config(cfg).load(threads=2)


@pytest.fixture(scope="session")
def speech():
    audio, words, texts = T.dialogue("en")
    return audio, words, texts


def judge(qf, cfg, audio, kind="synthetic"):
    ex = T.example(audio, kind=kind, language="en")
    a, _ = decode_flac(ex["audio"])
    m = qf.measure(ex, a)
    return qf.decide(m, ex), m


def test_clean_speech_passes(qf, cfg, speech):
    d, m = judge(qf, cfg, speech[0])
    assert d.keep, d.detail
    assert m["q.speaking_channels"] == 2 and m["q.speech_ratio"] > 0.6


@pytest.mark.parametrize("name,reason", [("noise", "noise"), ("silence", "silence"), ("chord", "music")])
def test_non_speech_rejected_with_reason(qf, cfg, name, reason):
    a = {"noise": T.white_noise(5, seed=1), "silence": T.silence(5), "chord": T.chord(5)}[name]
    d, _m = judge(qf, cfg, a, kind="real")
    assert not d.keep and d.reason == reason, (d.reason, d.detail)
    assert d.filter == "quality" and d.metrics


def test_clipped_speech_rejected(qf, cfg, speech):
    a = np.stack([T.clip(speech[0][0]), T.clip(speech[0][1])])
    d, m = judge(qf, cfg, a)
    assert not d.keep and d.reason == "clipping", d.detail
    assert m["q.clipping"] > 0.01


def test_noisy_speech_rejected_for_snr(qf, cfg, speech):
    a = np.stack([T.add_noise(speech[0][0], 3, seed=1), speech[0][1]])
    d, m = judge(qf, cfg, a)
    assert not d.keep and d.reason == "snr_low", d.detail
    assert m["q.snr_db.ch0"] < 10 < m["q.snr_db.ch1"]  # measured per channel, on its speech


def test_listening_channel_silent_is_fine(qf, cfg, speech):
    a = speech[0].copy()
    a[1] = 0.0
    d, m = judge(qf, cfg, a)
    assert d.keep, d.detail
    assert m["q.speaking_channels"] == 1


def test_wada_snr_tracks_added_noise(speech):
    x = speech[0][0][np.abs(speech[0][0]) > 0]
    est = [wada_snr(T.add_noise(x, s, seed=2)) for s in (0, 10, 20)]
    assert est[0] < est[1] < est[2]
    assert abs(est[1] - 10) < 5


def test_bandwidth_and_clipping_measures(speech):
    x = speech[0][0]
    tel = soxr.resample(soxr.resample(x, 24000, 8000), 8000, 24000)
    assert 3000 < bandwidth_hz(tel, 24000) < 4200
    assert bandwidth_hz(x, 24000) > 9000  # espeak renders at 22.05 kHz
    assert clipping_ratio(x) == 0.0
    assert clipping_ratio(T.clip(x)) > 0.01


def test_dnsmos_scores_clean_above_noisy(speech):
    x = speech[0][0][: 24000 * 4]
    dn = Dnsmos(threads=1)
    clean = dn(soxr.resample(x, 24000, 16000))["ovrl"]
    noisy = dn(soxr.resample(T.add_noise(x, 0, seed=3), 24000, 16000))["ovrl"]
    assert 1.8 < clean < 3.5 and noisy < clean - 0.3, (clean, noisy)


def test_welch_matches_scipy():
    from scipy.signal import welch
    from filters.quality import _welch_db
    x = np.random.default_rng(0).standard_normal(16000 * 7 + 13) * 0.1 + 0.01
    for n in (700, 1024, len(x)):
        f, p = welch(x[:n], fs=16000, nperseg=min(1024, n))
        f2, pdb = _welch_db(x[:n], 16000)
        assert np.array_equal(f, f2) and np.allclose(10 * np.log10(p + 1e-20), pdb, atol=1e-9)


def test_upstream_regions_stand_in_for_silero(cfg, qf, speech):
    """Given each channel's own VAD regions, measure() gives the metrics its silero pass gives."""
    from pipelines.io.audio import resample
    ex = T.example(speech[0], kind="real", language="en")
    a, sr = decode_flac(ex["audio"])
    regions = [qf.vad.regions(resample(a[c], sr, 16000)) for c in range(a.shape[0])]
    own, given = qf.measure(ex, a), qf.measure(ex, a, regions)
    assert own.keys() == given.keys()
    assert all(own[k] == given[k] or (np.isnan(own[k]) and np.isnan(given[k])) for k in own), (own, given)
    with pytest.raises(ValueError, match="channels of speech regions"):
        qf.measure(ex, a, regions[:1])


def test_dnsmos_windows_batched_as_one_by_one(speech):
    from pipelines.models.dnsmos import window_starts
    x = soxr.resample(speech[0][0], 24000, 16000)[: 16000 * 12]
    n = 16000 * 25
    assert window_starts(n, 1.0) == [round(v) for v in np.linspace(0, n - 144160, 17)]
    assert window_starts(n, 9.01) == [0, (n - 144160) // 2, n - 144160]  # every sample scored
    assert window_starts(144160, 9.01) == [0] and window_starts(100, 9.01) == []
    one, four = Dnsmos(threads=1, batch=1), Dnsmos(threads=1, batch=4)
    clips = [x, x[: 16000 * 3], np.zeros(0, np.float32)]
    a, b = one.score_many(clips), four.score_many(clips)
    assert all(np.allclose(list(p.values()), list(q.values())) for p, q in zip(a[:2], b[:2], strict=True))
    assert a[0] == one(x) and np.isnan(b[2]["ovrl"])
