"""Small example rows for tests and benches (no models): tones on known channels, known words."""

from __future__ import annotations

import numpy as np

from pipelines.core.contracts import example_row, rejection_row, source_row, stable_hash
from pipelines.io.audio import encode_flac


def tone_example(i: int, *, duration_s: float = 2.0, sample_rate: int = 24000, language: str = "en",
                 kind: str = "real", cfg_hash: str = "test") -> dict:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    a = np.zeros((2, t.size), dtype=np.float32)
    half = t.size // 2
    a[0, :half] = 0.3 * np.sin(2 * np.pi * (220 + 10 * i) * t[:half])
    a[1, half:] = 0.3 * np.sin(2 * np.pi * (330 + 10 * i) * t[half:])
    words = [
        {"channel": 0, "speaker": "A", "word": f"hello{i}", "start_s": 0.1, "end_s": 0.5, "score": 1.0, "overlap": False},
        {"channel": 1, "speaker": "B", "word": f"world{i}", "start_s": duration_s / 2 + 0.1,
         "end_s": duration_s / 2 + 0.6, "score": 1.0, "overlap": False},
    ]
    sid = stable_hash("tone-source", i)
    return example_row(
        example_id=stable_hash("tone", i, cfg_hash), kind=kind, language=language, duration_s=duration_s,
        sample_rate=sample_rate, num_samples=t.size, audio=encode_flac(a, sample_rate), words=words,
        text_ch0=f"hello{i}", text_ch1=f"world{i}", speakers=["A", "B"], num_speakers=2,
        overlap_ratio=0.0, speech_ratio=0.5, snr_db=30.0, metrics={"index": float(i)}, seed=i,
        params="{}", source_ids=[sid], source_spans=[{"source_id": sid, "start_s": 0.0, "end_s": duration_s}],
        config_hash=cfg_hash, pipeline_version="test")


def tone_item(i: int, **kw) -> dict:
    ex = tone_example(i, **kw)
    sid = ex["source_ids"][0]
    return {"work_key": stable_hash("work", i), "uri": f"tone_{i}.wav", "kind": ex["kind"], "status": "ok",
            "examples": [ex], "rejections": [], "source_id": sid,
            "source": source_row(source_id=sid, uri=f"tone_{i}.wav", kind=ex["kind"], format="wav",
                                 duration_s=ex["duration_s"])}


def rejected_item(i: int, reason: str = "decode_error") -> dict:
    uri = f"broken_{i}.wav"
    return {"work_key": stable_hash("work-bad", i), "uri": uri, "kind": "real", "status": "rejected",
            "rejections": [rejection_row(uri=uri, kind="real", stage="ingest", reason=reason,
                                         detail=f"{uri}: cannot decode")]}
