"""Ingest: decode any common audio file, resample, loudness-normalise, write the work WAV.

Two streaming passes over the input (a file of hours is never held whole): the first measures
loudness, peak, the PCM hash (the source id) and whether the two channels carry two separate
speakers; the second applies the gain and writes OUT/_work/<source_id>.wav block by block.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pipelines.core.config import typed_section
from pipelines.core.stage import Resources, Stage, reject
from pipelines.io.audio import AudioError

# BS.1770 loudness (pyloudnorm) is defined for up to five channels
MAX_CHANNELS = 5


@dataclass(frozen=True)
class IngestParams:
    """The `ingest` config section (meanings in pipelines/core/defaults/10_curate.yaml)."""

    sample_rate: int
    target_lufs: float
    peak_limit: float
    min_duration_s: float
    max_duration_s: float
    block_s: float
    two_channel_max_corr: float
    two_channel_min_exclusive: float
    frame_s: float
    active_db: float


class _Measure:
    """Running statistics over decoded blocks: loudness, peak, PCM hash, channel independence."""

    def __init__(self, sr: int, ch: int, p: IngestParams):
        self.sr, self.ch, self.p = sr, ch, p
        self.hash = hashlib.sha256()
        self.frames = 0
        self.peak = 0.0
        # sum over blocks of 10^(L/10) * seconds, for the channels as they are and their downmix
        self.power = np.zeros(2)
        self.loud_s = np.zeros(2)
        self.sxx = np.zeros((ch, ch))
        self.excl = np.zeros(2)  # frames where only ch0 / only ch1 is active
        self.nfr = 0

    def add(self, b: np.ndarray) -> None:
        import pyloudnorm
        self.hash.update((np.clip(b, -1, 1) * 32767).astype("<i2").tobytes())
        self.frames += len(b)
        self.peak = max(self.peak, float(np.abs(b).max(initial=0.0)))
        if len(b) >= int(0.4 * self.sr):
            meter = pyloudnorm.Meter(self.sr)
            for i, x in enumerate((b, b.mean(axis=1))):
                lufs = meter.integrated_loudness(x)
                if np.isfinite(lufs):
                    self.power[i] += 10 ** (lufs / 10) * len(b) / self.sr
                    self.loud_s[i] += len(b) / self.sr
        if self.ch == 2:
            self.sxx += b.T.astype(np.float64) @ b.astype(np.float64)
            n = int(self.p.frame_s * self.sr)
            k = len(b) // n
            if k:
                e = (b[: k * n].reshape(k, n, 2) ** 2).mean(axis=1)
                act = 10 * np.log10(e + 1e-12) > self.p.active_db
                self.excl += [(act[:, 0] & ~act[:, 1]).sum(), (act[:, 1] & ~act[:, 0]).sum()]
                self.nfr += k

    @property
    def source_id(self) -> str:
        return self.hash.hexdigest()[:32]

    def lufs(self, downmix: bool) -> float:
        """Block-wise integrated loudness (duration-weighted energy mean of per-block BS.1770)."""
        i = int(downmix)
        return float(10 * np.log10(self.power[i] / self.loud_s[i])) if self.loud_s[i] > 0 else float("nan")

    def two_channel(self) -> tuple[bool, float]:
        """Two speakers on two channels: low correlation and each channel speaking alone often."""
        if self.ch != 2 or self.nfr == 0:
            return False, float("nan")
        d = np.sqrt(self.sxx[0, 0] * self.sxx[1, 1])
        corr = float(self.sxx[0, 1] / d) if d > 0 else 1.0
        ex = self.excl / self.nfr
        ok = corr < self.p.two_channel_max_corr and ex.min() >= self.p.two_channel_min_exclusive
        return bool(ok), corr


class IngestStage(Stage):
    """Decode, measure, normalise and write the work file; reject what cannot be used, naming why."""

    name = "ingest"
    reads = ("uri", "out_dir")
    writes = ("source_id", "work_path", "sample_rate", "channels", "duration_s", "format",
              "orig_sample_rate", "orig_channels", "bytes", "two_channel")

    def __init__(self, params: IngestParams, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.params = params
        self.sr = params.sample_rate

    @classmethod
    def from_config(cls, cfg: dict) -> IngestStage:
        return cls(typed_section(IngestParams, cfg, "ingest", sample_rate=int(cfg["sample_rate"])),
                   resources=Resources.for_stage(cfg, cls.name))

    def process(self, item: dict) -> dict:
        import soundfile as sf
        from pipelines.io.audio import iter_blocks, probe
        uri = item["uri"]
        p = Path(uri)
        ic = self.params
        if not p.exists():
            return reject(item, stage="ingest", reason="missing", detail=f"{uri}: file not found")
        if not p.is_file():  # a directory, a FIFO (reading it would block), a device
            return reject(item, stage="ingest", reason="not_a_file", detail=f"{uri}: not a regular file")
        size = p.stat().st_size
        item["bytes"] = size
        if size == 0:
            return reject(item, stage="ingest", reason="empty", detail=f"{uri}: file is empty (0 bytes)")
        try:
            info = probe(p)
        except AudioError as e:
            return reject(item, stage="ingest", reason=e.reason, detail=str(e))
        item.update(format=str(info["format"]), orig_sample_rate=int(info["sample_rate"]),
                    orig_channels=int(info["channels"]))
        ch = int(info["channels"])
        if ch < 1 or info["sample_rate"] <= 0:
            return reject(item, stage="ingest", reason="decode_error", detail=f"{uri}: no audio channels")
        if ch > MAX_CHANNELS:
            return reject(item, stage="ingest", reason="unsupported_channels",
                          detail=f"{uri}: {ch} audio channels; tandem ingests 1 to {MAX_CHANNELS} "
                                 "(mono, a two-party call, up to 5.0 surround): downmix it first")
        m = _Measure(self.sr, ch, ic)
        try:
            for b in iter_blocks(p, self.sr, block_s=ic.block_s):
                m.add(b)
        except AudioError as e:  # iter_blocks names the file; the measure does not
            detail = str(e) if str(e).startswith(str(p)) else f"{uri}: {e}"
            return reject(item, stage="ingest", reason=e.reason, detail=detail)
        dur = m.frames / self.sr
        item["duration_s"] = dur
        if m.frames == 0:
            return reject(item, stage="ingest", reason="empty", detail=f"{uri}: no audio frames")
        if dur < ic.min_duration_s:
            return reject(item, stage="ingest", reason="too_short",
                          detail=f"{uri}: {dur:.2f} s, shorter than ingest.min_duration_s={ic.min_duration_s}")
        if dur > ic.max_duration_s:
            return reject(item, stage="ingest", reason="too_long",
                          detail=f"{uri}: {dur:.0f} s, longer than ingest.max_duration_s={ic.max_duration_s}")
        if m.peak <= 1e-5:
            return reject(item, stage="ingest", reason="silent", detail=f"{uri}: digital silence")
        two, corr = m.two_channel()
        lufs = m.lufs(downmix=not two)
        gain = 1.0 if not np.isfinite(lufs) else 10 ** ((ic.target_lufs - lufs) / 20)
        gain = min(gain, ic.peak_limit / m.peak)  # never clip
        out_ch = 2 if two else 1
        sid = m.source_id
        # keyed by work item too: two names for one recording run side by side until the writer
        # keeps one, and neither may delete the other's file
        work = Path(item["out_dir"]) / "_work" / f"{sid}-{item['work_key'][:8]}.wav"
        work.parent.mkdir(parents=True, exist_ok=True)
        tmp = work.with_name(f"{sid}.{os.getpid()}.tmp.wav")
        with sf.SoundFile(str(tmp), "w", samplerate=self.sr, channels=out_ch, subtype="PCM_16", format="WAV") as f:
            for b in iter_blocks(p, self.sr, block_s=ic.block_s):
                x = b if two else b.mean(axis=1, keepdims=True)
                f.write(np.clip(x * gain, -1.0, 1.0))
        os.replace(tmp, work)
        item.update(source_id=sid, work_path=str(work), sample_rate=self.sr, channels=out_ch,
                    two_channel=two, loudness_lufs=float(lufs), gain_db=float(20 * np.log10(gain)),
                    channel_corr=corr)
        return item
