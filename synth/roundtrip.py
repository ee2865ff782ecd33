"""RoundTripStage: ASR of each channel of a synthetic example, scored against the words said;
with best-of-N renditions, only the one with the lowest CER is kept."""

from __future__ import annotations

from pipelines.core.stage import Resources, Stage
from pipelines.core.text import cer
from synth.params import synth_section

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

    def __init__(self, asr, models: dict, pad_s: float, best_of: int = 1, pack_sep_s: float | None = None, *,
                 resources: Resources | None = None):
        super().__init__(resources=resources)
        self.asr_params, self.models, self.pad_s, self.best_of = asr, models, float(pad_s), int(best_of)
        self.pack_sep_s = None if pack_sep_s is None else float(pack_sep_s)

    @classmethod
    def from_config(cls, cfg: dict) -> RoundTripStage:
        import dataclasses

        from pipelines.core.config import section
        from pipelines.models.asr import AsrParams
        rt = synth_section(cfg)["roundtrip"]
        asr = dataclasses.replace(AsrParams.from_config(cfg), batch_size=int(rt["batch_size"]))
        from synth.stages import best_of
        return cls(asr, section(cfg, "models"), rt["pad_s"], best_of(synth_section(cfg)), rt["pack_sep_s"],
                   resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        from pipelines.models.asr import check_asr
        check_asr(self.asr_params, self.models)

    def setup(self) -> None:
        from pipelines.models.asr import build_asr
        self.asr = build_asr(self.asr_params, self.models, device=self.device, threads=self.resources.threads)

    _ahead: dict | None = None  # id(example) -> {channel: segments}, decoded by run_items

    def run_items(self, items: list[dict]) -> list[dict]:
        """With batched decoding (batch_size > 1), the chunks of every example of the batch in one
        language go to Whisper together, so a batch fills across dialogues; each item is then
        scored in its own call (errors, retries and counters stay per item). If the joint decode
        fails, each item decodes its own chunks and reports its own error."""
        self.ensure_setup()
        if self.asr_params.batch_size > 1 and len(items) > 1:
            exs = [ex for it in items if it.get("status") not in ("rejected", "retry") for ex in it.get("examples") or []]
            try:
                self._ahead = self._decode(exs)
            except Exception:  # noqa: BLE001 - decoded again per item, which reports the error
                self._ahead = None
        try:
            return super().run_items(items)
        finally:
            self._ahead = None

    def _decode(self, exs: list[dict]) -> dict[int, dict[int, list[dict]]]:
        """ASR segments of each example's channels: {id(example): {channel: segments}}. Only a
        channel's speech (its word times, padded) is sent; the chunks of all examples of one
        language go in one transcribe_chunks call, the backend batching them by batch_size."""
        from pipelines.io.audio import decode_flac
        from pipelines.models.asr import speech_chunks, to_16k_mono
        p = self.asr_params
        by_lang: dict[str, list[tuple[int, int, list]]] = {}
        packs: dict[tuple[int, int], list | None] = {}
        for ex in exs:
            audio, sr = decode_flac(ex["audio"])
            total = audio.shape[1] / sr
            for ch in (0, 1):
                regions = [(max(0.0, w["start_s"] - self.pad_s), min(total, w["end_s"] + self.pad_s))
                           for w in ex["words"] if w["channel"] == ch]
                x16 = to_16k_mono(audio[ch], sr)
                if self.pack_sep_s is None:
                    chunks = [(s, x16[int(s * 16000): int(e * 16000)])
                              for s, e in speech_chunks(regions, p.chunk_max_s, p.chunk_gap_s)]
                    packs[(id(ex), ch)] = None
                else:
                    chunks, packs[(id(ex), ch)] = pack_channel(regions, x16, p.chunk_max_s, self.pack_sep_s)
                by_lang.setdefault(ex["language"], []).append((id(ex), ch, chunks))
        out: dict[int, dict[int, list[dict]]] = {id(ex): {0: [], 1: []} for ex in exs}
        for lang, parts in by_lang.items():
            if p.batch_size <= 1:  # chunk by chunk anyway: nothing to gain from one call
                for key, ch, chunks in parts:
                    out[key][ch] = self.asr.transcribe_chunks(chunks, language=lang)
                continue
            flat, owner = [], []
            for key, ch, chunks in parts:
                flat.extend(chunks)
                owner.extend([(key, ch)] * len(chunks))
            for seg in self.asr.transcribe_chunks(flat, language=lang):  # in chunk order
                if "chunk_index" not in seg:
                    raise KeyError("the ASR backend's transcribe_chunks gives no chunk_index: batched round trip "
                                   "cannot tell which dialogue a segment belongs to")
                key, ch = owner[seg["chunk_index"]]
                out[key][ch].append(seg)
        for (key, ch), windows in packs.items():
            if windows is not None:
                for seg in out[key][ch]:
                    seg["start_s"], seg["end_s"] = unpack_time(windows, seg["start_s"]), unpack_time(windows, seg["end_s"])
        return out

    def process(self, item: dict) -> dict:
        exs = item.get("examples") or []
        ahead = self._ahead or {}
        todo = [ex for ex in exs if id(ex) not in ahead]
        decoded = {**ahead, **(self._decode(todo) if todo else {})}
        for ex in exs:
            cers, segs = {}, []
            for ch in (0, 1):
                hyps = []
                for s in decoded[id(ex)][ch]:
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
        if self.best_of > 1 and len(exs) > 1:
            keep_best(item)
        return item


def pack_channel(regions: list[tuple[float, float]], x16, max_s: float, sep_s: float) -> tuple[list, list]:
    """One channel's speech packed into windows of at most `max_s`: its regions (merged where less
    than `sep_s` apart, a longer one split evenly) laid end to end in time order with `sep_s` of
    silence between, so Whisper decodes about speech / max_s windows instead of one per stretch
    of speech (each Whisper window costs the same encoder pass however short its audio; the
    listening side's backchannels alone would each take one). Returns ([(offset_s, audio16k)],
    [pieces per window]) with pieces (src_start_s, src_end_s, window_start_s); a window's
    offset is its first piece's start, so its window times stay inside its own source span."""
    import numpy as np
    from pipelines.curate.transcribe import speech_pieces
    pieces = speech_pieces(regions, max_s, sep_s)
    windows: list[list[tuple[float, float, float]]] = []
    end = 0.0
    for s, e in pieces:  # in time order, so the text comes back in the order it was said
        if windows and end + sep_s + (e - s) <= max_s + 1e-9:
            windows[-1].append((s, e, end + sep_s))
            end += sep_s + e - s
        else:
            windows.append([(s, e, 0.0)])
            end = e - s
    gap = np.zeros(round(sep_s * 16000), np.float32)
    chunks = []
    for w in windows:
        parts = []
        for k, (s, e, _) in enumerate(w):
            parts += ([gap] if k else []) + [x16[int(s * 16000): int(e * 16000)]]
        chunks.append((w[0][0], np.concatenate(parts)))
    return chunks, windows


def unpack_time(windows: list, t: float) -> float:
    """A time that transcribe_chunks put on a packed window (its offset + window time) back on
    the dialogue clock, clamped into the piece it falls in."""
    import bisect
    j = max(0, bisect.bisect_right([w[0][0] for w in windows], t) - 1)
    w = windows[j]
    tw = t - w[0][0]
    k = max(0, bisect.bisect_right([p[2] for p in w], tw) - 1)
    s, e, ws = w[k]
    return min(max(s + tw - ws, s), e)


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
