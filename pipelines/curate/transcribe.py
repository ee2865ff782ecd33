"""The transcribe stage: ASR over packed windows of each file's speech, language per window.

Whisper pads every input to a 30 s window, so the encoder's cost is the number of windows. Like
faster-whisper's batched pipeline (`collect_chunks`), pieces of speech (padded by `chunk_pad_s`)
are joined into windows of at most `chunk_max_s` with `pack_sep_s` of silence between them, and
every word comes back to the source clock through the window's piece table (the piece holding
its midpoint, clamped into it); a segment is split where its words change piece.
- `asr.pack: time`: time-ordered chunks of all speakers (`speech_chunks`, pauses under
  `chunk_gap_s` kept) joined in order; speakers come from the turns downstream, as before.
- `asr.pack: speaker`: each speaker's turns (each channel's speech) packed first-fit, one speaker
  per window; a word heard through padding inside another speaker's turn is dropped (that
  speaker's own window transcribes it). Fewest windows, but no conversational context: on real
  speech its WER is higher (figures in pipelines/core/defaults/10_curate.yaml).
- `asr.pack: none`: one chunk per window (the unpacked baseline).
Whisper decoding without timestamps may end a window at a pause: a piece of a packed window that
got no word is packed again and decoded once more. Trade-off: language is detected per window,
so a language switch inside one window (turns joined across a short pause) gets one language.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from pipelines.core.config import section
from pipelines.core.stage import Resources, Stage
from pipelines.models.asr import AsrParams, build_asr, check_asr, speech_chunks, to_16k_mono

# Windows handed to the backend at once, in batches: bounds memory whatever the file length
# (this many windows of at most asr.chunk_max_s at 16 kHz) and keeps every batch full.
CHUNKS_PER_CALL_PER_BATCH = 4
# Scripts written without spaces between words: a split segment's text joins its words directly.
# A piece of a packed window that got no word is decoded again when it holds at least this much
# speech (s) beside its padding (shorter ones are mostly diarization slivers at speaker changes).
RETRY_MIN_SPEECH_S = 0.3
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "km", "bo", "yue"})


@dataclass(frozen=True)
class Window:
    """Audio pieces of one channel decoded as one Whisper window: `pieces[k] = (src_start_s,
    src_end_s, win_start_s)`, source spans laid end to end on the window clock with `sep_s`
    of silence between them."""

    channel: int | None
    pieces: tuple[tuple[float, float, float], ...]
    group: int = 0  # index of the speaker/channel group it was packed from

    @property
    def duration_s(self) -> float:
        s, e, w = self.pieces[-1]
        return w + e - s

    def piece_of(self, t: float) -> int:
        """The piece holding window time `t`; in a separator, the nearer piece."""
        starts = [w for _, _, w in self.pieces]
        k = max(0, bisect.bisect_right(starts, t) - 1)
        s, e, w = self.pieces[k]
        if t > w + (e - s) and k + 1 < len(self.pieces) and t - (w + e - s) > starts[k + 1] - t:
            return k + 1
        return k

    def to_source(self, t: float, k: int) -> float:
        """Window time `t` on the source clock, clamped into piece `k`."""
        s, e, w = self.pieces[k]
        return min(max(s + t - w, s), e)


def speech_pieces(regions, max_s: float, sep_s: float, pad_s: float = 0.0,
                  total_s: float = float("inf")) -> list[tuple[float, float]]:
    """Speech regions padded by `pad_s` (within [0, total_s]), merged where closer than `sep_s`,
    a span longer than `max_s` split evenly; in time order."""
    spans: list[list[float]] = []
    for s, e in sorted(regions):
        s, e = max(0.0, s - pad_s), min(total_s, e + pad_s)
        if e <= s:
            continue
        if spans and s - spans[-1][1] <= sep_s:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    pieces: list[tuple[float, float]] = []
    for s, e in spans:
        n = max(1, int(np.ceil((e - s) / max_s - 1e-9)))
        step = (e - s) / n
        pieces.extend((s + i * step, s + (i + 1) * step) for i in range(n))
    return pieces


def pack_windows(groups: list[tuple[int | None, list[tuple[float, float]]]], max_s: float, pad_s: float,
                 sep_s: float, total_s: float) -> list[Window]:
    """Windows of at most `max_s` from speech regions, one group (a speaker, a channel) per window.

    Regions of a group are padded by `pad_s` (within [0, total_s]); regions whose padded spans
    would be closer than `sep_s` are merged (their real pause is as good as inserted silence); a
    region longer than `max_s` is split evenly. Each piece, in time order, goes to the first
    window with room (first fit), so a window may join turns far apart.
    """
    out: list[Window] = []
    for g, (channel, regions) in enumerate(groups):
        pieces = speech_pieces(regions, max_s, sep_s, pad_s, total_s)
        # first fit: a piece goes to the first window with room, so windows are nearly full
        wins: list[list[tuple[float, float, float]]] = []
        ends: list[float] = []
        for s, e in pieces:
            for j, end in enumerate(ends):
                if end + sep_s + (e - s) <= max_s + 1e-9:
                    wins[j].append((s, e, end + sep_s))
                    ends[j] = end + sep_s + e - s
                    break
            else:
                wins.append([(s, e, 0.0)])
                ends.append(e - s)
        out.extend(Window(channel, tuple(w), g) for w in wins)
    return out


def _in(t: float, spans: list[tuple[float, float]]) -> bool:
    """`t` inside one of the sorted, disjoint `spans`."""
    k = bisect.bisect_right(spans, (t, float("inf"))) - 1
    return k >= 0 and spans[k][0] <= t <= spans[k][1]


def _union(spans) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        elif e > s:
            out.append([s, e])
    return [(s, e) for s, e in out]


def foreign_spans(own, others) -> list[tuple[float, float]]:
    """Time inside `others` (another speaker's turns) and outside `own`: sorted, disjoint."""
    own, out = _union(own), []
    for s, e in _union(others):
        for a, b in own:
            if b <= s or a >= e:
                continue
            if a > s:
                out.append((s, a))
            s = max(s, b)
        if e > s:
            out.append((s, e))
    return out


def _text_parts(text: str, words: list[dict], cuts: list[tuple[int, int]], joiner: str) -> list[str]:
    """The text of each run `words[i:j]` for (i, j) in `cuts`: cut from the segment's own text where
    every word is found in order (keeps its spacing, e.g. "l'on"), else the words joined."""
    pos, at = 0, []
    for w in words:
        k = text.find(w["word"], pos)
        if k < 0:
            return [joiner.join(w["word"] for w in words[i:j]) for i, j in cuts]
        at.append(k)
        pos = k + len(w["word"])
    at.append(len(text))
    return [text[at[i]:at[j]].strip() for i, j in cuts]


def unpack_segment(seg: dict, win: Window, language: str | None = None,
                   foreign: list[tuple[float, float]] | None = None) -> list[dict]:
    """A segment decoded on `win`'s clock as segments on the source clock, split where its words
    change piece; each word goes to the piece holding its midpoint and is clamped into it. A word
    whose source midpoint lies in `foreign` (another speaker's turn, which that speaker's own
    window transcribes: this one heard it through padding) is dropped. Trust signals and language
    stay those of the decoded segment."""
    words = seg.get("words") or []
    if not words:
        k = win.piece_of((seg["start_s"] + seg["end_s"]) / 2)
        return [{**seg, "start_s": win.to_source(seg["start_s"], k), "end_s": win.to_source(seg["end_s"], k)}]
    cuts: list[tuple[int, int]] = []
    mapped: list[dict] = []
    last = None
    for i, w in enumerate(words):
        k = win.piece_of((w["start_s"] + w["end_s"]) / 2)
        m = {**w, "start_s": win.to_source(w["start_s"], k), "end_s": win.to_source(w["end_s"], k)}
        mapped.append(m)
        if foreign and _in((m["start_s"] + m["end_s"]) / 2, foreign):
            last = None
            continue
        if last == k:
            cuts[-1] = (cuts[-1][0], i + 1)
        else:
            cuts.append((i, i + 1))
        last = k
    if not cuts:
        return []
    if cuts == [(0, len(words))]:
        texts = [seg["text"]]
    else:
        joiner = "" if (language or seg.get("language")) in NO_SPACE_LANGUAGES else " "
        texts = _text_parts(seg["text"], words, cuts, joiner)
    out = []
    for (i, j), text in zip(cuts, texts, strict=True):
        ws = mapped[i:j]
        out.append({**seg, "words": ws, "text": text,
                    "start_s": min(w["start_s"] for w in ws), "end_s": max(w["end_s"] for w in ws)})
    return out


class TranscribeStage(Stage):
    """Transcribe the speech of the work file; segments keep their language and trust signals."""

    name = "transcribe"
    reads = ("work_path", "speech")
    writes = ("segments",)
    uses_model = True

    def __init__(self, params: AsrParams, models: dict, *, resources: Resources | None = None):
        """`models`: the `models` config section (cache dir, download policy)."""
        super().__init__(resources=resources)
        if params.pack not in ("speaker", "time", "none"):
            raise ValueError(f"asr.pack {params.pack!r}: expected 'speaker', 'time' or 'none'")
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
        out: list[Window] = []
        chans = sorted({g[0] for g in groups}, key=lambda c: -1 if c is None else c)
        for gi, ch in enumerate(chans):
            regions = [r for g in groups if g[0] == ch for r in g[1]]
            cur: list[tuple[float, float, float]] = []
            end = 0.0
            for s, e in speech_chunks(regions, p.chunk_max_s, p.chunk_gap_s):
                s, e = max(0.0, s - p.chunk_pad_s), min(total_s, e + p.chunk_pad_s)
                if e <= s:
                    continue
                at = end + p.pack_sep_s if cur else 0.0
                if cur and (p.pack == "none" or at + e - s > p.chunk_max_s):
                    out.append(Window(ch, tuple(cur), gi))
                    cur, at = [], 0.0
                cur.append((s, e, at))
                end = at + e - s
            if cur:
                out.append(Window(ch, tuple(cur), gi))
        return out, [[] for _ in chans]

    def process(self, item: dict) -> dict:
        import soundfile as sf
        p = self.params
        segments: list[dict] = []
        with sf.SoundFile(item["work_path"]) as f:
            sr, total = f.samplerate, f.frames
            wins, foreign = self.windows(item, total / sr)
            missed = self._decode(f, wins, foreign, segments)
            retry: list[Window] = []
            if missed:
                # Whisper decoding without timestamps may end a window at a pause and skip the
                # pieces after it: those pieces are packed again and decoded once more
                groups = [(None, []) for _ in foreign]
                for w, k in missed:
                    groups[w.group] = (w.channel, groups[w.group][1] + [w.pieces[k][:2]])
                retry = pack_windows(groups, p.chunk_max_s, 0.0, p.pack_sep_s, total / sr)
                self._decode(f, retry, foreign, segments)
        segments.sort(key=lambda g: (g["start_s"], g["channel"]))
        item["segments"] = segments
        ex = self.counters.extra
        ex["segments"] = ex.get("segments", 0) + len(segments)
        ex["windows"] = ex.get("windows", 0) + len(wins)
        ex["windows_retried"] = ex.get("windows_retried", 0) + len(retry)
        for k, v in (getattr(self.asr, "counts", None) or {}).items():
            ex[f"asr_{k}"] = v  # cumulative per worker
        return item

    def _decode(self, f, wins: list[Window], foreign: list[list], segments: list[dict]) -> list[tuple[Window, int]]:
        """Decode `wins` in batched calls, appending source-clock segments to `segments`; returns
        the (window, piece) pairs of packed windows whose piece holds speech but got no word."""
        p = self.params
        sr, total = f.samplerate, f.frames
        per_call = max(1, p.batch_size) * CHUNKS_PER_CALL_PER_BATCH
        missed = []
        for i in range(0, len(wins), per_call):
            part = wins[i:i + per_call]
            chunks = [(0.0, self._audio(f, w, sr, total)) for w in part]
            heard: list[set] = [set() for _ in part]
            for seg in self.asr.transcribe_chunks(chunks, language=p.language):
                j = seg.pop("chunk_index")
                w = part[j]
                heard[j].update(w.piece_of((x["start_s"] + x["end_s"]) / 2) for x in seg.get("words") or [])
                for g in unpack_segment(seg, w, p.language, foreign[w.group]):
                    g["channel"] = 0 if w.channel is None else w.channel
                    segments.append(g)
            for w, h in zip(part, heard, strict=True):
                if len(w.pieces) > 1:
                    missed.extend((w, k) for k, (s, e, _) in enumerate(w.pieces)
                                  if k not in h and e - s >= 2 * p.chunk_pad_s + RETRY_MIN_SPEECH_S)
        return missed

    def _audio(self, f, win: Window, sr: int, total: int) -> np.ndarray:
        """The window's 16 kHz audio: its pieces read from the work file, silence between them."""
        out = np.zeros(round(win.duration_s * 16000) + 1, np.float32)
        for s, e, w in win.pieces:
            a0, a1 = max(0, round(s * sr)), min(total, round(e * sr))
            f.seek(a0)
            x = f.read(a1 - a0, dtype="float32", always_2d=True)
            x = to_16k_mono(x[:, win.channel] if win.channel is not None else x.mean(axis=1), sr)
            o = round(w * 16000)
            n = min(len(x), len(out) - o)
            out[o:o + n] = x[:n]
        return out
