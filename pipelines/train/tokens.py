"""Words on the model's frame grid: per-channel text-token streams in Moshi's Inner Monologue convention.

One text token per audio frame (12.5 Hz for Mimi). For each channel, words sorted by start time:
- a word's tokens (the tokenizer applied to the word alone) start at the frame that contains its
  start time, ``floor(start_s * frame_rate)``, one token per frame;
- frames between words hold PAD;
- the frame just before a word's first token holds EPAD ("end of padding: a word comes next")
  when that frame is padding; a word at frame 0, or one whose frame the previous word's tokens
  reach, gets no EPAD (as kyutai moshi-finetune's Interleaver does);
- when the previous word's tokens run into or past this word's start frame, this word's tokens
  are pushed later, to the first free frame (nothing is dropped, unlike moshi-finetune which
  cuts the previous word short); tokens pushed past the end of the stream are dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

# Moshi's text vocabulary (kyutai SentencePiece): 0 doubles as EPAD, 3 is PAD.
MOSHI_PAD_ID = 3
MOSHI_EPAD_ID = 0
FRAME_RATE = 12.5  # Mimi frames per second

Tokenizer = Callable[[str], Sequence[int]]


class ByteTokenizer:
    """A tiny reversible tokenizer for tests and examples: UTF-8 bytes shifted past the special ids.

    Ids 0..3 are left free (0 = EPAD, 3 = PAD in Moshi's convention); byte b becomes b + 4.
    """

    offset = 4
    vocab_size = 256 + offset

    def __call__(self, text: str) -> list[int]:
        return [b + self.offset for b in text.strip().encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i - self.offset for i in ids if i >= self.offset).decode("utf-8", errors="replace")


def num_frames(num_samples: int, sample_rate: int, frame_rate: float = FRAME_RATE) -> int:
    """Frames that cover `num_samples` (a partial last frame counts, as Mimi pads it)."""
    return math.ceil(num_samples * frame_rate / sample_rate - 1e-9)


def frame_of(t: float, frame_rate: float = FRAME_RATE) -> int:
    """Index of the frame that contains time `t` (seconds); tolerant of float noise at boundaries."""
    return math.floor(t * frame_rate + 1e-6)


def token_stream(words: Iterable[Mapping], n_frames: int, tokenizer: Tokenizer, *,
                 frame_rate: float = FRAME_RATE, pad_id: int = MOSHI_PAD_ID,
                 epad_id: int = MOSHI_EPAD_ID) -> tuple[np.ndarray, dict]:
    """One channel's words (dicts with `word`, `start_s`) to an int64 stream of `n_frames` tokens.

    Returns the stream and counters: words placed, words pushed later, tokens dropped at the end.
    """
    out = np.full(n_frames, pad_id, dtype=np.int64)
    stats = {"words": 0, "pushed": 0, "dropped_tokens": 0}
    cursor = 0  # first frame not taken by an earlier word's tokens
    for w in sorted(words, key=lambda w: (w["start_s"], w.get("end_s", 0.0))):
        toks = list(tokenizer(w["word"]))
        if not toks:
            continue
        f = max(frame_of(w["start_s"], frame_rate), 0)
        first = max(f, cursor)
        if first >= n_frames:
            stats["dropped_tokens"] += len(toks)
            continue
        stats["words"] += 1
        stats["pushed"] += int(first > f)
        if first >= 1 and first - 1 >= cursor:
            out[first - 1] = epad_id
        take = toks[: n_frames - first]
        stats["dropped_tokens"] += len(toks) - len(take)
        out[first:first + len(take)] = take
        cursor = first + len(take)
    return out, stats


def channel_streams(words: Iterable[Mapping], n_frames: int, tokenizer: Tokenizer, *,
                    channels: int = 2, **kw) -> tuple[np.ndarray, dict]:
    """Token streams [channels, n_frames] from words that carry a `channel` field."""
    by_ch: list[list[Mapping]] = [[] for _ in range(channels)]
    for w in words:
        by_ch[int(w["channel"])].append(w)
    rows, total = [], {"words": 0, "pushed": 0, "dropped_tokens": 0}
    for ws in by_ch:
        s, st = token_stream(ws, n_frames, tokenizer, **kw)
        rows.append(s)
        for k in total:
            total[k] += st[k]
    return np.stack(rows) if rows else np.zeros((0, n_frames), np.int64), total
