"""Exports of committed shards in other tools' layouts.

moshi: Kyutai moshi-finetune's dataset layout. DEST/data_stereo/<example_id>.wav (stereo 16-bit
  PCM; left = channel 0 = the main speaker, the voice the model learns; right = the other side),
  a sibling <example_id>.json {"alignments": [[word, [start_s, end_s], speaker_label], ...]}
  with the words of both channels sorted by start, labelled SPEAKER_MAIN (channel 0) and
  SPEAKER_OTHER (channel 1) (moshi-finetune keeps only SPEAKER_MAIN words for the text stream),
  and an index DEST/<index> of {"path", "duration"} lines.
rttm: one RTTM file per example, DEST/<example_id>.rttm, speaker turns from the word timings
  (consecutive words of one speaker closer than --merge-gap seconds form one turn).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pipelines.core.ids import checked_id
from pipelines.io.files import write_atomic
from pipelines.io.rttm import write_rttm

SPEAKER_LABELS = ("SPEAKER_MAIN", "SPEAKER_OTHER")


def _rows(out_dir: str | Path, sql: str | None, columns: list[str]) -> Iterator[tuple[str, dict]]:
    """(shard, row) of the selected examples; shards checked against their commit manifests and
    every example id against its pattern (core.ids) before an export names a file after it."""
    from pipelines.train.units import iter_rows, select_units
    for unit, row in iter_rows(select_units(out_dir, sql), columns):
        checked_id(row.get("example_id"), unit.path)
        yield unit.path, row


def under(dest: Path, *parts: str) -> Path:
    """dest/parts..., which must stay inside `dest` (a name with '..' or '/' is an error)."""
    root = dest.resolve()
    p = (root.joinpath(*parts)).resolve()
    if p != root and root not in p.parents:
        raise ValueError(f"{'/'.join(parts)!r} would be written outside the export directory {dest}")
    return p


def alignments(words: list[dict]) -> list[list]:
    """moshi-finetune alignments: [word, [start_s, end_s], label], sorted by start."""
    ws = sorted(words or [], key=lambda w: (w["start_s"], w["end_s"], w["channel"]))
    return [[w["word"], [round(float(w["start_s"]), 4), round(float(w["end_s"]), 4)],
             SPEAKER_LABELS[int(w["channel"])]] for w in ws]


def export_moshi(out_dir: str | Path, dest: str | Path, *, sql: str | None = None, sample_rate: int | None = None,
                 index: str = "data.jsonl", absolute_paths: bool = False, audio_dir: str = "data_stereo") -> dict:
    """Write the moshi-finetune layout under `dest`; returns counts. Streams one row group at a time."""
    import soundfile as sf
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    index_path = under(dest, index)
    under(dest, audio_dir).mkdir(parents=True, exist_ok=True)
    lines, seconds = [], 0.0
    for shard, row in _rows(out_dir, sql, ["example_id", "audio", "words", "sample_rate"]):
        eid = row["example_id"]
        try:
            pcm, sr = sf.read(io.BytesIO(row["audio"]), dtype="int16", always_2d=True)  # lossless copy
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{shard}: example {eid}: cannot decode audio: {e}") from None
        if pcm.shape[1] != 2:
            raise ValueError(f"{shard}: example {eid}: audio has {pcm.shape[1]} channel(s), expected 2")
        data = pcm
        if sample_rate and sample_rate != sr:
            import soxr
            data = soxr.resample(pcm.astype(np.float32) / 32768.0, sr, sample_rate)
            sr = sample_rate
        buf = io.BytesIO()
        sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
        wav = under(dest, audio_dir, f"{eid}.wav")
        write_atomic(wav, buf.getvalue())
        write_atomic(wav.with_suffix(".json"),
                      json.dumps({"alignments": alignments(row["words"])}, ensure_ascii=False).encode())
        dur = len(data) / sr
        seconds += dur
        path = str(wav.resolve()) if absolute_paths else f"{audio_dir}/{eid}.wav"
        lines.append(json.dumps({"path": path, "duration": dur}))
    write_atomic(index_path, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return {"examples": len(lines), "seconds": seconds, "index": str(dest / index)}


def speaker_turns(words: list[dict], merge_gap: float = 0.5) -> list[tuple[float, float, str]]:
    """(start, end, speaker) turns: consecutive words of one speaker and channel, gaps < merge_gap."""
    turns: list[list] = []
    last: dict[tuple, list] = {}
    for w in sorted(words or [], key=lambda w: (w["start_s"], w["end_s"])):
        spk = w["speaker"] or f"channel{int(w['channel'])}"
        key = (spk, int(w["channel"]))
        t = last.get(key)
        if t is not None and w["start_s"] - t[1] < merge_gap:
            t[1] = max(t[1], w["end_s"])
        else:
            t = [w["start_s"], w["end_s"], spk]
            turns.append(t)
            last[key] = t
    return sorted((float(a), float(b), s) for a, b, s in turns)


def export_rttm(out_dir: str | Path, dest: str | Path, *, sql: str | None = None, merge_gap: float = 0.5) -> dict:
    """One RTTM per example under `dest`; returns counts."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    n = turns_total = 0
    for _, row in _rows(out_dir, sql, ["example_id", "words"]):
        eid = row["example_id"]
        turns = speaker_turns(row["words"], merge_gap)
        write_rttm(under(dest, f"{eid}.rttm"), eid, [{"start_s": a, "end_s": b, "speaker": s} for a, b, s in turns])
        n += 1
        turns_total += len(turns)
    return {"examples": n, "turns": turns_total}
