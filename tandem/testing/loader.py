"""Small synthetic shards for tests of the loader, exports and anything that reads shards.

Every example has a tone on each channel exactly where that channel's words are, so a test can
check that audio and words stay together after cropping, resampling or exporting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipelines.core import contracts
from pipelines.io.audio import encode_flac

WORDS = ("hello", "bonjour", "yes", "no", "maybe", "merci", "gut", "hola", "ciao", "olá", "okay", "right")


def synthetic_words(n_words: int, duration_s: float, rng: np.random.Generator) -> list[dict]:
    """Alternating-channel words spread over the example, some overlapping across channels."""
    words = []
    slot = duration_s / max(n_words, 1)
    for k in range(n_words):
        ch = k % 2
        start = round(k * slot + rng.uniform(0.0, 0.2 * slot), 3)
        end = round(min(start + rng.uniform(0.3, 0.9) * slot, duration_s), 3)
        words.append({"channel": ch, "speaker": f"spk{ch}", "word": WORDS[int(rng.integers(len(WORDS)))],
                      "start_s": start, "end_s": end, "score": 1.0, "overlap": False})
    return words


def synthetic_audio(words: Sequence[dict], duration_s: float, sample_rate: int) -> np.ndarray:
    """float32 [2, T]: a tone (ch0 300 Hz, ch1 700 Hz) under each word of that channel, silence elsewhere."""
    n = round(duration_s * sample_rate)
    out = np.zeros((2, n), dtype=np.float32)
    for w in words:
        a, b = int(w["start_s"] * sample_rate), int(w["end_s"] * sample_rate)
        t = np.arange(a, b) / sample_rate
        out[w["channel"], a:b] = 0.5 * np.sin(2 * np.pi * (300 if w["channel"] == 0 else 700) * t)
    return out


def synthetic_example(index: int, *, seed: int = 0, duration_s: float = 3.0, sample_rate: int = 16000,
                      language: str = "en", kind: str = "synthetic", n_words: int | None = None) -> dict:
    """One EXAMPLE_SCHEMA row with FLAC audio and words; the same arguments give the same row."""
    rng = np.random.default_rng([seed, index])
    n_words = n_words if n_words is not None else max(2, int(duration_s * 2))
    words = synthetic_words(n_words, duration_s, rng)
    audio = synthetic_audio(words, duration_s, sample_rate)
    eid = contracts.stable_hash("test-example", seed, index, duration_s, sample_rate, language)
    return contracts.example_row(
        example_id=eid, kind=kind, language=language, duration_s=audio.shape[1] / sample_rate,
        sample_rate=sample_rate, num_samples=audio.shape[1], audio=encode_flac(audio, sample_rate),
        words=words, text_ch0=" ".join(w["word"] for w in words if w["channel"] == 0),
        text_ch1=" ".join(w["word"] for w in words if w["channel"] == 1),
        speakers=["spk0", "spk1"], num_speakers=2, seed=seed, source_ids=[f"src{index}"])


def write_shard(path: str | Path, rows: Sequence[dict], row_group_size: int = 4) -> Path:
    """Write rows as one EXAMPLE_SCHEMA Parquet shard with small row groups."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(contracts.to_table(rows, contracts.EXAMPLE_SCHEMA), path, row_group_size=row_group_size)
    return path


def make_shards(directory: str | Path, n_shards: int = 3, per_shard: int = 10, *, seed: int = 0,
                row_group_size: int = 4, durations: Sequence[float] = (2.0, 3.0, 4.5),
                sample_rate: int = 16000, languages: Sequence[str] = ("en",)) -> list[Path]:
    """`n_shards` shards of `per_shard` examples under `directory` (durations and languages cycle)."""
    paths = []
    i = 0
    for s in range(n_shards):
        rows = []
        for _ in range(per_shard):
            rows.append(synthetic_example(i, seed=seed, duration_s=durations[i % len(durations)],
                                          sample_rate=sample_rate, language=languages[i % len(languages)]))
            i += 1
        paths.append(write_shard(Path(directory) / f"shard-{s:04d}.parquet", rows, row_group_size))
    return paths


def make_output_dir(out_dir: str | Path, n_examples: int = 24, *, per_item: int = 4, seed: int = 0,
                    languages: Sequence[str] = ("en", "fr"), durations: Sequence[float] = (2.0, 3.0),
                    sample_rate: int = 16000, row_group_rows: int = 4, items_per_commit: int = 3,
                    build_catalog: bool = True) -> list[dict]:
    """A real output directory (committed shards via the job writer, plus the DuckDB catalog).

    Returns the example rows written (audio included) so tests can compare against them.
    """
    from pipelines.store.writer import JobWriter

    cfg = {"shards": {"row_group_rows": row_group_rows, "max_items_per_commit": items_per_commit,
                      "target_bytes": 1 << 40, "compression": "zstd"}}
    w = JobWriter.from_config(out_dir, cfg, run_id="test-run", job="test", config_hash="cfg0")
    rows = [synthetic_example(i, seed=seed, duration_s=durations[i % len(durations)], sample_rate=sample_rate,
                              language=languages[i % len(languages)]) for i in range(n_examples)]
    for k in range(0, n_examples, per_item):
        chunk = rows[k:k + per_item]
        w.add({"uri": f"script-{k}", "kind": "synthetic", "work_key": f"wk{seed}-{k}", "status": "ok",
               "examples": [dict(r) for r in chunk],
               "source": {"source_id": f"src{seed}-{k}", "uri": f"script-{k}", "kind": "synthetic",
                          "duration_s": sum(r["duration_s"] for r in chunk)}})
    w.close()
    if build_catalog:
        from catalogs.catalog import build
        build(out_dir)
    return rows
