"""RoundTripStage: ASR of each channel of a synthetic example, scored against the words said;
with best-of-N renditions, only the one with the lowest CER is kept."""

from __future__ import annotations

from pipelines.core.stage import Resources, Stage
from pipelines.core.text import cer
from pipelines.models.cache import ModelsParams
from synth.params import SynthSection

ROUNDTRIP_NAME = "roundtrip"


class RoundTripStage(Stage):
    """ASR each channel in the script's language and score it against the words actually said.

    `roundtrip_cer` is the worse (max) of the two channels, so an example passes a threshold only
    if both sides are intelligible; per-channel and mean CER go to `metrics`; the ASR segments go
    to `segments` with their channel and trust signals. Only a channel's speech (its word times,
    padded) is sent to ASR: Whisper hallucinates in the listening side's long silences. Each
    channel's speech is packed into full Whisper windows (pipelines/models/asr_windows.py, as
    curation packs a speaker's turns), and the windows of every dialogue of a batch in one
    language are decoded together, `batch_size` at a time."""

    name = ROUNDTRIP_NAME
    reads = ("examples",)
    writes = ("examples",)
    uses_model = True

    def __init__(self, asr, models: ModelsParams | None, pad_s: float, best_of: int = 1, pack_sep_s: float | None = 0.3, *,
                 fallback_best_of: int = 5, resources: Resources | None = None):
        super().__init__(resources=resources)
        self.asr_params, self.models, self.pad_s, self.best_of = asr, models, float(pad_s), int(best_of)
        self.pack_sep_s = None if pack_sep_s is None else float(pack_sep_s)
        self.fallback_best_of = int(fallback_best_of)

    @classmethod
    def from_config(cls, cfg: dict) -> RoundTripStage:
        import dataclasses

        from pipelines.models.asr import AsrParams
        rt = SynthSection.from_config(cfg).roundtrip
        asr = dataclasses.replace(AsrParams.from_config(cfg), batch_size=rt.batch_size)
        return cls(asr, ModelsParams.from_config(cfg), rt.pad_s, rt.best_of, rt.pack_sep_s,
                   fallback_best_of=rt.fallback_best_of, resources=Resources.for_stage(cfg, cls.name))

    def check(self) -> None:
        from pipelines.models.asr import check_asr
        check_asr(self.asr_params, self.models)

    def setup(self) -> None:
        from pipelines.models.asr import build_asr
        # the language is the script's: Whisper's candidates would go unread (segments keep none)
        self.asr = build_asr(self.asr_params, self.models, device=self.device, threads=self.resources.threads,
                             best_of=self.fallback_best_of, hear_languages=False)

    _ahead: dict | None = None  # id(example) -> {channel: segments}, decoded by run_items

    def run_items(self, items: list[dict]) -> list[dict]:
        """The windows of every example of the batch in one language go to Whisper together, so
        a batch fills across dialogues; each item is then scored in its own call (errors, retries
        and counters stay per item). If the joint decode fails, each item decodes its own windows
        and reports its own error."""
        self.ensure_setup()
        items = list(items)  # the Ray engine streams a batch in
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

    def windows(self, exs: list[dict]) -> tuple[list, list[tuple[dict, int]]]:
        """Windows of the examples' channels, group k being channel `owners[k]` = (example,
        channel): the channel's word spans padded by pad_s, packed first-fit into windows of at
        most asr.chunk_max_s joined by pack_sep_s of silence (null: time-ordered chunks cut at
        pauses over asr.chunk_gap_s, one window each)."""
        import dataclasses

        from pipelines.models.asr_windows import pack_windows, time_windows
        p = self.asr_params
        groups, owners = [], []
        for ex in exs:
            total = float(ex["duration_s"])
            for ch in (0, 1):
                # padded here, clamped to this example's length: groups of many examples share one packing
                regions = [(max(0.0, w["start_s"] - self.pad_s), min(total, w["end_s"] + self.pad_s))
                           for w in ex["words"] if w["channel"] == ch]
                groups.append((ch, regions))
                owners.append((ex, ch))
        if self.pack_sep_s is None:  # one window per chunk, each keeping its (example, channel) group
            wins = [dataclasses.replace(w, group=g) for g, grp in enumerate(groups)
                    for w in time_windows([grp], p.chunk_max_s, p.chunk_gap_s, 0.0, 0.0, float("inf"), join=False)]
        else:
            wins = pack_windows(groups, p.chunk_max_s, 0.0, self.pack_sep_s, float("inf"))
        return wins, owners

    def _decode(self, exs: list[dict]) -> dict[int, dict[int, list[dict]]]:
        """ASR segments of each example's channels on the dialogue clock: {id(example): {channel:
        segments}}. The windows of all examples of one language go to one transcribe_windows."""
        from pipelines.io.audio import decode_flac
        from pipelines.models.asr import to_16k_mono
        from pipelines.models.asr_windows import WINDOWS_PER_CALL_PER_BATCH, transcribe_windows, window_audio
        p = self.asr_params
        out: dict[int, dict[int, list[dict]]] = {id(ex): {0: [], 1: []} for ex in exs}
        by_lang: dict[str, list[dict]] = {}
        for ex in exs:
            by_lang.setdefault(ex["language"], []).append(ex)
        n_wins = n_retried = 0
        for lang, group in by_lang.items():
            wins, owners = self.windows(group)
            x16 = {}
            for ex in group:
                audio, sr = decode_flac(ex["audio"])
                for ch in (0, 1):
                    x16[(id(ex), ch)] = to_16k_mono(audio[ch], sr)

            def piece(w, s, e, owners=owners, x16=x16):
                ex, ch = owners[w.group]
                return x16[(id(ex), ch)][int(s * 16000): int(e * 16000)]

            found, retry = transcribe_windows(
                self.asr, wins, lambda w, piece=piece: window_audio(w, piece), lang,
                per_call=max(1, p.batch_size) * WINDOWS_PER_CALL_PER_BATCH, max_s=p.chunk_max_s,
                sep_s=self.pack_sep_s or 0.0, pad_s=self.pad_s)
            for w, seg in found:
                ex, ch = owners[w.group]
                out[id(ex)][ch].append(seg)
            n_wins, n_retried = n_wins + len(wins), n_retried + len(retry)
        for chans in out.values():
            for segs in chans.values():
                segs.sort(key=lambda g: g["start_s"])  # first-fit windows: the text in the order it was said
        c = self.counters.extra
        c["windows"] = c.get("windows", 0) + n_wins
        c["windows_retried"] = c.get("windows_retried", 0) + n_retried
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
