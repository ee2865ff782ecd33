"""Voice activity detection with silero-vad (bundled model), streamed over the work file in windows."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .config import section
from .stage import Stage

VAD_SR = 16000


def _vad_cfg(cfg: dict) -> dict:
    return section(cfg, "vad")


def merge_regions(regions: Iterable[tuple[float, float]], gap_s: float) -> list[list[float]]:
    """Sorted regions with gaps shorter than `gap_s` joined."""
    out: list[list[float]] = []
    for s, e in sorted(regions):
        if out and s - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([float(s), float(e)])
    return out


class SileroVad:
    """silero-vad over blocks of audio; regions from neighbouring windows are merged."""

    def __init__(self, vcfg: dict):
        from silero_vad import load_silero_vad
        self.v = vcfg
        self.model = load_silero_vad()

    def regions(self, audio16k: np.ndarray, offset_s: float = 0.0) -> list[list[float]]:
        import torch
        from silero_vad import get_speech_timestamps
        if len(audio16k) < 512:
            return []
        self.model.reset_states()
        ts = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio16k, dtype=np.float32)), self.model,
            threshold=float(self.v["threshold"]), sampling_rate=VAD_SR,
            min_speech_duration_ms=int(1000 * float(self.v["min_speech_s"])),
            min_silence_duration_ms=int(1000 * float(self.v["min_silence_s"])),
            speech_pad_ms=int(1000 * float(self.v["pad_s"])))
        return [[offset_s + t["start"] / VAD_SR, offset_s + t["end"] / VAD_SR] for t in ts]

    def file_regions(self, path: str, channel: int | None = None) -> list[list[float]]:
        """Speech regions of one channel (or the downmix) of a file, window by window."""
        from .audio import iter_blocks
        out: list[list[float]] = []
        t = 0.0
        for b in iter_blocks(path, VAD_SR, block_s=float(self.v["window_s"])):
            x = b[:, channel] if channel is not None else b.mean(axis=1)
            out.extend(self.regions(x, t))
            t += len(x) / VAD_SR
        return merge_regions(out, float(self.v["merge_gap_s"]))


class VadStage(Stage):
    """Speech regions of the work file: `speech` (downmix), and `speech_ch` for two-channel sources."""

    name = "vad"
    reads = ("work_path",)
    writes = ("speech", "speech_ch")
    uses_model = True

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.vad = SileroVad(_vad_cfg(self.cfg))

    def process(self, item: dict) -> dict:
        if item.get("two_channel"):
            per = [self.vad.file_regions(item["work_path"], ch) for ch in (0, 1)]
            item["speech_ch"] = per
            item["speech"] = merge_regions([tuple(r) for p in per for r in p], 0.0)
        else:
            item["speech"] = self.vad.file_regions(item["work_path"])
        sp = sum(e - s for s, e in item["speech"])
        self.counters.extra["speech_s"] = self.counters.extra.get("speech_s", 0.0) + sp
        if not item["speech"]:
            from .stage import reject
            reject(item, stage="vad", reason="no_speech", detail=f"{item['uri']}: VAD found no speech")
        return item
