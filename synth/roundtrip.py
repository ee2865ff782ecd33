"""RoundTripStage: ASR of each channel of a synthetic example, scored against the words said;
with best-of-N renditions, only the one with the lowest CER is kept."""

from __future__ import annotations

from tandem.pipelines.core.stage import Resources, Stage
from tandem.pipelines.core.text import cer
from tandem.synth.params import synth_section

ROUNDTRIP_NAME = "roundtrip"


class RoundTripStage(Stage):
    """ASR each channel in the script's language and score it against the words actually said.

    `roundtrip_cer` is the worse (max) of the two channels, so an example passes a threshold only
    if both sides are intelligible; per-channel and mean CER go to `metrics`; the ASR segments go
    to `segments` with their channel. Only a channel's speech (from its word times, padded) is
    sent to ASR: Whisper hallucinates in the listening side's long silences."""

    name = ROUNDTRIP_NAME
    reads = ("examples",)
    writes = ("examples",)
    uses_model = True

    def __init__(self, asr, models: dict, pad_s: float, best_of: int = 1, *, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.asr_params, self.models, self.pad_s, self.best_of = asr, models, float(pad_s), int(best_of)

    @classmethod
    def from_config(cls, cfg: dict) -> RoundTripStage:
        import dataclasses

        from tandem.pipelines.core.config import section
        from tandem.pipelines.models.asr import AsrParams
        rt = synth_section(cfg)["roundtrip"]
        asr = dataclasses.replace(AsrParams.from_config(cfg), batch_size=int(rt["batch_size"]))
        from tandem.synth.stages import best_of
        return cls(asr, section(cfg, "models"), rt["pad_s"], best_of(synth_section(cfg)),
                   resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        from tandem.pipelines.models.asr import check_asr
        check_asr(self.asr_params, self.models)

    def setup(self) -> None:
        from tandem.pipelines.models.asr import build_asr
        self.asr = build_asr(self.asr_params, self.models, device=self.device, threads=self.resources.threads)

    def process(self, item: dict) -> dict:
        from tandem.pipelines.io.audio import decode_flac
        from tandem.pipelines.models.asr import speech_chunks, to_16k_mono
        p = self.asr_params
        for ex in item.get("examples") or []:
            audio, sr = decode_flac(ex["audio"])
            total = audio.shape[1] / sr
            cers, segs = {}, []
            for ch in (0, 1):
                regions = [(max(0.0, w["start_s"] - self.pad_s), min(total, w["end_s"] + self.pad_s))
                           for w in ex["words"] if w["channel"] == ch]
                x16 = to_16k_mono(audio[ch], sr)
                chunks = [(s, x16[int(s * 16000): int(e * 16000)])
                          for s, e in speech_chunks(regions, p.chunk_max_s, p.chunk_gap_s)]
                hyps = []
                for s in self.asr.transcribe_chunks(chunks, language=ex["language"]):
                    hyps.append(s["text"])
                    segs.append({"channel": ch, "start_s": s["start_s"], "end_s": s["end_s"],
                                 "text": s["text"], "language": s.get("language"),
                                 "language_prob": _f(s.get("language_prob")),
                                 "avg_logprob": _f(s.get("avg_logprob")),
                                 "no_speech_prob": _f(s.get("no_speech_prob")),
                                 "compression_ratio": _f(s.get("compression_ratio"))})
                cers[ch] = cer(ex[f"text_ch{ch}"] or "", " ".join(hyps))
            ex["roundtrip_cer"] = max(cers.values())
            ex["segments"] = segs
            m = dict(ex.get("metrics") or {})
            m.update({"roundtrip_cer_ch0": cers[0], "roundtrip_cer_ch1": cers[1],
                      "roundtrip_cer_mean": (cers[0] + cers[1]) / 2})
            ex["metrics"] = m
        exs = item.get("examples") or []
        if self.best_of > 1 and len(exs) > 1:
            keep_best(item)
        return item


def keep_best(item: dict) -> None:
    """Keep the rendition with the lowest round-trip CER (the first on a tie), as J-Moshi kept
    the best of its samples; the CER of every candidate goes to its metrics."""
    exs = item["examples"]
    cers = [float(ex["roundtrip_cer"]) for ex in exs]
    k = min(range(len(exs)), key=lambda i: (cers[i], i))
    best = exs[k]
    best["metrics"] = {**best["metrics"], "best_of": len(exs), "best_of_kept": k,
                       "best_of_cers": [round(c, 4) for c in cers]}
    item["examples"] = [best]
    item["duration_s"] = best["duration_s"]
    if item.get("source"):
        item["source"] = {**item["source"], "duration_s": best["duration_s"], "bytes": len(best["audio"])}


def _f(x) -> float:
    return float("nan") if x is None else float(x)
