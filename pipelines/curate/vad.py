"""The VAD stage: speech regions of each work file (silero), streamed in windows."""

from __future__ import annotations

from tandem.pipelines.core.config import section
from tandem.pipelines.core.stage import Stage
from tandem.pipelines.models.vad import SileroVad, merge_regions


def _vad_cfg(cfg: dict) -> dict:
    return section(cfg, "vad")


class VadStage(Stage):
    """Speech regions of the work file: `speech` (downmix), and `speech_ch` for two-channel sources."""

    name = "vad"
    reads = ("work_path",)
    writes = ("speech", "speech_ch")
    uses_model = True

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.vad = SileroVad.from_config(_vad_cfg(self.cfg), threads=self.resources.threads)

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
            from tandem.pipelines.core.stage import reject
            reject(item, stage="vad", reason="no_speech", detail=f"{item['uri']}: VAD found no speech")
        return item
