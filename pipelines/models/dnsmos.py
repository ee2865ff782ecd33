"""DNSMOS P.835 (the ONNX model shipped by speechmos), windows batched, session threads set by the caller.

speechmos scores a clip as the mean over 9.01 s windows taken every second, and runs the P.808
model on a mel spectrogram of each window besides; tandem uses only overall, signal and
background, so only the P.835 model runs here. A window costs the same CPU whatever the hop (the
model is convolutional over the whole window, about 0.18 s on one core, batched or not), so the
hop sets the cost: 1 s (speechmos) is 9 windows per second of speech, a hop of one window length
scores every second once. On real speech (tools/build_eval_set.py split by reference RTTM, clean
and with white noise at 20/10/5 dB) the one-window hop differs from the mean of every 1 s window
by 0.05 MOS (sd), as much as speechmos' own result does (its float rounding skips windows 7-23).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

DNSMOS_SR = 16000
WINDOW_S = 9.01  # the model's input length (speechmos INPUT_LENGTH)
# speechmos' polynomial fit of the raw outputs to P.835 MOS (not personalized)
_POLY = {"sig": np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
         "bak": np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
         "ovrl": np.poly1d([-0.06766283, 1.11546468, 0.04602535])}


def window_starts(n_samples: int, hop_s: float, sr: int = DNSMOS_SR) -> list[int]:
    """Start samples of the scored windows: evenly spaced at most `hop_s` apart from the clip's
    start to its end, the last one ending at the clip's end, so every sample is scored."""
    length = int(WINDOW_S * sr)
    if n_samples < length:
        return []
    k = math.ceil((n_samples - length) / (hop_s * sr)) + 1
    return sorted({round(v) for v in np.linspace(0, n_samples - length, k)})


def _padded(x: np.ndarray, sr: int = DNSMOS_SR) -> np.ndarray:
    """Short clips repeated until one window long, as speechmos does."""
    while 0 < len(x) < int(WINDOW_S * sr):
        x = np.append(x, x)
    return x


class Dnsmos:
    """Overall, signal and background MOS of 16 kHz mono speech in [-1, 1]."""

    def __init__(self, threads: int = 1, *, hop_s: float = 1.0, batch: int = 4):
        import onnxruntime as ort
        from pipelines.models.registry import dnsmos_dir
        if hop_s <= 0:
            raise ValueError(f"Dnsmos: hop_s must be > 0 (got {hop_s})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # speechmos builds its sessions with all cores; this one uses the caller's share
        self.session = ort.InferenceSession(str(dnsmos_dir() / "sig_bak_ovr.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.hop_s = float(hop_s)
        self.batch = max(1, int(batch))

    def raw_windows(self, clips: Sequence[np.ndarray],
                    starts: Callable[[int], list[int]] | None = None) -> list[np.ndarray]:
        """Per clip, the model's raw (sig, bak, ovrl) of each window, [n_windows, 3]; windows of all
        clips go through the model `batch` at a time. `starts`: window starts of a clip of n
        samples (default: spread at most hop_s apart)."""
        length = int(WINDOW_S * DNSMOS_SR)
        starts = starts or (lambda n: window_starts(n, self.hop_s))
        xs = [_padded(np.clip(np.asarray(c, dtype=np.float32), -1.0, 1.0)) for c in clips]
        todo = [(i, s) for i, x in enumerate(xs) for s in starts(len(x))]
        out: list[list[np.ndarray]] = [[] for _ in xs]
        for b in range(0, len(todo), self.batch):
            part = todo[b:b + self.batch]
            inp = np.stack([xs[i][s:s + length] for i, s in part])
            raw = self.session.run(None, {"input_1": inp})[0]
            for (i, _), r in zip(part, raw, strict=True):
                out[i].append(r)
        return [np.array(o, dtype=np.float64).reshape(-1, 3) for o in out]

    def score_many(self, clips: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """MOS of each clip: the mean over its windows of the fitted window scores."""
        cols = {"sig": 0, "bak": 1, "ovrl": 2}  # the model's output columns
        # only an empty clip has no window
        return [{k: float(np.mean(_POLY[k](r[:, cols[k]]))) if len(r) else float("nan") for k in ("ovrl", "sig", "bak")}
                for r in self.raw_windows(clips)]

    def __call__(self, x16: np.ndarray) -> dict[str, float]:
        return self.score_many([x16])[0]
