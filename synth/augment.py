"""Augment the user channel (channel 1): gain, background noise, reverb, echo of channel 0, band
limiting. Each applies with its own probability; every parameter is drawn from the Generator
passed in (never a global RNG) and returned, so the same seed gives the same bytes.

audiomentations does the gain and band-pass with the drawn values pinned (min = max, p = 1), so
its own random draws cannot change the result; noise and reverb impulse responses are made here
from the Generator.
"""

from __future__ import annotations

import numpy as np

ORDER = ("echo", "reverb", "band_limit", "noise", "gain")


_KEYS = {"gain": ("prob", "db"), "noise": ("prob", "snr_db", "color_decay_db"), "reverb": ("prob", "rt60_s", "wet"),
         "echo": ("prob", "delay_s", "gain_db"), "band_limit": ("prob", "low_hz", "high_hz")}


def check_augment(cfg: dict) -> None:
    """`synth.augment` must name every augmentation with all its parameters, and nothing else."""
    unknown = sorted(set(cfg) - set(ORDER) - {"enabled"})
    if unknown:
        raise KeyError(f"synth.augment: unknown augmentation(s) {unknown} (have {sorted(ORDER)})")
    for name in ORDER:
        if name not in cfg:
            raise KeyError(f"synth.augment.{name}: missing (no default in pipelines/core/defaults)")
        missing = [k for k in _KEYS[name] if k not in cfg[name]]
        extra = sorted(set(cfg[name]) - set(_KEYS[name]))
        if missing or extra:
            raise KeyError(f"synth.augment.{name}: missing {missing}, unknown {extra}")


def _u(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def augment_user_channel(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
                         cfg: dict) -> tuple[np.ndarray, dict]:
    """Augment channel 1 of float32 [2, T] in a copy; returns (audio, params applied). `cfg` is the
    `synth.augment` section (every augmentation, see check_augment).

    All draws are made up front in a fixed order, so turning one augmentation off does not
    change the parameters drawn for the others.
    """
    check_augment(cfg)
    c = cfg
    draws = {}
    for name in ORDER:
        a = c[name]
        on = bool(rng.random() < float(a["prob"]))
        if name == "gain":
            d = {"db": _u(rng, a["db"])}
        elif name == "noise":
            d = {"snr_db": _u(rng, a["snr_db"]), "color_decay_db": _u(rng, a["color_decay_db"]),
                 "noise_seed": int(rng.integers(2**31))}
        elif name == "reverb":
            d = {"rt60_s": _u(rng, a["rt60_s"]), "wet": _u(rng, a["wet"]), "ir_seed": int(rng.integers(2**31))}
        elif name == "echo":
            d = {"delay_s": _u(rng, a["delay_s"]), "gain_db": _u(rng, a["gain_db"])}
        else:
            d = {"low_hz": _u(rng, a["low_hz"]), "high_hz": _u(rng, a["high_hz"])}
        if on:
            draws[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}
    out = audio.astype(np.float32, copy=True)
    x = out[1].copy()  # float32 throughout: half the memory, FFT convolutions several times faster
    if "echo" in draws:
        d = draws["echo"]
        lag = round(d["delay_s"] * sample_rate)
        if lag < len(x):
            x[lag:] += 10 ** (d["gain_db"] / 20) * out[0, : len(x) - lag]
    if "reverb" in draws:
        x = _reverb(x, sample_rate, draws["reverb"])
    if "band_limit" in draws:
        x = _band_limit(x, sample_rate, draws["band_limit"])
    if "noise" in draws:
        x = x + _noise(x, sample_rate, draws["noise"])
    if "gain" in draws:
        from audiomentations import Gain
        g = draws["gain"]["db"]
        x = Gain(min_gain_db=g, max_gain_db=g, p=1.0)(x.astype(np.float32), sample_rate)
    out[1] = np.clip(x, -1.0, 1.0).astype(np.float32)
    return out, draws


def _reverb(x: np.ndarray, sr: int, d: dict) -> np.ndarray:
    """Exponentially decaying noise impulse response (a diffuse room), mixed wet/dry."""
    from scipy.signal import oaconvolve
    g = np.random.default_rng(d["ir_seed"])
    n = max(1, int(d["rt60_s"] * sr))
    t = np.arange(n) / sr
    ir = (g.standard_normal(n) * np.exp(-6.9078 * t / d["rt60_s"])).astype(np.float32)  # -60 dB at rt60
    ir /= np.sqrt((ir**2).sum()) + 1e-12
    wet = oaconvolve(x, ir)[: len(x)]  # overlap-add: a long dialogue costs blocks of the IR's size
    return ((1 - d["wet"]) * x + d["wet"] * wet).astype(np.float32)


def _band_limit(x: np.ndarray, sr: int, d: dict) -> np.ndarray:
    """Telephone-like band: 24 dB/octave high-pass and low-pass at the drawn cut-offs."""
    from audiomentations import HighPassFilter, LowPassFilter
    lo, hi = d["low_hz"], min(d["high_hz"], 0.45 * sr)
    y = x.astype(np.float32)
    y = HighPassFilter(min_cutoff_freq=lo, max_cutoff_freq=lo, min_rolloff=24, max_rolloff=24, zero_phase=True,
                       p=1.0)(y, sr)
    y = LowPassFilter(min_cutoff_freq=hi, max_cutoff_freq=hi, min_rolloff=24, max_rolloff=24, zero_phase=True,
                      p=1.0)(y, sr)
    return y.astype(np.float32)


NOISE_FIR = 4096  # taps of the colouring filter (6 Hz resolution at 24 kHz)


def _noise(x: np.ndarray, sr: int, d: dict) -> np.ndarray:
    """Coloured noise (spectral slope in dB per octave) scaled to the drawn SNR against the
    channel's active speech level: white noise through a linear-phase FIR with that slope."""
    from scipy import fft
    from scipy.signal import oaconvolve
    g = np.random.default_rng(d["noise_seed"])
    white = g.standard_normal(len(x), dtype=np.float32)
    f = fft.rfftfreq(NOISE_FIR, 1 / sr)
    f[0] = f[1]
    h = fft.irfft((f / 1000.0) ** (d["color_decay_db"] / 20 / np.log10(2)), NOISE_FIR)
    h = (np.roll(h, NOISE_FIR // 2) * np.hanning(NOISE_FIR)).astype(np.float32)
    noise = oaconvolve(white, h, mode="same")
    active = np.abs(x) > 1e-3
    p_sig = float((x[active].astype(np.float64) ** 2).mean()) if active.any() else 1e-4
    p_noise = float((noise.astype(np.float64) ** 2).mean()) + 1e-20
    return (noise * np.sqrt(p_sig / p_noise / 10 ** (d["snr_db"] / 10))).astype(np.float32)
