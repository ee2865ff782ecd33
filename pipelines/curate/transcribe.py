"""The transcribe stage: ASR over packed windows of each file's speech, language per window.

Windows are packed, decoded and mapped back to the source clock by pipelines/models/asr_windows.py
(shared with synthesis's round trip); `asr.pack` chooses how:
- `asr.pack: time`: time-ordered chunks of all speakers (`speech_chunks`, pauses under
  `chunk_gap_s` kept) joined in order; speakers come from the turns downstream, as before.
- `asr.pack: speaker`: each speaker's turns (each channel's speech) packed first-fit, one speaker
  per window; a word heard through padding inside another speaker's turn is dropped (that
  speaker's own window transcribes it). Fewest windows, but no conversational context: on real
  speech its WER is higher (figures in pipelines/core/defaults/10_curate.yaml).
- `asr.pack: none`: one chunk per window (the unpacked baseline).
A piece of a packed window that got no word is packed again and decoded once more. Trade-off:
language is detected per window, so a language switch inside one window (turns joined across a
short pause) gets one language.
"""

from __future__ import annotations

import numpy as np

from pipelines.core.stage import Resources, Stage
from pipelines.models.asr import AsrParams, build_asr, check_asr, to_16k_mono
from pipelines.models.asr_windows import (  # noqa: F401 (the windowing, importable from here)
    NO_SPACE_LANGUAGES,
    WINDOWS_PER_CALL_PER_BATCH,
    Window,
    foreign_spans,
    pack_windows,
    speech_pieces,
    time_windows,
    transcribe_windows,
    unpack_segment,
    window_audio,
)
from pipelines.models.cache import ModelsParams


class TranscribeStage(Stage):
    """Transcribe the speech of the work file; segments keep their language and trust signals."""

    name = "transcribe"
    reads = ("work_path", "speech")
    writes = ("segments",)
    uses_model = True

    def __init__(self, params: AsrParams, models: ModelsParams | None, *, resources: Resources | None = None):
        """`models`: where models are cached and whether a missing one may be downloaded."""
        super().__init__(resources=resources)
        if params.pack not in ("speaker", "time", "none"):
            raise ValueError(f"asr.pack {params.pack!r}: expected 'speaker', 'time' or 'none'")
        self.params = params
        self.models = models

    @classmethod
    def from_config(cls, cfg: dict) -> TranscribeStage:
        return cls(AsrParams.from_config(cfg), ModelsParams.from_config(cfg), resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        check_asr(self.params, self.models)

    def setup(self) -> None:
        import torch
        torch.set_num_threads(self.resources.threads)
        self.asr = build_asr(self.params, self.models, device=self.device, threads=self.resources.threads)
        if self.params.backend == "whisperx" and self.params.language:
            self.asr.preload([self.params.language])  # other languages load when first detected

    def windows(self, item: dict, total_s: float) -> tuple[list[Window], list[list]]:
        """The windows of one item (per speaker of the diarized turns, per channel, or the VAD
        speech) and, per group, the foreign spans whose words that group's windows drop."""
        p = self.params
        foreign: list[list] = []
        if item.get("two_channel"):  # channels do not hear each other: nothing is foreign
            groups = [(ch, [tuple(r) for r in item["speech_ch"][ch]]) for ch in (0, 1)]
        elif item.get("turns"):
            by: dict[str, list] = {}
            for t in item["turns"]:
                by.setdefault(t["speaker"], []).append((t["start_s"], t["end_s"]))
            groups = [(None, by[k]) for k in sorted(by)]
            if p.pack == "speaker":
                foreign = [foreign_spans(by[k], [r for o in by if o != k for r in by[o]]) for k in sorted(by)]
        else:
            groups = [(None, [tuple(r) for r in item["speech"]])]
        foreign = foreign or [[] for _ in groups]
        # without speakers (VAD speech only) chunks stay time-ordered: nothing to keep apart
        if p.pack == "speaker" and (item.get("two_channel") or item.get("turns")):
            return pack_windows(groups, p.chunk_max_s, p.chunk_pad_s, p.pack_sep_s, total_s), foreign
        # time / none: time-ordered chunks over all speakers of a channel (pauses under
        # chunk_gap_s kept); time joins consecutive chunks into windows, none decodes each alone
        wins = time_windows(groups, p.chunk_max_s, p.chunk_gap_s, p.chunk_pad_s, p.pack_sep_s, total_s,
                            join=p.pack != "none")
        return wins, [[] for _ in {g[0] for g in groups}]

    def process(self, item: dict) -> dict:
        import soundfile as sf
        p = self.params
        segments: list[dict] = []
        with sf.SoundFile(item["work_path"]) as f:
            sr, total = f.samplerate, f.frames
            wins, foreign = self.windows(item, total / sr)

            def piece(w: Window, s: float, e: float) -> np.ndarray:
                a0, a1 = max(0, round(s * sr)), min(total, round(e * sr))
                f.seek(a0)
                x = f.read(a1 - a0, dtype="float32", always_2d=True)
                return to_16k_mono(x[:, w.channel] if w.channel is not None else x.mean(axis=1), sr)

            found, retry = transcribe_windows(
                self.asr, wins, lambda w: window_audio(w, piece), p.language,
                per_call=max(1, p.batch_size) * WINDOWS_PER_CALL_PER_BATCH, max_s=p.chunk_max_s,
                sep_s=p.pack_sep_s, pad_s=p.chunk_pad_s, foreign=foreign)
        for w, g in found:
            g["channel"] = 0 if w.channel is None else w.channel
            segments.append(g)
        segments.sort(key=lambda g: (g["start_s"], g["channel"]))
        item["segments"] = segments
        ex = self.counters.extra
        ex["segments"] = ex.get("segments", 0) + len(segments)
        ex["windows"] = ex.get("windows", 0) + len(wins)
        ex["windows_retried"] = ex.get("windows_retried", 0) + len(retry)
        for k, v in (getattr(self.asr, "counts", None) or {}).items():
            ex[f"asr_{k}"] = v  # cumulative per worker
        return item
