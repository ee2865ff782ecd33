"""Exports for lhotse and Hugging Face `datasets`, written with those libraries' own writers.

lhotse (DEST/):
  audio/<example_id>.flac     the shard's two-channel FLAC bytes, copied as they are (no re-encode)
  recordings.jsonl.gz         one Recording per example, channels [0, 1] (0 = the main speaker); its
                              audio path is relative to DEST, so the export can move: load with
                              CutSet.from_file(DEST/"cuts.jsonl.gz").with_recording_path_prefix(DEST)
  supervisions.jsonl.gz       one SupervisionSegment per (channel, speaker) of an example, from its
                              first word to its last, text = its words, alignment["word"] = its words
  cuts.jsonl.gz               one MultiCut per example (both channels) with its supervisions
  shar/                       the same cuts as lhotse Shar shards (cuts.NNNNNN.jsonl.gz and
                              recording.NNNNNN.tar, FLAC) for streaming: CutSet.from_shar(in_dir=...)
hf: a `datasets` DatasetDict saved with save_to_disk, columns example_id, language, kind,
  duration_s, audio (an `Audio` feature: the FLAC bytes, decoded on access) and words.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from pipelines.core.contracts import speaker_id
from pipelines.io.files import write_atomic
from pipelines.train.export import SPEAKER_LABELS, _rows, under


def _probe(shard: str, row: dict) -> tuple[int, int]:
    import soundfile as sf
    try:
        info = sf.info(io.BytesIO(row["audio"]))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{shard}: example {row['example_id']}: cannot decode audio: {e}") from None
    if info.channels != 2:
        raise ValueError(f"{shard}: example {row['example_id']}: audio has {info.channels} channel(s), expected 2")
    return info.samplerate, info.frames


def supervisions(row: dict, duration: float) -> list:
    """lhotse SupervisionSegments: one per (channel, speaker), with word alignments; the speaker is
    the shard's speaker id (contracts.speaker_id: a per-source label of an older shard is scoped to
    the example's source), so speaker-disjoint splits work across sources."""
    from lhotse import SupervisionSegment
    from lhotse.supervision import AlignmentItem
    groups: dict[tuple[int, str], list[dict]] = {}
    for w in row["words"] or []:
        ch = int(w["channel"])
        groups.setdefault((ch, w["speaker"] or SPEAKER_LABELS[ch]), []).append(w)
    out = []
    scope = (row.get("source_ids") or [None])[0]
    for (ch, spk), ws in sorted(groups.items()):
        ws = sorted(ws, key=lambda w: (w["start_s"], w["end_s"]))
        start = max(0.0, float(ws[0]["start_s"]))
        end = min(duration, max(float(w["end_s"]) for w in ws))
        items = [AlignmentItem(symbol=w["word"], start=round(float(w["start_s"]), 4),
                               duration=round(max(0.0, float(w["end_s"]) - float(w["start_s"])), 4),
                               score=None if w.get("score") is None else float(w["score"])) for w in ws]
        out.append(SupervisionSegment(
            id=f"{row['example_id']}-ch{ch}-{spk}", recording_id=row["example_id"], start=round(start, 4),
            duration=round(max(0.0, end - start), 4), channel=ch, text=" ".join(w["word"] for w in ws),
            language=row.get("language"), speaker=speaker_id(scope, spk), alignment={"word": items},
            custom={"role": SPEAKER_LABELS[ch]}))
    return out


def export_lhotse(out_dir: str | Path, dest: str | Path, *, sql: str | None = None, shard_size: int = 1000,
                  shar: bool = True) -> dict:
    """Write recordings, supervisions, cuts (and Shar shards) under `dest`; streams one row group
    at a time and writes the manifests line by line."""
    from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSet
    from lhotse.shar import SharWriter
    dest = Path(dest)
    (dest / "audio").mkdir(parents=True, exist_ok=True)
    n = n_sup = 0
    seconds = 0.0
    with contextlib.ExitStack() as stack:
        rec_w = stack.enter_context(RecordingSet.open_writer(dest / "recordings.jsonl.gz"))
        sup_w = stack.enter_context(SupervisionSet.open_writer(dest / "supervisions.jsonl.gz"))
        cut_w = stack.enter_context(CutSet.open_writer(dest / "cuts.jsonl.gz"))
        shar_w = None
        if shar:
            (dest / "shar").mkdir(exist_ok=True)
            shar_w = stack.enter_context(SharWriter(str(dest / "shar"), fields={"recording": "flac"},
                                                    shard_size=shard_size))
        for shard, row in _rows(out_dir, sql, ["example_id", "language", "audio", "words", "source_ids"]):
            eid = row["example_id"]
            sr, frames = _probe(shard, row)
            path = under(dest, "audio", f"{eid}.flac")
            write_atomic(path, row["audio"])  # the FLAC as stored: lossless, no re-encode
            rel = path.relative_to(dest).as_posix()  # relative: a moved export still loads (see module doc)
            rec = Recording(id=eid, sources=[AudioSource(type="file", channels=[0, 1], source=rel)],
                            sampling_rate=sr, num_samples=frames, duration=frames / sr, channel_ids=[0, 1])
            sups = supervisions(row, rec.duration)
            cut = rec.to_cut()  # a MultiCut over both channels
            cut.supervisions = sups
            rec_w.write(rec)
            for s in sups:
                sup_w.write(s)
            cut_w.write(cut)
            if shar_w is not None:  # Shar reads the audio now: from its absolute path
                full = Recording(id=eid, sources=[AudioSource(type="file", channels=[0, 1], source=str(path.resolve()))],
                                 sampling_rate=sr, num_samples=frames, duration=frames / sr, channel_ids=[0, 1]).to_cut()
                full.supervisions = sups
                shar_w.write(full)
            n += 1
            n_sup += len(sups)
            seconds += rec.duration
    return {"examples": n, "supervisions": n_sup, "seconds": seconds, "dir": str(dest)}


def export_hf(out_dir: str | Path, dest: str | Path, *, sql: str | None = None) -> dict:
    """A `datasets` dataset with a decodable Audio column, saved with save_to_disk under `dest`
    (load it with datasets.load_from_disk). Built from a generator: rows stream to Arrow files."""
    from datasets import Audio, Dataset, Features, List, Value

    word = {"channel": Value("int32"), "speaker": Value("string"), "word": Value("string"),
            "start_s": Value("float64"), "end_s": Value("float64"), "score": Value("float64"),
            "overlap": Value("bool")}
    features = Features({"example_id": Value("string"), "language": Value("string"), "kind": Value("string"),
                         "duration_s": Value("float64"), "audio": Audio(), "words": List(word)})

    def gen():
        for shard, row in _rows(out_dir, sql, ["example_id", "language", "kind", "audio", "words"]):
            sr, frames = _probe(shard, row)
            yield {"example_id": row["example_id"], "language": row["language"], "kind": row["kind"],
                   "duration_s": frames / sr, "audio": {"bytes": row["audio"], "path": f"{row['example_id']}.flac"},
                   "words": [{k: w.get(k) for k in word} for w in row["words"] or []]}

    with tempfile.TemporaryDirectory(prefix="tandem-hf-") as cache:
        ds = Dataset.from_generator(gen, features=features, cache_dir=cache)
        ds.save_to_disk(str(dest))
        n = ds.num_rows
    return {"examples": n, "dir": str(dest)}
