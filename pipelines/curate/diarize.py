"""The diarize stage: speaker turns of each source, written to `turns` and OUT/rttm/<source_id>.rttm."""

from __future__ import annotations

from pathlib import Path

from tandem.pipelines.core.stage import Stage
from tandem.pipelines.io.rttm import write_rttm
from tandem.pipelines.models.diarization import _diar_cfg, load_diarizer


class DiarizeStage(Stage):
    """Speaker turns of a mono/mixed source; two-channel sources get one speaker per channel."""

    name = "diarize"
    reads = ("work_path", "speech", "source_id", "out_dir")
    writes = ("turns",)
    uses_model = True

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.diarizer = None
        self._cfg = _diar_cfg(self.cfg)

    def process(self, item: dict) -> dict:
        if item.get("two_channel"):
            turns = [{"start_s": s, "end_s": e, "speaker": f"CH{ch}"}
                     for ch in (0, 1) for s, e in item["speech_ch"][ch]]
            turns.sort(key=lambda t: t["start_s"])
        else:
            if self.diarizer is None:  # loaded lazily: a run of only two-channel sources needs no model
                self.diarizer = load_diarizer(self.cfg, self.device)
            turns = self.diarizer(item["work_path"], item["speech"], seed=int(item.get("seed") or 0))
        item["turns"] = turns
        write_rttm(Path(item["out_dir"]) / "rttm" / f"{item['source_id']}.rttm", item["source_id"], turns)
        n = len({t["speaker"] for t in turns})
        self.counters.extra["speakers"] = self.counters.extra.get("speakers", 0) + n
        if not turns:
            from tandem.pipelines.core.stage import reject
            reject(item, stage="diarize", reason="no_speaker", detail=f"{item['uri']}: no speaker turns found")
        return item
