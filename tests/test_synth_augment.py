"""User-channel augmentation: drawn parameters are what the audio measures, seeded, config complete."""

import copy

import numpy as np
import pytest
from pipelines.core.config import load_config
from synth.augment import augment_user_channel
from synth.params import AugmentParams, check_augment, from_dict

SR = 24000


def _params(c: dict) -> AugmentParams:
    return from_dict(AugmentParams, {**c, "enabled": True}, "synth.augment")


def _cfg(only: str, **over) -> AugmentParams:
    c = copy.deepcopy(load_config()["synth"]["augment"])
    c.pop("enabled")
    for k in c:
        c[k]["prob"] = 1.0 if k == only else 0.0
    c[only].update(over)
    return _params(c)


def _speechlike(seed=0, seconds=20.0) -> np.ndarray:
    """Two channels of bursts of harmonic tone (speech-like on/off), silence between."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(np.float32)
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 720, 1440), 1)) * 0.2 * env
    return np.stack([x, x * 0.8 + 0.001 * g.standard_normal(t.size)]).astype(np.float32)


def test_noise_at_the_drawn_snr_and_slope():
    a = _speechlike()
    out, d = augment_user_channel(a, SR, np.random.default_rng(3), _cfg("noise", snr_db=[15.0, 15.0],
                                                                         color_decay_db=[-3.0, -3.0]))
    assert set(d) == {"noise"} and d["noise"]["snr_db"] == 15.0
    noise = out[1].astype(np.float64) - a[1]
    active = np.abs(a[1]) > 1e-3
    snr = 10 * np.log10((a[1][active].astype(np.float64) ** 2).mean() / (noise ** 2).mean())
    assert snr == pytest.approx(15.0, abs=0.3)
    # spectral slope: power per Hz drops by about 3 dB per octave; octave bands hold twice the Hz
    spec = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(noise.size, 1 / SR)

    def band(lo):
        return spec[(f >= lo) & (f < 2 * lo)].mean()
    slopes = [10 * np.log10(band(2 * lo) / band(lo)) for lo in (250, 500, 1000, 2000)]
    assert np.mean(slopes) == pytest.approx(-3.0, abs=0.5)
    assert np.array_equal(out[0], a[0])  # channel 0 is never touched


def test_band_limit_and_gain_measure_as_drawn():
    t = np.arange(SR * 4) / SR
    x = (0.2 * np.sin(2 * np.pi * 100 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out, _ = augment_user_channel(np.stack([x, x]), SR, np.random.default_rng(0),
                                  _cfg("band_limit", low_hz=[300.0, 300.0], high_hz=[3400.0, 3400.0]))
    spec = np.abs(np.fft.rfft(out[1])) / np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1 / SR)
    assert 20 * np.log10(spec[np.argmin(abs(f - 100))]) < -20  # below the band: cut
    assert 20 * np.log10(spec[np.argmin(abs(f - 1000))]) == pytest.approx(0.0, abs=1.0)  # inside: kept
    out, _ = augment_user_channel(np.stack([x, x]), SR, np.random.default_rng(0), _cfg("gain", db=[-6.0, -6.0]))
    assert 20 * np.log10(np.abs(out[1]).max() / np.abs(x).max()) == pytest.approx(-6.0, abs=0.05)


def test_reverb_and_echo_leave_their_trace():
    a = _speechlike()
    a[0, :] = 0
    a[0, SR * 2] = 0.9  # a click on channel 0 only
    out, _ = augment_user_channel(a, SR, np.random.default_rng(1), _cfg("echo", delay_s=[0.25, 0.25],
                                                                        gain_db=[-20.0, -20.0]))
    lag = round(0.25 * SR)
    assert out[1, SR * 2 + lag] - a[1, SR * 2 + lag] == pytest.approx(0.9 * 10 ** (-20 / 20), rel=1e-3)
    imp = np.zeros((2, SR), np.float32)
    imp[1, 100] = 0.9
    out, _ = augment_user_channel(imp, SR, np.random.default_rng(2), _cfg("reverb", rt60_s=[0.4, 0.4],
                                                                          wet=[0.5, 0.5]))
    tail = out[1, 101:]
    e_early = (tail[: int(0.05 * SR)] ** 2).mean()
    e_at_rt60 = (tail[int(0.35 * SR): int(0.4 * SR)] ** 2).mean()
    # energy 0.35 s later is 50-60 dB down: the drawn RT60 (60 dB in 0.4 s)
    assert 45 < 10 * np.log10(e_early / e_at_rt60) < 65


def test_seeded_and_complete_config():
    a = _speechlike(seconds=6.0)
    c = copy.deepcopy(load_config()["synth"]["augment"])
    c.pop("enabled")
    x1, d1 = augment_user_channel(a, SR, np.random.default_rng(9), _params(c))
    x2, d2 = augment_user_channel(a, SR, np.random.default_rng(9), _params(c))
    x3, d3 = augment_user_channel(a, SR, np.random.default_rng(10), _params(c))
    assert np.array_equal(x1, x2) and d1 == d2 and (d3 != d1 or not np.array_equal(x1, x3))
    del c["reverb"]["wet"]
    with pytest.raises(KeyError, match=r"synth.augment.reverb: missing \['wet'\]"):
        check_augment(c)
    with pytest.raises(KeyError, match="unknown augmentation"):
        check_augment({**load_config()["synth"]["augment"], "chorus": {"prob": 0.1}})


def test_frequency_domain_band_limit_is_the_zero_phase_butterworth():
    """The FFT band filter equals filtering forward and backward with scipy's 2nd-order Butterworth
    high-pass and low-pass (what audiomentations' zero_phase 24 dB/octave filters do)."""
    from scipy.signal import butter, freqz_sos, sosfiltfilt
    from synth.augment import _filter, band_response
    n = 4800
    for lo, hi in ((200.0, 3000.0), (400.0, 3600.0)):
        bins = np.arange(n // 2 + 1) * SR / n
        _, h_hp = freqz_sos(butter(2, lo, "highpass", fs=SR, output="sos"), worN=bins, fs=SR)
        _, h_lp = freqz_sos(butter(2, hi, "lowpass", fs=SR, output="sos"), worN=bins, fs=SR)
        assert np.allclose(band_response(n, SR, lo, hi), np.abs(h_hp * h_lp) ** 2, atol=1e-5)
    x = _speechlike(seed=4, seconds=3.0)[1]
    ref = sosfiltfilt(butter(2, 3000.0, "lowpass", fs=SR, output="sos"),
                      sosfiltfilt(butter(2, 300.0, "highpass", fs=SR, output="sos"), x))
    got = _filter(x, SR, None, {"low_hz": 300.0, "high_hz": 3000.0})
    mid = slice(SR // 10, -SR // 10)  # away from the ends, where filtfilt pads by odd extension
    assert np.sqrt(np.mean((got[mid] - ref[mid]) ** 2)) < 1e-3 * np.sqrt(np.mean(ref[mid] ** 2))
