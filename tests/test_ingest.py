"""Ingest: broken inputs become rejections with reasons; formats decode; ids from content."""

import numpy as np
import pytest
import soundfile as sf
from pipelines.core.config import config_hash, load_config
from pipelines.curate.chain import make_items
from pipelines.curate.ingest import IngestStage

from tandem.testing.audio import EN_TURNS_2, make_conversation, two_channel, write_audio, write_broken_files


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def conv():
    return make_conversation(EN_TURNS_2[:4], "en", 24000, seed=5)


def _ingest(cfg, paths, out):
    st = IngestStage.from_config(cfg)
    return [st(it) for it in make_items([str(p) for p in paths], cfg, config_hash(cfg), str(out))]


def test_broken_files_are_rejected_with_reasons(cfg, tmp_path):
    expected = write_broken_files(tmp_path / "in")
    items = _ingest(cfg, [tmp_path / "in" / n for n in sorted(expected)], tmp_path / "out")
    for it in items:
        name = it["uri"].rsplit("/", 1)[-1]
        assert it["status"] == "rejected", name
        (rej,) = it["rejections"]
        assert rej["stage"] == "ingest"
        assert rej["reason"] == expected[name], (name, rej["detail"])
        assert name in rej["detail"]  # the message names the file
    assert not list((tmp_path / "out").rglob("*.wav"))


def test_missing_file_is_rejected(cfg, tmp_path):
    (it,) = _ingest(cfg, [tmp_path / "nope.wav"], tmp_path / "out")
    assert it["status"] == "rejected" and it["rejections"][0]["reason"] == "missing"


def test_mixed_formats_decode_to_24k_normalised(cfg, conv, tmp_path):
    audio, _, _ = conv
    mono22 = audio[::2]  # rate 12 kHz: forces resampling
    stereo = np.stack([audio, audio * 0.9], axis=1)  # mixed stereo: same voices on both channels
    files = [write_audio(tmp_path / "a.wav", stereo, 24000), write_audio(tmp_path / "b.flac", mono22, 12000),
             write_audio(tmp_path / "c.ogg", audio, 24000), write_audio(tmp_path / "d.opus", audio, 24000),
             write_audio(tmp_path / "e.mp3", audio, 24000), write_audio(tmp_path / "f.m4a", audio, 24000)]
    dur = len(audio) / 24000
    for it in _ingest(cfg, files, tmp_path / "out"):
        assert it["status"] == "ok", it["rejections"]
        assert it["two_channel"] is False and it["channels"] == 1
        assert abs(it["duration_s"] - dur) < 0.1, (it["uri"], it["duration_s"], dur)
        info = sf.info(it["work_path"])
        assert info.samplerate == 24000 and info.channels == 1
        x, _ = sf.read(it["work_path"], dtype="float32")
        import pyloudnorm
        lufs = pyloudnorm.Meter(24000).integrated_loudness(x)
        # block-wise loudness approximates BS.1770 gating; 1.5 LU is tighter than any audible drift
        assert abs(lufs - cfg["ingest"]["target_lufs"]) < 1.5, (it["uri"], lufs)


def test_same_audio_two_names_same_source_id(cfg, conv, tmp_path):
    audio, _, _ = conv
    a = write_audio(tmp_path / "one.wav", audio, 24000)
    pcm, _ = sf.read(str(a), dtype="int16")  # the same samples in another container
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "two.flac"
    sf.write(str(b), pcm, 24000)
    other = write_audio(tmp_path / "three.wav", audio[: len(audio) // 2], 24000)
    x, y, z = _ingest(cfg, [a, b, other], tmp_path / "out")
    assert x["source_id"] == y["source_id"] != z["source_id"]
    assert x["work_key"] != y["work_key"]


def test_two_channel_conversation_keeps_channels(cfg, conv, tmp_path):
    audio, ref, _ = conv
    st = two_channel(audio, ref, 24000, main="A")
    p = write_audio(tmp_path / "duplex.wav", st, 24000)
    (it,) = _ingest(cfg, [p], tmp_path / "out")
    assert it["status"] == "ok" and it["two_channel"] is True and it["channels"] == 2
    x, _ = sf.read(it["work_path"], dtype="float32")
    a = int(ref[0]["start_s"] * 24000), int(ref[0]["end_s"] * 24000)  # A speaks: channel 1 silent
    assert np.abs(x[a[0]:a[1], 0]).max() > 0.1 and np.abs(x[a[0]:a[1], 1]).max() < 1e-3
