"""silero-vad, the one voice activity detector of tandem (curation VAD and the quality filter).

The ONNX build of the model shipped in the PyPI package: its per-chunk calls stay fast on a busy
CPU where the TorchScript build slowed 25-fold (measured).
"""

from __future__ import annotations

import numpy as np

from pipelines.core import spans

VAD_SR = 16000


class SileroVad:
    """Speech regions [start_s, end_s] of 16 kHz mono audio."""

    def __init__(self, *, threshold: float, min_speech_s: float, min_silence_s: float, pad_s: float,
                 window_s: float | None = None, merge_gap_s: float | None = None, threads: int = 1):
        import torch
        from silero_vad import load_silero_vad
        torch.set_num_threads(threads)
        self.threshold = float(threshold)
        self.min_speech_s = float(min_speech_s)
        self.min_silence_s = float(min_silence_s)
        self.pad_s = float(pad_s)
        self.window_s, self.merge_gap_s = window_s, merge_gap_s
        self.model = load_silero_vad(onnx=True)

    def regions(self, audio16k: np.ndarray, offset_s: float = 0.0) -> list[list[float]]:
        import torch
        from silero_vad import get_speech_timestamps
        if len(audio16k) < 512:  # one silero window
            return []
        ts = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio16k, dtype=np.float32)), self.model,
            threshold=self.threshold, sampling_rate=VAD_SR,
            min_speech_duration_ms=int(1000 * self.min_speech_s),
            min_silence_duration_ms=int(1000 * self.min_silence_s),
            speech_pad_ms=int(1000 * self.pad_s))
        return [[offset_s + t["start"] / VAD_SR, offset_s + t["end"] / VAD_SR] for t in ts]

    @classmethod
    def from_config(cls, v: dict, threads: int = 1) -> SileroVad:
        """From the `vad` config section."""
        return cls(threshold=v["threshold"], min_speech_s=v["min_speech_s"], min_silence_s=v["min_silence_s"],
                   pad_s=v["pad_s"], window_s=float(v["window_s"]), merge_gap_s=float(v["merge_gap_s"]),
                   threads=threads)

    def file_regions(self, path: str, channel: int | None = None) -> list[list[float]]:
        """Speech regions of one channel (or the downmix) of a file, window by window (bounded memory)."""
        from pipelines.io.audio import iter_blocks
        if self.window_s is None or self.merge_gap_s is None:
            raise ValueError("SileroVad.file_regions needs window_s and merge_gap_s (use from_config)")
        window_s, merge_gap_s = self.window_s, self.merge_gap_s
        out: list[list[float]] = []
        t = 0.0
        for b in iter_blocks(path, VAD_SR, block_s=window_s):
            x = b[:, channel] if channel is not None else b.mean(axis=1)
            out.extend(self.regions(x, t))
            t += len(x) / VAD_SR
        return spans.merge(out, merge_gap_s)
