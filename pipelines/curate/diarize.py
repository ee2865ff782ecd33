"""The diarize stage: speaker turns of each source, written to `turns` (the writer commits them as
OUT/rttm/<source_id>.rttm with the rest of the part)."""

from __future__ import annotations

from pipelines.core.config import typed_section
from pipelines.core.stage import Resources, Stage, reject
from pipelines.models.diarization import DiarizeParams, Diarizer


class DiarizeStage(Stage):
    """Speaker turns of a mono/mixed source; two-channel sources get one speaker per channel."""

    name = "diarize"
    reads = ("work_path", "speech", "source_id", "out_dir")
    writes = ("turns",)
    uses_model = True

    def __init__(self, params: DiarizeParams, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.params = params

    @classmethod
    def from_config(cls, cfg: dict) -> DiarizeStage:
        from pipelines.models.cache import ModelsParams, cache_dir
        return cls(typed_section(DiarizeParams, cfg, "diarize", cache_dir=str(cache_dir(ModelsParams.from_config(cfg)))),
                   resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        """The embedded models are files in installed packages; a pyannote pipeline is loaded
        once on the driver (CPU), so a missing or refused one fails the job at start."""
        from pipelines.models.diarization import load_pretrained
        from pipelines.models.registry import resemblyzer_path, whisperx_segmentation_path
        if self.params.backend == "embedded":
            whisperx_segmentation_path()
            resemblyzer_path()
        else:
            load_pretrained(self.params)

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        # eager (about a second for the embedded pipeline): a missing model fails the worker at
        # start, not the first mono item
        self.diarizer = Diarizer.load(self.params, self.device)

    def process(self, item: dict) -> dict:
        if item.get("two_channel"):
            turns = [{"start_s": s, "end_s": e, "speaker": f"CH{ch}"}
                     for ch in (0, 1) for s, e in item["speech_ch"][ch]]
            turns.sort(key=lambda t: t["start_s"])
        else:
            turns = self.diarizer(item["work_path"], item["speech"], seed=int(item.get("seed") or 0))
        item["turns"] = turns
        n = len({t["speaker"] for t in turns})
        self.counters.extra["speakers"] = self.counters.extra.get("speakers", 0) + n
        if not turns:
            reject(item, stage="diarize", reason="no_speaker", detail=f"{item['uri']}: no speaker turns found")
        return item
