"""ASR windows: speech packed into Whisper's 30 s windows and the decoded text mapped back, shared by
curation's transcribe stage and synthesis's round trip.

Whisper pads every input to a 30 s window, so the encoder's cost is the number of windows. Like
faster-whisper's batched pipeline (`collect_chunks`), pieces of speech (padded) are joined into
windows of at most `max_s` with `sep_s` of silence between them, and every word comes back to the
source clock through the window's piece table (the piece holding its midpoint, clamped into it); a
segment is split where its words change piece. Whisper decoding without timestamps may end a
window at a pause: a piece of a packed window that got no word is packed again and decoded once
more (`transcribe_windows`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.core import spans
from pipelines.models.asr import speech_chunks
from pipelines.models.asr_base import ASR_SR, Asr

# Windows handed to the backend at once, in batches of asr batch_size: bounds memory whatever the
# amount of speech (this many windows of at most asr.chunk_max_s at 16 kHz) and keeps every batch full.
WINDOWS_PER_CALL_PER_BATCH = 4
# A piece of a packed window that got no word is decoded again when it holds at least this much
# speech (s) beside its padding (shorter ones are mostly diarization slivers at speaker changes).
RETRY_MIN_SPEECH_S = 0.3
# Scripts written without spaces between words: a split segment's text joins its words directly.
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
    padded = ((max(0.0, s - pad_s), min(total_s, e + pad_s)) for s, e in regions)
    merged = spans.merge(((s, e) for s, e in padded if e > s), sep_s)
    pieces: list[tuple[float, float]] = []
    for s, e in merged:
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


def time_windows(groups: list[tuple[int | None, list[tuple[float, float]]]], max_s: float, gap_s: float,
                 pad_s: float, sep_s: float, total_s: float, join: bool = True) -> list[Window]:
    """Windows of time-ordered chunks, per channel over all of its groups' regions: chunks as
    `speech_chunks` cuts them (pauses under `gap_s` kept), padded by `pad_s`, joined in order with
    `sep_s` between them while they fit in `max_s` (`join` False: one chunk per window). A
    window's group is its channel's index among the sorted channels."""
    out: list[Window] = []
    chans = sorted({g[0] for g in groups}, key=lambda c: -1 if c is None else c)
    for gi, ch in enumerate(chans):
        regions = [r for g in groups if g[0] == ch for r in g[1]]
        cur: list[tuple[float, float, float]] = []
        end = 0.0
        for s, e in speech_chunks(regions, max_s, gap_s):
            s, e = max(0.0, s - pad_s), min(total_s, e + pad_s)
            if e <= s:
                continue
            at = end + sep_s if cur else 0.0
            if cur and (not join or at + e - s > max_s):
                out.append(Window(ch, tuple(cur), gi))
                cur, at = [], 0.0
            cur.append((s, e, at))
            end = at + e - s
        if cur:
            out.append(Window(ch, tuple(cur), gi))
    return out


def foreign_spans(own, others) -> list[tuple[float, float]]:
    """Time inside `others` (another speaker's turns) and outside `own`: sorted, disjoint."""
    return spans.subtract(others, own)


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
        if foreign and spans.contains(foreign, (m["start_s"] + m["end_s"]) / 2):
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


def window_audio(win: Window, piece: Callable[[Window, float, float], np.ndarray]) -> np.ndarray:
    """The window's 16 kHz audio: `piece(win, src_start_s, src_end_s)` (16 kHz) at each piece's
    window time, silence between them."""
    out = np.zeros(round(win.duration_s * ASR_SR) + 1, np.float32)
    for s, e, w in win.pieces:
        x = piece(win, s, e)
        o = round(w * ASR_SR)
        n = min(len(x), len(out) - o)
        out[o:o + n] = x[:n]
    return out


def decode_windows(asr: Asr, wins: list[Window], audio: Callable[[Window], np.ndarray], language: str | None,
                   foreign: list[list] | None, per_call: int,
                   min_piece_s: float = RETRY_MIN_SPEECH_S) -> tuple[list[tuple[Window, dict]], list[tuple[Window, int]]]:
    """Decode `wins` `per_call` windows per transcribe_chunks call (the backend batches them).
    Returns ([(window, source-clock segment)] in decoding order, [(window, piece)] of packed
    windows whose piece got no word though it holds `min_piece_s` of speech beside its padding).
    `foreign[w.group]`: spans whose words that group's windows drop."""
    found, missed = [], []
    for i in range(0, len(wins), per_call):
        part = wins[i:i + per_call]
        chunks = [(0.0, audio(w)) for w in part]
        heard: list[set] = [set() for _ in part]
        for seg in asr.transcribe_chunks(chunks, language=language):
            if "chunk_index" not in seg:
                raise KeyError("the ASR backend's transcribe_chunks gives no chunk_index: a packed window's "
                               "segments cannot be mapped back")
            j = seg.pop("chunk_index")
            w = part[j]
            heard[j].update(w.piece_of((x["start_s"] + x["end_s"]) / 2) for x in seg.get("words") or [])
            for g in unpack_segment(seg, w, language, foreign[w.group] if foreign else None):
                found.append((w, g))
        for w, h in zip(part, heard, strict=True):
            if len(w.pieces) > 1:
                missed.extend((w, k) for k, (s, e, _) in enumerate(w.pieces) if k not in h and e - s >= min_piece_s)
    return found, missed


def transcribe_windows(asr: Asr, wins: list[Window], audio: Callable[[Window], np.ndarray], language: str | None,
                       *, per_call: int, max_s: float, sep_s: float, pad_s: float,
                       foreign: list[list] | None = None) -> tuple[list[tuple[Window, dict]], list[Window]]:
    """`decode_windows`, then the pieces that got no word packed again (per group, no more padding)
    and decoded once more. Returns ([(window, source-clock segment)], the windows retried)."""
    found, missed = decode_windows(asr, wins, audio, language, foreign, per_call, 2 * pad_s + RETRY_MIN_SPEECH_S)
    if not missed:
        return found, []
    n = max(len(foreign or ()), 1 + max(w.group for w in wins))
    groups: list[tuple[int | None, list]] = [(None, []) for _ in range(n)]
    for w, k in missed:
        groups[w.group] = (w.channel, groups[w.group][1] + [w.pieces[k][:2]])
    retry = pack_windows(groups, max_s, 0.0, sep_s, float("inf"))
    found += decode_windows(asr, retry, audio, language, foreign, per_call)[0]
    return found, retry
