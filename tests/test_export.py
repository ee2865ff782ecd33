import argparse
import io
import json

import numpy as np
import pytest
import soundfile as sf
from pipelines.core.contracts import speaker_id
from pipelines.train import export
from ray_jobs import export as export_cmd

from tandem.testing import loader as lt


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    rows = lt.make_output_dir(out, 8, languages=("en", "fr"), durations=(1.0, 1.5), per_item=2)
    return out, {r["example_id"]: r for r in rows}


def cli(argv):
    p = argparse.ArgumentParser()
    export_cmd.add_arguments(p)
    return export_cmd.run(p.parse_args(argv))


def test_moshi_export_round_trips(out, tmp_path):
    out, rows = out
    dest = tmp_path / "moshi"
    assert cli(["moshi", str(out), str(dest)]) == 0
    index = [json.loads(x) for x in (dest / "data.jsonl").read_text().splitlines()]
    assert len(index) == len(rows)
    for rec in index:
        wav = dest / rec["path"]
        eid = wav.stem
        got, sr = sf.read(wav, dtype="int16", always_2d=True)
        want, sr0 = sf.read(io.BytesIO(rows[eid]["audio"]), dtype="int16", always_2d=True)
        assert sr == sr0 and got.shape[1] == 2
        np.testing.assert_array_equal(got, want)  # left = channel 0, right = channel 1, bit-exact
        assert rec["duration"] == pytest.approx(len(want) / sr)
        al = json.loads(wav.with_suffix(".json").read_text())["alignments"]
        back = sorted((w, s, e, ["SPEAKER_MAIN", "SPEAKER_OTHER"].index(lab)) for w, (s, e), lab in al)
        orig = sorted((w["word"], w["start_s"], w["end_s"], w["channel"]) for w in rows[eid]["words"])
        assert back == orig
        assert [a[1][0] for a in al] == sorted(a[1][0] for a in al)  # sorted by start, as moshi-finetune needs


def test_moshi_export_read_by_moshi_finetunes_reader(out, tmp_path):
    """moshi-finetune reads the index with sphn.dataset_jsonl (paths relative to the index) at 24 kHz,
    then opens <wav stem>.json and bisects its "alignments" by start time, keeping SPEAKER_MAIN."""
    import bisect

    import sphn
    out, rows = out
    dest = tmp_path / "moshi24"
    export.export_moshi(out, dest, sample_rate=24000)
    ds = sphn.dataset_jsonl(str(dest / "data.jsonl"), duration_sec=1.0, num_threads=1, sample_rate=24000,
                            pad_last_segment=True)
    seen = set()
    for sample in ds.seq(skip=0, step_by=1):
        eid = sample["path"].rsplit("/", 1)[-1][:-4]
        seen.add(eid)
        wav = sample["data"][..., : sample["unpadded_len"]]
        assert wav.shape[0] == 2 and sample["sample_rate"] == 24000
        with open(sample["path"][:-4] + ".json") as f:
            al = json.load(f)["alignments"]
        starts = [a[1][0] for a in al]
        assert starts == sorted(starts)
        t0 = sample["start_time_sec"]
        window = al[bisect.bisect_left(starts, t0): bisect.bisect_left(starts, t0 + 1.0)]
        want = [w["word"] for w in sorted(rows[eid]["words"], key=lambda w: w["start_s"])
                if w["channel"] == 0 and t0 <= w["start_s"] < t0 + 1.0]
        assert [a[0] for a in window if a[2] == "SPEAKER_MAIN"] == want
        # the main speaker's words sit on the left channel: its tone is there under each word
        for a in window:
            if a[2] == "SPEAKER_MAIN" and a[1][1] - a[1][0] > 0.1:
                i, j = round((a[1][0] - t0) * 24000), round((min(a[1][1], t0 + 1.0) - t0) * 24000)
                if j - i > 240:
                    assert np.abs(wav[0, i:j]).max() > 0.1
    assert seen == set(rows)


def test_moshi_export_with_sql_and_resample(out, tmp_path):
    out, rows = out
    dest = tmp_path / "fr"
    r = export.export_moshi(out, dest, sql="SELECT example_id FROM examples WHERE language = 'fr'",
                            sample_rate=24000, absolute_paths=True)
    fr = {e for e, row in rows.items() if row["language"] == "fr"}
    index = [json.loads(x) for x in (dest / "data.jsonl").read_text().splitlines()]
    assert r["examples"] == len(fr) == len(index)
    assert {p.split("/")[-1][:-4] for p in (x["path"] for x in index)} == fr
    for x in index:
        info = sf.info(x["path"])  # absolute path
        assert info.samplerate == 24000 and info.channels == 2
        assert x["duration"] == pytest.approx(rows[x["path"].split("/")[-1][:-4]]["duration_s"], abs=1e-3)


def test_rttm_export(out, tmp_path):
    out, rows = out
    dest = tmp_path / "rttm"
    assert cli(["rttm", str(out), str(dest), "--merge-gap", "0"]) == 0
    for eid, row in rows.items():
        lines = (dest / f"{eid}.rttm").read_text().splitlines()
        assert len(lines) == len(row["words"])  # no merging: one turn per word
        for line in lines:
            f = line.split()
            assert f[0] == "SPEAKER" and f[1] == eid and f[7] in row["speakers"]
            assert float(f[4]) >= 0
    turns = export.speaker_turns([
        {"speaker": "a", "channel": 0, "start_s": 0.0, "end_s": 0.5},
        {"speaker": "b", "channel": 1, "start_s": 0.4, "end_s": 0.9},
        {"speaker": "a", "channel": 0, "start_s": 0.7, "end_s": 1.0},
        {"speaker": "a", "channel": 0, "start_s": 2.0, "end_s": 2.5}], merge_gap=0.5)
    assert turns == [(0.0, 1.0, "a"), (0.4, 0.9, "b"), (2.0, 2.5, "a")]


def test_export_errors_name_the_problem(tmp_path, capsys):
    assert cli(["moshi", str(tmp_path / "nope"), str(tmp_path / "d")]) == 2
    assert "nope" in capsys.readouterr().err


def test_hf_datasets_recipe(out, tmp_path):
    """The recipe in docs/TRAINERS.md: Parquet shards -> datasets with a decoded Audio column."""
    from datasets import Audio, load_dataset
    from pipelines.store.commit import committed_files
    out, rows = out
    files = [str(p) for p in committed_files(out, "shards")]
    ds = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    ds = ds.cast_column("audio", Audio())  # FLAC bytes -> decoded on access
    assert ds.num_rows == len(rows)
    ex = ds[0]
    samples = ex["audio"].get_all_samples()
    want, sr = sf.read(io.BytesIO(rows[ex["example_id"]]["audio"]), dtype="float32", always_2d=True)
    assert samples.sample_rate == sr and tuple(samples.data.shape) == (2, len(want))
    np.testing.assert_allclose(samples.data.numpy(), want.T, atol=1e-4)
    assert ex["words"][0].keys() >= {"channel", "word", "start_s", "end_s"}
    # without torchcodec: keep the bytes and decode with soundfile
    raw = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    raw = raw.cast_column("audio", Audio(decode=False))
    b = raw[0]["audio"]["bytes"]
    x, sr2 = sf.read(io.BytesIO(b), dtype="float32", always_2d=True)
    assert sr2 == sr and x.shape == (len(want), 2)


def test_lhotse_export_read_back_by_lhotse(out, tmp_path):
    from lhotse import CutSet, MultiCut, RecordingSet, SupervisionSet, load_manifest
    out, rows = out
    import shutil
    made = tmp_path / "lhotse"
    assert cli(["lhotse", str(out), str(made), "--shard-size", "3"]) == 0
    dest = tmp_path / "moved" / "lhotse"  # a moved export loads: its audio paths are relative
    shutil.move(str(made), str(dest))
    cuts = load_manifest(dest / "cuts.jsonl.gz").with_recording_path_prefix(str(dest))
    assert isinstance(cuts, CutSet) and len(cuts) == len(rows)
    assert len(load_manifest(dest / "recordings.jsonl.gz")) == len(rows)
    assert isinstance(load_manifest(dest / "recordings.jsonl.gz"), RecordingSet)
    sups = load_manifest(dest / "supervisions.jsonl.gz")
    assert isinstance(sups, SupervisionSet)
    for cut in cuts:
        row = rows[cut.id]
        want, sr = sf.read(io.BytesIO(row["audio"]), dtype="float32", always_2d=True)
        assert isinstance(cut, MultiCut) and cut.num_channels == 2 and cut.sampling_rate == sr
        np.testing.assert_allclose(cut.load_audio(), want.T, atol=1e-6)  # channel 0 = main speaker
        got = sorted((a.symbol, round(a.start, 3), round(a.start + a.duration, 3), s.channel, s.speaker)
                     for s in cut.supervisions for a in s.alignment["word"])
        src = row["source_ids"][0]  # bare labels of the fixture scoped to their source
        orig = sorted((w["word"], round(w["start_s"], 3), round(w["end_s"], 3), w["channel"],
                       speaker_id(src, w["speaker"])) for w in row["words"])
        assert got == orig and all(":" in s.speaker for s in cut.supervisions)
        assert {(s.channel, s.speaker) for s in cut.supervisions} == {(w["channel"], speaker_id(src, w["speaker"]))
                                                                      for w in row["words"]}
    # Shar shards for streaming, read back by lhotse, audio decoded from the tar shards
    shar = CutSet.from_shar(in_dir=dest / "shar")
    assert len(list((dest / "shar").glob("recording.*.tar"))) == 3  # 8 cuts, 3 per shard
    n = 0
    for cut in shar:
        want, _ = sf.read(io.BytesIO(rows[cut.id]["audio"]), dtype="float32", always_2d=True)
        np.testing.assert_allclose(cut.load_audio(), want.T, atol=1e-6)
        assert sum(len(s.alignment["word"]) for s in cut.supervisions) == len(rows[cut.id]["words"])
        n += 1
    assert n == len(rows)


def test_hf_export_audio_column_decodes(out, tmp_path):
    from datasets import load_from_disk
    out, rows = out
    dest = tmp_path / "hf"
    assert cli(["hf", str(out), str(dest), "--sql", "SELECT example_id FROM examples WHERE language = 'en'"]) == 0
    ds = load_from_disk(str(dest))
    en = {e for e, r in rows.items() if r["language"] == "en"}
    assert ds.num_rows == len(en) and set(ds["example_id"]) == en
    ex = ds[0]
    samples = ex["audio"].get_all_samples()
    want, sr = sf.read(io.BytesIO(rows[ex["example_id"]]["audio"]), dtype="float32", always_2d=True)
    assert samples.sample_rate == sr
    np.testing.assert_allclose(samples.data.numpy(), want.T, atol=1e-4)
    assert [w["word"] for w in ex["words"]] == [w["word"] for w in rows[ex["example_id"]]["words"]]
