"""Audio quality per example and per channel: level, speech ratio, silences, clipping, WADA-SNR,
bandwidth, spectral flatness and DNSMOS, each measured on the speech parts of each channel.

A two-channel example legitimately has one side silent while the other speaks, so per-channel
metrics are taken over that channel's speech (the regions the curation VAD found, handed over by the
filter stage; silero here for examples that come without them) and the example-level value is the
worst speaking channel. Pure noise, silence and music are told apart when no speech is found.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from filters.base import (
    NAN,
    Decision,
    Filter,
    FilterParams,
    Threshold,
    finite,
    fmt,
    num,
    threshold,
)
from pipelines.core import spans

SR16 = 16000
EPS = 1e-10


# ---- signal metrics (pure functions, no model) -------------------------------------------------

def dbfs(x: np.ndarray) -> float:
    """RMS level in dB relative to full scale; -120 for digital silence."""
    if x.size == 0:
        return -120.0
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * math.log10(r) if r > 1e-6 else -120.0


@functools.lru_cache(maxsize=1)
def _wada_table() -> tuple[np.ndarray, np.ndarray]:
    """G(SNR) for gamma(0.4)-distributed speech plus Gaussian noise (Kim & Stern 2008).

    Built by Monte Carlo with a fixed seed (0) so every machine gets the same table; the ends
    match the closed forms (Gaussian 0.4094, gamma(0.4) 1.645).
    """
    rng = np.random.default_rng(0)
    n = 200_000
    s = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    s /= np.sqrt(np.mean(s ** 2))
    g = rng.standard_normal(n)
    snrs = np.arange(-20.0, 101.0, 1.0)
    vals = []
    for snr in snrs:
        z = np.abs(s + g * 10 ** (-snr / 20)) + EPS
        vals.append(math.log(z.mean()) - np.log(z).mean())
    return snrs, np.array(vals)


def wada_snr(x: np.ndarray) -> float:
    """Waveform-amplitude-distribution SNR estimate (dB), clamped to [-20, 100]."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 1000 or np.max(np.abs(x)) < 1e-6:
        return NAN
    a = np.abs(x / np.max(np.abs(x)))
    a[a < EPS] = EPS
    g = math.log(a.mean()) - np.log(a).mean()
    snrs, vals = _wada_table()
    # vals increase with SNR
    return float(np.interp(g, vals, snrs))


def clipping_ratio(x: np.ndarray) -> float:
    """Share of samples sitting on a flat top at the channel's own peak (runs of >= 2 equal samples
    within 0.1% of the peak). Scale-free: clipping survives later gain changes."""
    x = np.asarray(x, dtype=np.float32)
    if x.size < 2:
        return 0.0
    peak = float(np.max(np.abs(x)))
    if peak < 1e-4:
        return 0.0
    at = np.abs(x) >= peak * 0.999
    run = at[1:] & at[:-1] & (np.abs(x[1:] - x[:-1]) <= peak * 1e-3)
    flat = np.zeros_like(at)
    flat[1:] |= run
    flat[:-1] |= run
    return float(flat.mean())


def _welch_db(x: np.ndarray, sr: int, nperseg: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.welch's defaults (Hann, half overlap, constant detrend, one-sided density) in
    dB, with the segments transformed in blocks: scipy detrends and transforms segment by segment
    in Python, 4x slower on minutes of audio (the same values to 1e-15)."""
    from scipy.signal import get_window
    x = np.asarray(x, dtype=np.float64)
    n = min(nperseg, len(x))
    step = n - n // 2
    win = get_window("hann", n)
    k = (len(x) - n) // step + 1
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::step][:k]
    p = np.zeros(n // 2 + 1)
    for i in range(0, k, 512):  # bounded memory on long audio
        f = frames[i:i + 512]
        p += np.sum(np.abs(np.fft.rfft((f - f.mean(axis=1, keepdims=True)) * win, axis=1)) ** 2, axis=0)
    p /= k * sr * np.sum(win ** 2)
    p[1:-1 if n % 2 == 0 else None] *= 2  # one-sided: DC (and Nyquist) appear once
    return np.fft.rfftfreq(n, 1 / sr), 10 * np.log10(p + 1e-20)


def bandwidth_hz(x: np.ndarray, sr: int, cliff_db: float = 25.0) -> float:
    """Where the spectrum falls off a cliff and stays down: the upper band edge of band-limited
    audio (8 kHz telephone audio upsampled stops at 4 kHz). Speech rolls off gradually and noise is
    flat, so audio without a cliff counts as full band (sr / 2)."""
    if x.size < 512 or np.max(np.abs(x)) < 1e-5:
        return NAN
    f, p = _welch_db(x, sr)
    df = f[1] - f[0]
    w0, w1 = max(1, int(100 / df)), max(2, int(600 / df))
    n = len(p)
    cs = np.concatenate([[0.0], np.cumsum(p)])
    i = np.arange(max(int(np.searchsorted(f, 1000.0)), w1), n - w1)
    left = (cs[i - w0 + 1] - cs[i - w1]) / (w1 - w0 + 1)
    right = (cs[i + w1 + 1] - cs[i + w0]) / (w1 - w0 + 1)
    tail_max = np.maximum.accumulate(p[::-1])[::-1]  # max of p[j:] for each j
    ok = (left - right >= cliff_db) & (tail_max[i + w0] <= left - cliff_db / 2)
    if ok.any():
        return float(f[i[np.argmax(ok)]])
    return float(sr / 2)


def spectral_flatness(x: np.ndarray, sr: int) -> float:
    """Geometric over arithmetic mean of the power spectrum in 100 Hz - 8 kHz: about 1 for white
    noise, near 0 for tones and music."""
    if x.size < 512 or np.max(np.abs(x)) < 1e-5:
        return NAN
    f, pdb = _welch_db(x, sr)
    band = (f >= 100) & (f <= min(8000, sr / 2))
    p = 10 ** (pdb[band] / 10)
    return float(np.exp(np.mean(np.log(p + 1e-20))) / (np.mean(p) + 1e-20))


def regions_union(regions: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    return [(s, e) for s, e in spans.merge((r for rs in regions for r in rs), 0.0)]


def longest_gap(regions: list[tuple[float, float]], duration: float) -> float:
    """Longest stretch with no speech, leading and trailing silence included."""
    t, gap = 0.0, 0.0
    for s, e in regions:
        gap = max(gap, s - t)
        t = max(t, e)
    return max(gap, duration - t)


def cut(x: np.ndarray, sr: int, regions: list[tuple[float, float]], pad: float = 0.05) -> np.ndarray:
    parts = [x[max(0, int((s - pad) * sr)): int((e + pad) * sr)] for s, e in regions]
    parts = [p for p in parts if p.size]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=x.dtype)


# ---- the filter -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QualityParams(FilterParams):
    """filters.quality (meanings and measurements in pipelines/core/defaults/30_filters.yaml)."""

    section: ClassVar[str] = "quality"

    vad_threshold: float
    min_channel_speech_s: float
    dnsmos: bool
    dnsmos_hop_s: float
    dnsmos_batch: int
    silence_dbfs: Threshold
    no_speech_ratio: Threshold
    noise_flatness: Threshold
    min_speech_ratio: Threshold
    max_clipping_ratio: Threshold
    min_snr_db: Threshold
    min_dnsmos_ovrl: Threshold
    bandwidth_cliff_db: float
    min_bandwidth_hz: Threshold
    max_silence_s: Threshold


class QualityFilter(Filter):
    """Signal quality; per-channel values go in metrics as `q.<name>.ch<i>`."""

    name = "quality"

    def __init__(self, params: QualityParams, vad=None, dnsmos=None, asr=None):
        self.p = params
        self.vad = vad
        self.dnsmos = dnsmos

    @classmethod
    def from_config(cls, cfg: dict) -> QualityFilter:
        return cls(QualityParams.from_config(cfg))

    def check(self) -> None:
        from pipelines.models.registry import dnsmos_dir, silero_path
        silero_path()
        if self.p.dnsmos:
            dnsmos_dir()

    def setup(self, threads: int = 1) -> None:
        self.load(threads)

    def load(self, threads: int = 1) -> QualityFilter:
        if self.vad is None:
            from pipelines.models.vad import SileroVad
            # silero's own defaults for the region shape: the filter measures speech, it does not cut it
            self.vad = SileroVad(threshold=self.p.vad_threshold, min_speech_s=0.25, min_silence_s=0.1,
                                 pad_s=0.03, threads=threads)
        if self.dnsmos is None and self.p.dnsmos:
            from pipelines.models.dnsmos import Dnsmos
            self.dnsmos = Dnsmos(threads, hop_s=self.p.dnsmos_hop_s, batch=self.p.dnsmos_batch)
        return self

    def measure(self, example: dict, audio: np.ndarray | None,
                regions: list[list[tuple[float, float]]] | None = None) -> dict[str, float]:
        """`regions`: per channel, the speech regions (s, example time) the curation VAD already
        found; without them (synthetic examples) silero runs on each channel here."""
        from pipelines.io.audio import resample
        if audio is None:
            raise ValueError(f"example {example.get('example_id')}: quality filter needs audio")
        if regions is not None and len(regions) != audio.shape[0]:
            raise ValueError(f"example {example.get('example_id')}: {len(regions)} channels of speech "
                             f"regions for {audio.shape[0]} audio channels")
        if self.vad is None and regions is None:
            self.load()
        min_ch_speech = self.p.min_channel_speech_s
        sr = int(example.get("sample_rate") or 24000)
        dur = audio.shape[1] / sr
        m: dict[str, float] = {}
        all_regions = []
        speaking = []
        clips = {}  # speaking channel -> its 16 kHz speech, scored by DNSMOS in one batch
        for c in range(audio.shape[0]):
            x = audio[c]
            x16 = None
            if regions is None:
                x16 = resample(x, sr, SR16)
                ch_regions = self.vad.regions(x16)
            else:
                ch_regions = [(float(s), float(e)) for s, e in regions[c]]
            all_regions.append(ch_regions)
            sp = cut(x, sr, ch_regions)
            speech_s = sum(e - s for s, e in ch_regions)
            m[f"q.speech_s.ch{c}"] = speech_s
            m[f"q.level_dbfs.ch{c}"] = dbfs(sp) if sp.size else dbfs(x)
            m[f"q.clipping.ch{c}"] = clipping_ratio(x)
            m[f"q.flatness.ch{c}"] = spectral_flatness(x, sr)
            src = sp if speech_s >= min_ch_speech else x
            m[f"q.snr_db.ch{c}"] = wada_snr(src)
            m[f"q.bandwidth_hz.ch{c}"] = bandwidth_hz(src, sr, self.p.bandwidth_cliff_db)
            if speech_s >= min_ch_speech:
                speaking.append(c)
                if self.dnsmos is not None:
                    # cutting first then resampling only the speech: the same samples up to the
                    # resampler's edge effects at the cuts
                    clips[c] = cut(x16, SR16, ch_regions) if x16 is not None else resample(sp, sr, SR16)
        if clips:
            for c, d in zip(clips, self.dnsmos.score_many(list(clips.values())), strict=True):
                for k, v in d.items():
                    m[f"q.dnsmos_{k}.ch{c}"] = v
        union = regions_union(all_regions)
        chans = range(audio.shape[0])
        m["q.speech_ratio"] = sum(e - s for s, e in union) / dur if dur > 0 else 0.0
        m["q.longest_silence_s"] = longest_gap(union, dur)
        m["q.level_dbfs"] = max((m[f"q.level_dbfs.ch{c}"] for c in chans), default=-120.0)
        m["q.clipping"] = max((m[f"q.clipping.ch{c}"] for c in chans), default=0.0)
        # no speaking channel: judge the loudest one (noise, music)
        judged = speaking or [max(chans, key=lambda c: m[f"q.level_dbfs.ch{c}"])]
        m["q.speaking_channels"] = float(len(speaking))
        m["q.flatness"] = _nanmax(m[f"q.flatness.ch{c}"] for c in judged)
        m["q.snr_db"] = _nanmin(m[f"q.snr_db.ch{c}"] for c in judged)
        m["q.bandwidth_hz"] = _nanmin(m[f"q.bandwidth_hz.ch{c}"] for c in judged)
        m["q.dnsmos_ovrl"] = _nanmin(m.get(f"q.dnsmos_ovrl.ch{c}", NAN) for c in speaking)
        return m

    def decide(self, metrics: dict, example: dict) -> Decision:
        kind, lang = example.get("kind"), example.get("language")

        def t(key):
            return threshold(getattr(self.p, key), f"filters.quality.{key}", kind, lang)

        m = {k: num(metrics, k) for k in ("q.level_dbfs", "q.speech_ratio", "q.flatness", "q.clipping",
                                          "q.snr_db", "q.dnsmos_ovrl", "q.bandwidth_hz",
                                          "q.longest_silence_s")}
        keep = {k: v for k, v in m.items() if finite(v)}

        def rej(reason, detail):
            return Decision.reject(self.name, reason, detail, keep)

        if finite(m["q.level_dbfs"]) and m["q.level_dbfs"] < t("silence_dbfs"):
            return rej("silence", f"level {fmt(m['q.level_dbfs'])} dBFS < {t('silence_dbfs')} dBFS")
        sr_ = m["q.speech_ratio"]
        if finite(sr_) and sr_ < t("no_speech_ratio"):
            flat = m["q.flatness"]
            if finite(flat) and flat >= t("noise_flatness"):
                return rej("noise", f"no speech found (speech ratio {fmt(sr_)}); broadband noise "
                                    f"(spectral flatness {fmt(flat)} >= {t('noise_flatness')})")
            return rej("music", f"no speech found (speech ratio {fmt(sr_)}); tonal non-speech audio such as "
                                f"music (spectral flatness {fmt(flat)} < {t('noise_flatness')})")
        if finite(sr_) and sr_ < t("min_speech_ratio"):
            return rej("speech_ratio_low", f"speech ratio {fmt(sr_)} < {t('min_speech_ratio')}")
        checks = [
            ("clipping", "q.clipping", ">", "max_clipping_ratio", "clipped samples ratio"),
            ("snr_low", "q.snr_db", "<", "min_snr_db", "WADA-SNR dB"),
            ("dnsmos_low", "q.dnsmos_ovrl", "<", "min_dnsmos_ovrl", "DNSMOS overall"),
            ("bandwidth_low", "q.bandwidth_hz", "<", "min_bandwidth_hz", "bandwidth Hz"),
            ("long_silence", "q.longest_silence_s", ">", "max_silence_s", "longest silence s"),
        ]
        for reason, key, op, tkey, what in checks:
            v, lim = m[key], t(tkey)
            if finite(v) and ((v > lim) if op == ">" else (v < lim)):
                return rej(reason, f"{what} {fmt(v)} {op} {'max' if op == '>' else 'min'} {lim:g} ({kind})")
        return Decision.ok(self.name)


def _nanmin(vals) -> float:
    v = [x for x in vals if finite(x)]
    return min(v) if v else NAN


def _nanmax(vals) -> float:
    v = [x for x in vals if finite(x)]
    return max(v) if v else NAN
