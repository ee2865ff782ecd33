"""The VAD stage: speech regions of each work file (silero), streamed in windows."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.core import spans
from pipelines.core.config import typed_section
from pipelines.core.stage import Resources, Stage, reject
from pipelines.models.vad import SileroVad


@dataclass(frozen=True)
class VadParams:
    """The `vad` config section (meanings in pipelines/core/defaults/10_curate.yaml)."""

    threshold: float
    min_speech_s: float
    min_silence_s: float
    pad_s: float
    window_s: float
    merge_gap_s: float


class VadStage(Stage):
    """Speech regions of the work file: `speech` (downmix), and `speech_ch` for two-channel sources."""

    name = "vad"
    reads = ("work_path",)
    writes = ("speech", "speech_ch")
    uses_model = True

    def __init__(self, params: VadParams, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.params = params

    @classmethod
    def from_config(cls, cfg: dict) -> VadStage:
        return cls(typed_section(VadParams, cfg, "vad"), resources=Resources.for_stage(cfg, cls.name))

    def setup(self) -> None:
        p = self.params
        self.vad = SileroVad(threshold=p.threshold, min_speech_s=p.min_speech_s, min_silence_s=p.min_silence_s,
                             pad_s=p.pad_s, window_s=p.window_s, merge_gap_s=p.merge_gap_s,
                             threads=self.resources.threads)

    def process(self, item: dict) -> dict:
        if item.get("two_channel"):
            per = [self.vad.file_regions(item["work_path"], ch) for ch in (0, 1)]
            item["speech_ch"] = per
            item["speech"] = spans.merge([tuple(r) for p in per for r in p], 0.0)
        else:
            item["speech_ch"] = None  # one channel: the downmix is all there is
            item["speech"] = self.vad.file_regions(item["work_path"])
        sp = sum(e - s for s, e in item["speech"])
        self.counters.extra["speech_s"] = self.counters.extra.get("speech_s", 0.0) + sp
        if not item["speech"]:
            reject(item, stage="vad", reason="no_speech", detail=f"{item['uri']}: VAD found no speech")
        return item
