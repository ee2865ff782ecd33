"""The transcribe stage: ASR over VAD/diarization-bounded chunks of each file, language per chunk."""

from __future__ import annotations

from tandem.pipelines.core.config import section
from tandem.pipelines.core.stage import Resources, Stage
from tandem.pipelines.models.asr import AsrParams, build_asr, check_asr, speech_chunks, to_16k_mono

# Chunks handed to the backend at once, in batches: bounds memory whatever the file length
# (this many chunks of at most asr.chunk_max_s at 16 kHz) and keeps every batch full.
CHUNKS_PER_CALL_PER_BATCH = 4


class TranscribeStage(Stage):
    """Transcribe the speech chunks of the work file; segments keep their language and trust signals."""

    name = "transcribe"
    reads = ("work_path", "speech")
    writes = ("segments",)
    uses_model = True

    def __init__(self, params: AsrParams, models: dict, *, resources: Resources | None = None):
        """`models`: the `models` config section (cache dir, download policy)."""
        super().__init__(resources=resources)
        self.params = params
        self.models = dict(models)

    @classmethod
    def from_config(cls, cfg: dict) -> TranscribeStage:
        return cls(AsrParams.from_config(cfg), section(cfg, "models"), resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        check_asr(self.params, self.models)

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.asr = build_asr(self.params, self.models, device=self.device, threads=self.resources.threads)
        if self.params.backend == "whisperx" and self.params.language:
            self.asr.preload([self.params.language])  # other languages load when first detected

    def _chunks_for(self, item: dict, ch: int | None) -> list[tuple[float, float]]:
        if ch is None:
            turns = item.get("turns") or []
            # bound chunks by diarized turns where present, else by VAD
            regions = [(t["start_s"], t["end_s"]) for t in turns] or [tuple(r) for r in item["speech"]]
        else:
            regions = [tuple(r) for r in item["speech_ch"][ch]]
        return speech_chunks(regions, self.params.chunk_max_s, self.params.chunk_gap_s)

    def process(self, item: dict) -> dict:
        import soundfile as sf
        p = self.params
        per_call = max(1, p.batch_size) * CHUNKS_PER_CALL_PER_BATCH
        channels = [0, 1] if item.get("two_channel") else [None]
        segments = []
        with sf.SoundFile(item["work_path"]) as f:
            sr, total = f.samplerate, f.frames
            for ch in channels:
                spans = self._chunks_for(item, ch)
                for i in range(0, len(spans), per_call):
                    chunks = []
                    for s, e in spans[i:i + per_call]:
                        a0 = max(0, int((s - p.chunk_pad_s) * sr))
                        a1 = min(total, int((e + p.chunk_pad_s) * sr))
                        f.seek(a0)
                        x = f.read(a1 - a0, dtype="float32", always_2d=True)
                        x = x[:, ch] if ch is not None else x.mean(axis=1)
                        chunks.append((a0 / sr, to_16k_mono(x, sr)))
                    for seg in self.asr.transcribe_chunks(chunks, language=p.language):
                        seg["channel"] = 0 if ch is None else ch
                        segments.append(seg)
        segments.sort(key=lambda g: (g["start_s"], g["channel"]))
        item["segments"] = segments
        ex = self.counters.extra
        ex["segments"] = ex.get("segments", 0) + len(segments)
        for k, v in (getattr(self.asr, "counts", None) or {}).items():
            ex[f"asr_{k}"] = v  # cumulative per worker
        return item
