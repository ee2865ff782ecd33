"""Batching of loader examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pipelines.train.units import LoaderError

# ---- batching ----------------------------------------------------------------------------------

def collate(batch: Sequence[dict], *, token_pad_id: int = -1) -> dict:
    """Pad a list of examples into a batch.

    audio float32 [B, 2, T] zero-padded, audio_lengths [B]; text_tokens int64 [B, 2, F] padded with
    `token_pad_id` (-1: mask it in the loss), token_lengths [B]; _pos [B, 7] (where each came from); other fields as lists.
    """
    if not batch:
        raise LoaderError("collate: empty batch")
    out: dict[str, Any] = {}
    lens = torch.tensor([ex["audio"].shape[-1] for ex in batch])
    audio = torch.zeros(len(batch), batch[0]["audio"].shape[0], int(lens.max()), dtype=torch.float32)
    for i, ex in enumerate(batch):
        audio[i, :, : ex["audio"].shape[-1]] = ex["audio"]
    out["audio"], out["audio_lengths"] = audio, lens
    if "text_tokens" in batch[0]:
        tl = torch.tensor([ex["text_tokens"].shape[-1] for ex in batch])
        toks = torch.full((len(batch), batch[0]["text_tokens"].shape[0], int(tl.max())), token_pad_id,
                          dtype=torch.int64)
        for i, ex in enumerate(batch):
            toks[i, :, : ex["text_tokens"].shape[-1]] = ex["text_tokens"]
        out["text_tokens"], out["token_lengths"] = toks, tl
    if "_pos" in batch[0]:
        out["_pos"] = torch.stack([ex["_pos"] for ex in batch])
    for k in ("offset_s", "duration_s"):
        out[k] = torch.tensor([float(ex[k]) for ex in batch], dtype=torch.float64)
    for k in batch[0]:
        if k not in out and k not in ("text_tokens",):
            out[k] = [ex[k] for ex in batch]
    return out
