"""The transcribe stage: ASR over VAD/diarization-bounded chunks, one language detection per chunk."""

from __future__ import annotations

from tandem.pipelines.core.stage import Stage
from tandem.pipelines.models.asr import _asr_cfg, load_asr, speech_chunks


class TranscribeStage(Stage):
    """Transcribe speech chunks of the work file; language detected per chunk."""

    name = "transcribe"
    reads = ("work_path", "speech")
    writes = ("segments",)
    uses_model = True

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.acfg = _asr_cfg(self.cfg)
        self.asr = load_asr(self.cfg, device=self.device, threads=self.resources.threads)

    def _chunks_for(self, item: dict, ch: int | None) -> list[tuple[float, float]]:
        if ch is None:
            turns = item.get("turns") or []
            # bound chunks by diarized turns where present, else by VAD
            regions = [(t["start_s"], t["end_s"]) for t in turns] or [tuple(r) for r in item["speech"]]
        else:
            regions = [tuple(r) for r in item["speech_ch"][ch]]
        return speech_chunks(regions, float(self.acfg["chunk_max_s"]), float(self.acfg["chunk_gap_s"]))

    def process(self, item: dict) -> dict:
        import soundfile as sf
        lang = self.acfg.get("language")
        pad = float(self.acfg["chunk_pad_s"])
        channels = [0, 1] if item.get("two_channel") else [None]
        segments = []
        with sf.SoundFile(item["work_path"]) as f:
            sr, total = f.samplerate, f.frames
            for ch in channels:
                for s, e in self._chunks_for(item, ch):
                    a0 = max(0, int((s - pad) * sr))
                    a1 = min(total, int((e + pad) * sr))
                    f.seek(a0)
                    x = f.read(a1 - a0, dtype="float32", always_2d=True)
                    x = x[:, ch] if ch is not None else x.mean(axis=1)
                    off = a0 / sr
                    for seg in self.asr.transcribe(x, sr, language=lang):
                        seg["start_s"] += off
                        seg["end_s"] += off
                        for w in seg["words"]:
                            w["start_s"] += off
                            w["end_s"] += off
                        seg["channel"] = 0 if ch is None else ch
                        segments.append(seg)
        segments.sort(key=lambda g: (g["start_s"], g["channel"]))
        item["segments"] = segments
        self.counters.extra["segments"] = self.counters.extra.get("segments", 0) + len(segments)
        return item
