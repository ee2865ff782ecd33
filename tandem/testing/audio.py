"""Test data for the curation chain: pyannote's reference call, long files, and the demo's corpus builders.

Everything here is small, deterministic given its seed, and made on the fly (no fixtures on disk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.io.rttm import read_rttm  # noqa: F401 - re-exported for tests
from ray_jobs.corpus import (  # noqa: F401 - re-exported for tests
    EN_TURNS_2,
    EN_TURNS_3,
    make_conversation,
    two_channel,
    write_audio,
    write_broken_files,
)

SAMPLE_DIR_MODULE = "pyannote.audio.sample"


def sample_paths() -> dict[str, Path]:
    """pyannote's bundled reference: sample.wav, sample.rttm, sample.stm."""
    import importlib.util
    spec = importlib.util.find_spec(SAMPLE_DIR_MODULE)
    d = Path(next(iter(spec.submodule_search_locations)))
    return {k: d / f"sample.{k}" for k in ("wav", "rttm", "stm")}


def read_stm_text(path: str | Path) -> str:
    return " ".join(line.split(None, 5)[5] for line in Path(path).read_text().splitlines()
                    if len(line.split(None, 5)) == 6)


def write_long_file(path: str | Path, duration_s: float, sample_rate: int = 16000, seed: int = 0) -> Path:
    """A long two-speaker recording written piece by piece (never held whole): one espeak
    conversation repeated with seeded pauses and gains until `duration_s`."""
    rng = np.random.default_rng(seed)
    conv, _, _ = make_conversation(EN_TURNS_2, "en", sample_rate, seed=seed)
    p = Path(path)
    left = int(duration_s * sample_rate)
    with sf.SoundFile(str(p), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        while left > 0:
            x = conv * float(rng.uniform(0.5, 1.0))
            x = np.concatenate([x, np.zeros(int(rng.uniform(0.3, 2.0) * sample_rate), np.float32)])[:left]
            f.write(x)
            left -= len(x)
    return p
