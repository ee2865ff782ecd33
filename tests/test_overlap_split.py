"""Overlapped speech through diarization and the two-channel split, and the recording's end.

The diarizer keeps one speaker per instant and adds overlap turns where pyannote's multi-label
segmentation hears a second speaker (pipelines/models/overlap.py); assembly puts those stretches on
both channels. Real speech: pyannote's sample call (two overlaps in its RTTM) and a mixture of its
two speakers' solo turns laid over each other.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import soundfile as sf
from pipelines.core.config import load_config, typed_section
from pipelines.models.diarization import DIAR_SR, DiarizeParams, Diarizer
from pipelines.models.overlap import clip_turns, exclusive_of, overlap_turns

from tandem.testing.audio import sample_paths
from tests.test_vad_diarize import _BandEncoder  # one copy of the stand-in encoder


def _params(**kw) -> DiarizeParams:
    return typed_section(DiarizeParams, {"diarize": kw}, "diarize", cache_dir=None)


@pytest.fixture(scope="module")
def diar():
    import torch
    torch.set_num_threads(1)  # the LSTM encoder stalls when threads share busy cores
    return Diarizer.load(_params())


@pytest.fixture(scope="module")
def sample():
    x, sr = sf.read(str(sample_paths()["wav"]), dtype="float32")
    assert sr == DIAR_SR
    return x


def _cover(turns, spans) -> float:
    """Seconds of `spans` covered by `turns` ((s, e) pairs; turns may overlap each other)."""
    g = np.zeros(int(40 / 0.01), bool)
    h = np.zeros_like(g)
    for s, e in spans:
        g[int(s / 0.01):int(e / 0.01)] = True
    for s, e in turns:
        h[int(s / 0.01):int(e / 0.01)] = True
    return float((g & h).sum() * 0.01)


# --- frame logic --------------------------------------------------------------------------------

def test_overlap_turns_add_the_second_speaker_only_where_two_are_active():
    full = [(0.0, 5.0, "A"), (3.0, 4.0, "B"), (6.0, 8.0, "B")]
    excl = [(0.0, 5.0, "A"), (6.0, 8.0, "B")]
    assert overlap_turns(excl, full, 8.0) == [(3.0, 4.0, "B")]
    # the exclusive pass may give the stretch to B: then A is the overlapping one there
    excl_b = [(0.0, 3.0, "A"), (3.0, 4.0, "B"), (4.0, 5.0, "A"), (6.0, 8.0, "B")]
    assert overlap_turns(excl_b, full, 8.0) == [(3.0, 4.0, "A")]
    assert overlap_turns(excl, full, 8.0, min_s=1.5) == []
    assert overlap_turns(excl, [(0.0, 5.0, "A")], 8.0) == []  # one speaker: nothing to add


def test_exclusive_of_a_full_view():
    full = [(0.0, 5.0, "A"), (3.0, 4.0, "B"), (4.5, 8.0, "B")]
    ex = exclusive_of(full, 8.0)
    assert ex == [(0.0, 5.0, "A"), (5.0, 8.0, "B")]
    assert overlap_turns(ex, full, 8.0) == [(3.0, 4.0, "B"), (4.5, 5.0, "B")]


def _default(key: str):
    return load_config(None)["diarize"][key]


def test_count_hears_a_backchannel_two_chunks_agree_on():
    """overlap_speaker_count with the shipped overlap_onset: A talks through 12 s (1 s steps of
    5 s chunks, five chunks see each frame); a 0.4 s backchannel at 6.0 s heard by two of the
    five chunks that see it counts two speakers (pyannote's rounding, 0.5, needs three); one
    heard by one of five chunks at 4.0 s stays one speaker (a lone chunk is the false overlap that
    overlap_onset 0.15 let in on SNG0072)."""
    from pyannote.core import SlidingWindow, SlidingWindowFeature
    from pipelines.models.pyannote_parts import overlap_speaker_count
    frame = 0.05
    seg = np.zeros((8, 100, 3), np.float32)
    seg[:, :, 0] = 1.0  # A, local speaker 0 in every chunk
    for c, (s, e) in ((5, (6.0, 6.4)), (6, (6.0, 6.4)), (3, (4.0, 4.4))):
        seg[c, round((s - c) / frame):round((e - c) / frame), 1] = 1.0
    chunks = SlidingWindowFeature(seg, SlidingWindow(start=0.0, duration=5.0, step=1.0))
    frames = SlidingWindow(start=0.0, duration=frame, step=frame)
    count = overlap_speaker_count(chunks, frames, warm_up=(0.0, 0.0), overlap_onset=_default("overlap_onset"))
    at = lambda t: int(count.data[count.sliding_window.closest_frame(t), 0])
    assert [at(3.0), at(4.2), at(6.2), at(8.0)] == [1, 1, 2, 1]


def test_short_backchannel_is_kept_on_both_channels(tmp_path):
    """A 0.3 s backchannel of B inside A's turn (the full view's second speaker) becomes an
    overlap turn under the shipped min_overlap_s and assembly carries it on both channels; B's
    channel stays silent elsewhere in A's turn."""
    from pipelines.curate.assemble import AssembleStage
    from pipelines.io.audio import decode_flac
    full = [(0.0, 6.0, "A"), (2.0, 2.3, "B"), (6.0, 10.0, "B")]
    excl = exclusive_of(full, 10.0)
    ov = overlap_turns(excl, full, 10.0, _default("min_overlap_s"))
    assert [(round(s, 3), round(e, 3), k) for s, e, k in ov] == [(2.0, 2.3, "B")]
    turns = ([{"start_s": s, "end_s": e, "speaker": k, "overlap": False} for s, e, k in excl]
             + [{"start_s": s, "end_s": e, "speaker": k, "overlap": True} for s, e, k in ov])
    sr = 24000
    p = tmp_path / "work.wav"
    sf.write(str(p), (0.3 * np.random.default_rng(1).standard_normal(10 * sr)).astype(np.float32), sr,
             subtype="PCM_16")
    words = [{"word": w, "start_s": s, "end_s": s + 0.5, "score": 0.9} for w, s in (("one", 1.0), ("two", 7.0))]
    st = AssembleStage.from_config(load_config(None))
    item = st.process({"work_path": str(p), "turns": turns, "segments": [_seg(words)], "source_id": "s",
                       "seed": 0, "cfg_hash": "h", "sample_rate": sr, "duration_s": 10.0, "uri": str(p)})
    (ex,) = item["examples"]
    audio, _ = decode_flac(ex["audio"])
    rms = lambda c, a, b: float(np.sqrt(np.mean(audio[c, int(a * sr):int(b * sr)] ** 2)))
    assert rms(0, 2.05, 2.25) > 0.2 and rms(1, 2.05, 2.25) > 0.2  # both channels carry the backchannel
    assert rms(1, 0.5, 1.9) < 1e-3 and rms(1, 2.4, 5.9) < 1e-3


def test_clip_turns_to_the_recording():
    assert clip_turns([(-0.1, 1.0, "A"), (2.0, 3.4, "B"), (3.3, 4.0, "A")], 3.3) == [(0.0, 1.0, "A"), (2.0, 3.3, "B")]


# --- the recording's end ------------------------------------------------------------------------

class _PastTheEnd:
    """A pipeline whose reconstruction runs 1.5 s past the audio, as pyannote's zero-padded last
    chunk can (the meeting excerpts' IndexError: index 3037, size 3002)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def to(self, device):
        return self

    def __call__(self, file, **kw):
        from pyannote.core import Annotation, Segment
        dur = file["waveform"].shape[1] / file["sample_rate"]
        a = Annotation()
        a[Segment(0.0, dur / 2)] = "A"
        a[Segment(dur / 2 - 1.0, dur + 1.5)] = "B"
        return a


@pytest.mark.parametrize("n", [30 * DIAR_SR + 160, 30 * DIAR_SR + 1, 12345 * 7])
def test_turns_past_the_end_are_clipped_not_an_index_error(n):
    t = np.arange(n) / DIAR_SR
    wav = np.where(t < t[-1] / 2, np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    d = Diarizer(_PastTheEnd(_BandEncoder()), _params())
    turns, _ = d.diarize_waveform(wav)
    dur = n / DIAR_SR
    assert turns and all(0.0 <= s < e <= dur + 1e-9 for s, e, _, _ in turns), turns
    assert max(e for _, e, _, _ in turns) == pytest.approx(dur, abs=0.011)  # speech to the last sample kept


@pytest.mark.parametrize("end_s", [25.3371, 29.00044, 20.0000625, 30.0])
def test_real_call_cut_inside_speech(diar, sample, tmp_path, end_s):
    """pyannote's call cut inside a turn (speech runs to the last sample), at lengths that are no
    multiple of the 10 ms frame or the 1 s step, and whole (30.0: the file's exact end)."""
    n = round(end_s * DIAR_SR)
    p = tmp_path / "cut.wav"
    sf.write(str(p), sample[:n], DIAR_SR, subtype="PCM_16")
    turns = diar(str(p))
    assert turns and all(0.0 <= t["start_s"] < t["end_s"] <= n / DIAR_SR + 1e-3 for t in turns), turns
    assert max(t["end_s"] for t in turns) > n / DIAR_SR - 0.5


def test_last_block_of_odd_length(diar, sample, tmp_path):
    """Blocks of 7 s over 27.3 s + 3 samples: the last block is 6.3 s and 3 samples long."""
    n = int(27.3 * DIAR_SR) + 3
    p = tmp_path / "odd.wav"
    sf.write(str(p), sample[:n], DIAR_SR, subtype="PCM_16")
    d = Diarizer(diar.pipeline, dataclasses.replace(diar.p, block_s=7.0))
    turns = d(str(p))
    assert turns and max(t["end_s"] for t in turns) <= n / DIAR_SR + 1e-3
    assert max(t["end_s"] for t in turns) > 26.0


# --- assembly -----------------------------------------------------------------------------------

def _seg(words):
    return {"start_s": words[0]["start_s"], "end_s": words[-1]["end_s"], "text": " ".join(w["word"] for w in words),
            "words": words, "language": "en", "language_prob": 0.9, "avg_logprob": -0.2,
            "no_speech_prob": 0.01, "compression_ratio": 1.2}


def test_assembly_puts_overlap_on_both_channels(tmp_path):
    """A speaks 0-6 s, B 6-10 s and over A's end (4-6 s, an overlap turn). Both channels carry
    4-6 s; A (most exclusive speech) is the main speaker; the word in the overlap stays A's on
    channel 0, flagged overlap; B's word stays on channel 1."""
    from pipelines.curate.assemble import AssembleStage
    from pipelines.io.audio import decode_flac
    sr = 24000
    rng = np.random.default_rng(0)
    p = tmp_path / "work.wav"
    sf.write(str(p), (0.3 * rng.standard_normal(10 * sr)).astype(np.float32), sr, subtype="PCM_16")
    turns = [{"start_s": 0.0, "end_s": 6.0, "speaker": "A", "overlap": False},
             {"start_s": 4.0, "end_s": 6.0, "speaker": "B", "overlap": True},
             {"start_s": 6.0, "end_s": 10.0, "speaker": "B", "overlap": False}]
    words = [{"word": w, "start_s": s, "end_s": s + 0.5, "score": 0.9}
             for w, s in (("one", 1.0), ("two", 4.5), ("three", 7.0))]
    st = AssembleStage.from_config(load_config(overrides={"examples": {"keep_work": True}}))
    item = st.process({"work_path": str(p), "turns": turns, "segments": [_seg(words)], "source_id": "s",
                       "seed": 0, "cfg_hash": "h", "sample_rate": sr, "duration_s": 10.0, "uri": str(p)})
    (ex,) = item["examples"]
    assert ex["speakers"] == ["s:A", "s:B"]  # scoped by the source
    got = {w["word"]: (w["channel"], w["overlap"]) for w in ex["words"]}
    assert got == {"one": (0, False), "two": (0, True), "three": (1, False)}
    audio, _ = decode_flac(ex["audio"])
    rms = [[float(np.sqrt(np.mean(audio[c, int(a * sr):int(b * sr)] ** 2))) for a, b in
            ((0.5, 3.5), (4.5, 5.5), (6.5, 9.5))] for c in (0, 1)]
    assert rms[0][0] > 0.2 and rms[0][1] > 0.2 and rms[0][2] < 1e-3
    assert rms[1][0] < 1e-3 and rms[1][1] > 0.2 and rms[1][2] > 0.2
    assert 0.15 < ex["overlap_ratio"] < 0.25  # 2 s of 10 s speech


# --- real overlap, both backends ----------------------------------------------------------------

SAMPLE_OVERLAP = [(18.15, 18.59), (27.85, 28.50)]  # where sample.rttm has both speakers


def _check_overlap_on_sample(turns):
    ov = [(t["start_s"], t["end_s"]) for t in turns if t["overlap"]]
    ex = sorted((t["start_s"], t["end_s"]) for t in turns if not t["overlap"])
    ref = sum(e - s for s, e in SAMPLE_OVERLAP)
    assert _cover(ov, SAMPLE_OVERLAP) >= 0.7 * ref, ov
    assert sum(e - s for s, e in ov) < 3 * ref, ov  # overlap where the call has it, not everywhere
    assert all(b[0] >= a[1] - 0.011 for a, b in itertools.pairwise(ex)), ex  # exclusive turns are exclusive
    own = {t["speaker"] for t in turns if not t["overlap"]}
    for t in turns:  # an overlap turn lies inside another speaker's exclusive speech
        if t["overlap"]:
            assert any(u["speaker"] != t["speaker"] and u["start_s"] - 0.011 <= t["start_s"]
                       and t["end_s"] <= u["end_s"] + 0.011 for u in turns if not u["overlap"]), t
    assert len(own) == 2


def test_embedded_keeps_the_sample_overlap(diar):
    """Measured: overlap turns cover 0.97 of the reference overlap (bench/conversation.py
    --turns-only); DER at collar 0 0.120 without them, 0.056 with."""
    _check_overlap_on_sample(diar(str(sample_paths()["wav"])))
    old = Diarizer(diar.pipeline, dataclasses.replace(diar.p, keep_overlap=False))(str(sample_paths()["wav"]))
    assert not any(t["overlap"] for t in old)


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """pyannote's SpeakerDiarization loaded by `Pipeline.from_pretrained` from a local directory:
    the bundled segmentation model by path, resemblyzer's encoder saved as its embedding, the
    clustering the embedded backend uses (pyannote's own agglomerative step on raw embeddings)."""
    from pipelines.models.pyannote_parts import ResemblyzerEmbedding, write_local_pipeline
    from pipelines.models.registry import resemblyzer_path, whisperx_segmentation_path
    d = write_local_pipeline(
        tmp_path_factory.mktemp("pipe"), segmentation=whisperx_segmentation_path(),
        embedding=ResemblyzerEmbedding.pretrained(resemblyzer_path()),
        clustering_params={"method": "average", "threshold": 0.3, "min_cluster_size": 3},
        segmentation_params={"threshold": 0.5, "min_duration_off": 0.0})
    return Diarizer.load(_params(backend="pyannote", pipeline=str(d), num_speakers=2))


def test_production_pipeline_keeps_the_sample_overlap(production):
    """Same split through `Pipeline.from_pretrained`: exclusive turns from pyannote's exclusive view,
    overlap turns from its full view, the overlap counting step set on the loaded pipeline."""
    from pyannote.audio.pipelines import SpeakerDiarization
    assert type(production.pipeline) is SpeakerDiarization
    assert production.pipeline.speaker_count.keywords == {"overlap_onset": production.p.overlap_onset}
    _check_overlap_on_sample(production(str(sample_paths()["wav"])))


def test_production_pipeline_end_of_recording(production, sample, tmp_path):
    n = int(25.3371 * DIAR_SR)
    p = tmp_path / "cut.wav"
    sf.write(str(p), sample[:n], DIAR_SR, subtype="PCM_16")
    turns = production(str(p))
    assert turns and max(t["end_s"] for t in turns) <= n / DIAR_SR + 1e-3
