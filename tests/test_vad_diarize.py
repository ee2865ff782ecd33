"""VAD and diarization against real references (pyannote's sample) and espeak conversations."""

import numpy as np
import pytest
import soundfile as sf
from tandem.pipelines.core.config import load_config
from tandem.pipelines.curate.diarize import DiarizeStage
from tandem.pipelines.curate.vad import _vad_cfg
from tandem.pipelines.models.diarization import _diar_cfg, choose_clusters, load_diarizer
from tandem.pipelines.models.vad import SileroVad

from tandem.testing.audio import EN_TURNS_2, EN_TURNS_3, make_conversation, read_rttm, sample_paths


def _der(ref, hyp):
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    a, b = Annotation(), Annotation()
    for t in ref:
        a[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in hyp:
        b[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    return DiarizationErrorRate(collar=0.0)(a, b)


@pytest.fixture(scope="session")
def models():
    import torch
    torch.set_num_threads(2)
    cfg = load_config()
    return SileroVad.from_config(_vad_cfg(cfg), threads=2), load_diarizer(cfg)


@pytest.fixture(scope="session")
def convs(tmp_path_factory):
    d = tmp_path_factory.mktemp("convs")
    out = {}
    for name, turns, seed in [("c1", [("A", t) for _, t in EN_TURNS_2], 3), ("c2", EN_TURNS_2, 1),
                              ("c3", EN_TURNS_3, 2)]:
        audio, ref, _ = make_conversation(turns, "en", 16000, seed=seed)
        p = d / f"{name}.wav"
        sf.write(str(p), audio, 16000)
        out[name] = (str(p), ref)
    return out


def test_vad_finds_speech_of_sample(models):
    vad, _ = models
    ref = read_rttm(sample_paths()["rttm"])
    sp = vad.file_regions(str(sample_paths()["wav"]))
    assert sp and sp[0][0] > 6.0  # the sample is silent before 6.69 s
    # every reference turn is mostly inside VAD speech
    for t in ref:
        cover = sum(max(0.0, min(e, t["end_s"]) - max(s, t["start_s"])) for s, e in sp)
        assert cover >= 0.7 * (t["end_s"] - t["start_s"]), t


def test_der_on_pyannote_sample(models):
    vad, diar = models
    p = str(sample_paths()["wav"])
    hyp = diar(p, vad.file_regions(p))
    der = _der(read_rttm(sample_paths()["rttm"]), hyp)
    # measured 0.106 (collar 0, 2 speakers found); pyannote's own pipeline on the same pieces
    # reached 0.04, a collapse to 1 speaker gives 0.50 and a spurious 3rd speaker 0.20: 0.15 catches both
    assert len({t["speaker"] for t in hyp}) == 2
    assert der < 0.15, der


@pytest.mark.parametrize("name,n", [("c1", 1), ("c2", 2), ("c3", 3)])
def test_speaker_count_and_der_on_espeak(models, convs, name, n):
    vad, diar = models
    p, ref = convs[name]
    hyp = diar(p, vad.file_regions(p))
    assert len({t["speaker"] for t in hyp}) == n
    # measured 0.03-0.045 (turn edges of synthetic speech); 0.10 leaves room for CPU-dependent numerics
    assert _der(ref, hyp) < 0.10


def test_choose_clusters_separates_and_merges():
    rng = np.random.default_rng(0)
    cfg = _diar_cfg({})
    centers = rng.standard_normal((3, 256))
    X = np.concatenate([c + 0.3 * rng.standard_normal((20, 256)) for c in centers])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    lab = choose_clusters(X, cfg)
    assert len(set(lab)) == 3 and all(len(set(lab[i * 20:(i + 1) * 20])) == 1 for i in range(3))
    one = centers[0] + 0.3 * rng.standard_normal((30, 256))
    one /= np.linalg.norm(one, axis=1, keepdims=True)
    assert len(set(choose_clusters(one, cfg))) == 1
    assert len(set(choose_clusters(X, {**cfg, "num_speakers": 2}))) == 2


def test_stage_writes_rttm(convs, tmp_path):
    p, _ref = convs["c2"]
    cfg = load_config()
    st = DiarizeStage(cfg)
    item = {"uri": p, "work_path": p, "speech": [[0.0, 30.0]], "source_id": "abc", "out_dir": str(tmp_path),
            "seed": 0, "status": "ok", "duration_s": 20.0}
    item = st(item)
    assert item["status"] == "ok"
    assert read_rttm(tmp_path / "rttm" / "abc.rttm") == [
        {"start_s": round(t["start_s"], 3), "end_s": round(t["start_s"], 3) + round(t["end_s"] - t["start_s"], 3),
         "speaker": t["speaker"]} for t in item["turns"]]


def test_pyannote_backend_offline_fails_clearly():
    from tandem.pipelines.models.registry import ModelMissing
    with pytest.raises(ModelMissing, match="HF_TOKEN|embedded"):
        load_diarizer(load_config(overrides={"diarize": {"backend": "pyannote"}}))
