"""pyannote.audio's own pipeline code, offline, through the tandem adapter.

A local pyannote pipeline directory (config.yaml naming pyannote's SpeakerDiarization, the
segmentation model bundled with whisperx by path, an embedding checkpoint saved here with random
weights, a neutral PLDA) is loaded by `Pipeline.from_pretrained(dir)` exactly as a downloaded
community-1 directory would be, and run on pyannote's real sample call.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pipelines.core.config import load_config, typed_section
from pipelines.curate.diarize import DiarizeStage
from pipelines.models.diarization import DiarizeParams, Diarizer
from pipelines.models.pyannote_parts import ResemblyzerEmbedding, write_local_pipeline
from pipelines.models.registry import ModelMissing, whisperx_segmentation_path

from tandem.testing.audio import sample_paths

SAMPLE_S = 30.0  # length of pyannote's sample.wav


@pytest.fixture(scope="module")
def local_pipeline(tmp_path_factory):
    torch.set_num_threads(1)  # the LSTM encoder's many small steps stall when threads share busy cores
    torch.manual_seed(0)
    emb = ResemblyzerEmbedding().eval()  # random weights: this tests the plumbing, not the voices
    d = write_local_pipeline(
        tmp_path_factory.mktemp("pipe"), segmentation=whisperx_segmentation_path(), embedding=emb,
        clustering_params={"method": "centroid", "threshold": 0.9, "min_cluster_size": 12},
        segmentation_params={"threshold": 0.5, "min_duration_off": 0.0})
    return d, emb


@pytest.fixture(scope="module")
def loaded(local_pipeline):
    """The local directory through `Pipeline.from_pretrained`, once: loading costs seconds."""
    d, _ = local_pipeline
    return Diarizer.load(_params(str(d)))


def _params(pipeline: str, **kw) -> DiarizeParams:
    cfg = {"diarize": {"backend": "pyannote", "pipeline": pipeline, "segmentation_batch_size": 7,
                       "embedding_batch_size": 5, **kw}}
    return typed_section(DiarizeParams, cfg, "diarize", cache_dir=None)


class _Spy:
    """Records what the adapter hands to the pyannote pipeline, then forwards the call."""

    def __init__(self, pipe):
        self.pipe, self.files, self.kwargs = pipe, [], []

    def to(self, device):
        self.pipe.to(device)
        return self

    def __call__(self, file, **kw):
        self.files.append(file)
        self.kwargs.append(kw)
        return self.pipe(file, **kw)


def _check_turns(turns):
    assert turns
    for t in turns:
        assert 0.0 <= t["start_s"] < t["end_s"] <= SAMPLE_S + 0.05, t
    assert [t["start_s"] for t in turns] == sorted(t["start_s"] for t in turns)
    # speakers named by first appearance: SPEAKER_00 first, each new name the next number
    seen: list[str] = []
    for t in turns:
        if t["speaker"] not in seen:
            assert t["speaker"] == f"SPEAKER_{len(seen):02d}"
            seen.append(t["speaker"])
    return seen


def test_local_pipeline_runs_through_adapter(local_pipeline, loaded):
    from pyannote.audio.pipelines import SpeakerDiarization
    _, emb = local_pipeline
    pipe = loaded.pipeline
    diar = Diarizer(pipe, loaded.p)
    assert isinstance(pipe, SpeakerDiarization) and pipe.klustering == "AgglomerativeClustering"
    # the checkpoint written here came back through pyannote's Model.from_pretrained, weights intact
    loaded = pipe._embedding.model_
    assert isinstance(loaded, ResemblyzerEmbedding)
    assert torch.equal(loaded.lstm.weight_hh_l2, emb.lstm.weight_hh_l2)
    assert pipe.segmentation_batch_size == 7 and pipe.embedding_batch_size == 5
    spy = diar.pipeline = _Spy(pipe)
    turns = diar(str(sample_paths()["wav"]))
    _check_turns(turns)
    # fed in memory: a (1, samples) tensor at 16 kHz, no path for pyannote to open
    (f,) = spy.files
    assert "audio" not in f and isinstance(f["waveform"], torch.Tensor)
    assert f["sample_rate"] == 16000 and f["waveform"].shape == (1, int(SAMPLE_S * 16000))
    assert spy.kwargs == [{"min_speakers": 1, "max_speakers": 6}]
    assert diar(str(sample_paths()["wav"])) == turns  # deterministic, labels stable


def test_speaker_count_is_passed(local_pipeline, loaded):
    d, _ = local_pipeline
    turns = Diarizer(loaded.pipeline, _params(str(d), num_speakers=2))(str(sample_paths()["wav"]))
    assert _check_turns(turns) == ["SPEAKER_00", "SPEAKER_01"]


def test_blocks_are_linked_across(local_pipeline, loaded):
    """A file longer than block_s is diarized block by block; turns stay inside the file and
    speakers keep first-appearance names across blocks."""
    d, _ = local_pipeline
    p = dataclasses.replace(_params(str(d)), block_s=12.0)
    spy = _Spy(loaded.pipeline)
    turns = Diarizer(spy, p)(str(sample_paths()["wav"]))
    assert [f["waveform"].shape[1] for f in spy.files] == [12 * 16000, 12 * 16000, 6 * 16000]
    _check_turns(turns)
    assert max(t["end_s"] for t in turns) > 24.0  # the last block (24-30 s) was diarized too


def test_missing_pipeline_fails_with_how_to(tmp_path, monkeypatch):
    with pytest.raises(ModelMissing, match="config.yaml.*diarize.backend=embedded"):
        Diarizer.load(_params(str(tmp_path / "nowhere")))
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelMissing, match="HF_TOKEN"):
        Diarizer.load(_params("pyannote/speaker-diarization-community-1"))


def test_stage_check_and_eager_setup(local_pipeline, tmp_path):
    bad = DiarizeStage.from_config(load_config(overrides={"diarize": {"backend": "pyannote",
                                                                      "pipeline": str(tmp_path / "x")}}))
    with pytest.raises(ModelMissing):
        bad.check()
    d, _ = local_pipeline
    st = DiarizeStage.from_config(load_config(overrides={"diarize": {"backend": "pyannote", "pipeline": str(d)}}))
    st.check()
    st.ensure_setup()
    assert isinstance(st.diarizer, Diarizer)  # loaded before any item


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_local_pipeline_on_cuda(local_pipeline):
    d, _ = local_pipeline
    cpu = Diarizer.load(_params(str(d), num_speakers=2))(str(sample_paths()["wav"]))
    gpu = Diarizer.load(_params(str(d), num_speakers=2), device="cuda")
    assert next(gpu.pipeline._embedding.model_.parameters()).is_cuda
    turns = gpu(str(sample_paths()["wav"]))
    _check_turns(turns)
    # same model, other kernels: boundaries may move by a frame, the speech covered must not
    cover = [sum(t["end_s"] - t["start_s"] for t in x) for x in (cpu, turns)]
    assert np.isclose(cover[0], cover[1], rtol=0.05)


def test_embedding_frame_cap_reads_the_middle_frames():
    """diarize.embed_max_s: an embedding reads only the middle `max_frames` of its active frames,
    exactly what the LSTM gives on those frames alone; items under the cap are unchanged."""
    torch.manual_seed(0)
    emb = ResemblyzerEmbedding().eval()
    x = 0.1 * torch.randn(2, 1, 5 * 16000)
    t = torch.arange(16000 * 3 // 2) / 16000
    x[0, 0, -len(t):] = 0.8 * torch.sin(2 * torch.pi * 1000 * t)  # the last 1.5 s, outside the middle 2 s
    w = torch.ones(2, 293)
    w[1, 100:] = 0  # the second item speaks 1.7 s only, under the cap
    with torch.no_grad():
        full = emb(x, w)
        emb.max_frames = 200
        capped = emb(x, w)
        mel = emb.mel(x[:1, 0]).transpose(1, 2)
        a = (mel.shape[1] - 200) // 2
        _, (h, _) = emb.lstm(mel[:, a:a + 200])
        ref = emb.relu(emb.linear(h[-1]))
    ref = ref / ref.norm(dim=1, keepdim=True)
    assert torch.allclose(capped[0], ref[0], atol=1e-5)
    assert not torch.allclose(capped[0], full[0], atol=1e-3)
    assert torch.allclose(capped[1], full[1], atol=1e-6)


def test_embedding_level_normalisation_makes_it_gain_invariant():
    """diarize.embed_level_dbfs: the kept frames are brought to one level, so a gain on the audio
    leaves the embedding unchanged; without it the embedding moves with the gain."""
    torch.manual_seed(0)
    emb = ResemblyzerEmbedding().eval()
    x = 0.05 * torch.randn(1, 1, 3 * 16000)
    w = torch.ones(1, 293)
    w[0, 150:] = 0
    with torch.no_grad():
        raw = [emb(g * x, w) for g in (1.0, 4.0)]
        emb.level_dbfs = -30.0
        level = [emb(g * x, w) for g in (1.0, 4.0)]
    assert not torch.allclose(raw[0], raw[1], atol=1e-3)
    assert torch.allclose(level[0], level[1], atol=1e-5)
