"""VAD and the embedded diarization default against real references: pyannote's sample call and a
real two-speaker recording built by tools/build_eval_set.py (Debian packages, fetched once)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipelines.core.config import load_config, section, typed_section
from pipelines.core.stage import Resources
from pipelines.curate.diarize import DiarizeStage
from pipelines.models.diarization import DiarizeParams, Diarizer
from pipelines.models.vad import SileroVad

from tandem.testing.audio import read_rttm, sample_paths

ROOT = Path(__file__).resolve().parents[1]
# it-01: Carlo and Menardi, two real Italian men at 8 kHz (tools/build_eval_set.py, seed 0)
REAL_FILE = ("it", "it-01")


def _der(ref, hyp, collar):
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    a, b = Annotation(), Annotation()
    for t in ref:
        a[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in hyp:
        b[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    return DiarizationErrorRate(collar=collar)(a, b)


@pytest.fixture(scope="session")
def vad():
    import torch
    torch.set_num_threads(2)
    return SileroVad.from_config(section(load_config(), "vad"), threads=2)


@pytest.fixture(scope="session")
def diar():
    import torch
    # one thread: the LSTM encoder's many small steps stall when two threads share busy cores
    torch.set_num_threads(1)
    return Diarizer.load(typed_section(DiarizeParams, {}, "diarize", cache_dir=None))


@pytest.fixture(scope="session")
def real_file(tmp_path_factory):
    """(wav, reference turns) of REAL_FILE: from eval_data/ when built there, else built here."""
    lang, fid = REAL_FILE

    def files(d: Path) -> dict:
        m = d / "manifest.json"
        return {f["id"]: f for f in json.loads(m.read_text())["files"]} if m.exists() else {}

    d = Path(os.environ.get("TANDEM_EVAL_DATA", ROOT / "eval_data"))
    if fid not in files(d):
        d = tmp_path_factory.mktemp("eval")
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_eval_set.py"), "--out", str(d),
                        "--languages", lang, "--no-sample"], check=True, timeout=900)
    f = files(d)[fid]
    return str(d / f["wav"]), read_rttm(d / f["rttm"])


def test_vad_finds_speech_of_sample(vad):
    ref = read_rttm(sample_paths()["rttm"])
    sp = vad.file_regions(str(sample_paths()["wav"]))
    assert sp and sp[0][0] > 6.0  # the sample is silent before 6.69 s
    # every reference turn is mostly inside VAD speech
    for t in ref:
        cover = sum(max(0.0, min(e, t["end_s"]) - max(s, t["start_s"])) for s, e in sp)
        assert cover >= 0.7 * (t["end_s"] - t["start_s"]), t


def test_embedded_on_pyannote_sample(diar):
    hyp = diar(str(sample_paths()["wav"]))
    ref = read_rttm(sample_paths()["rttm"])
    assert len({t["speaker"] for t in hyp}) == 2
    # measured 0.030 (collar 0.25; 0.078 at collar 0). On the 10 two-speaker files of the
    # evaluation set (4 languages, 8 and 16 kHz) DER at collar 0.25 spread from 0.018 to 0.165,
    # while two voices merged into one cost 0.4 or more: 0.20 holds the spread and fails a merge.
    assert _der(ref, hyp, 0.25) < 0.20


def test_embedded_on_real_two_speaker_file(diar, real_file):
    wav, ref = real_file
    hyp = diar(wav)
    assert len({t["speaker"] for t in hyp}) == 2
    # same bound and reasoning as for the sample (this file measured 0.018 at collar 0.25)
    assert _der(ref, hyp, 0.25) < 0.20


def test_stage_two_channel_and_mono(tmp_path):
    st = DiarizeStage.from_config(load_config())
    st.resources = Resources(threads=1)  # two threads on busy shared cores stall the LSTM encoder
    st.check()
    p = str(sample_paths()["wav"])
    base = {"uri": p, "work_path": p, "source_id": "abc", "out_dir": str(tmp_path), "seed": 0,
            "status": "ok", "duration_s": 30.0}
    two = st({**base, "speech": [[1.0, 2.0], [3.0, 4.0]], "two_channel": True,
              "speech_ch": [[[1.0, 2.0]], [[3.0, 4.0]]]})
    assert [t["speaker"] for t in two["turns"]] == ["CH0", "CH1"]
    item = st({**base, "speech": [[6.0, 30.0]]})
    assert item["status"] == "ok"
    assert {t["speaker"] for t in item["turns"]} == {"SPEAKER_00", "SPEAKER_01"}
    # the worker writes nothing public: the part writer commits rttm/<source_id>.rttm (test_curation)
    assert not (tmp_path / "rttm").exists()


def test_unreadable_file_is_named(diar, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="broken.wav"):
        diar(str(bad))


class _BandEncoder:
    """Stand-in speaker encoder: the window's energy below and above 500 Hz (two 'voices')."""

    def __init__(self):
        import torch
        self.w = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.w])

    def __call__(self, waveforms, weights):
        import torch
        spec = torch.fft.rfft(waveforms[:, 0]).abs()
        f = torch.fft.rfftfreq(waveforms.shape[-1], 1 / 16000)
        e = torch.stack([spec[:, f < 500].sum(1), spec[:, f >= 500].sum(1)], 1)
        return e / e.norm(dim=1, keepdim=True)


def test_reassign_moves_a_misplaced_turn_boundary():
    """Voice A (200 Hz) speaks 0-5 s, voice B (1000 Hz) 5-10 s; the first pass put the change at
    6.5 s. The window pass moves it to within one hop of 5 s; without the pass it stays."""
    import numpy as np
    t = np.arange(10 * 16000) / 16000
    wav = np.where(t < 5, np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    p = typed_section(DiarizeParams, {}, "diarize", cache_dir=None)
    d = Diarizer.__new__(Diarizer)
    d.p = p
    d.pipeline = type("P", (), {"encoder": _BandEncoder()})()
    turns = [(0.0, 6.5, "A"), (6.5, 10.0, "B")]
    out = d.reassign(turns, wav)
    a_end = max(e for s, e, k in out if k == "A")
    b_start = min(s for s, e, k in out if k == "B")
    assert abs(a_end - 5.0) <= p.reassign_hop_s and abs(b_start - 5.0) <= p.reassign_hop_s, out
    assert all(e > s for s, e, _ in out)
    d.p = typed_section(DiarizeParams, {"diarize": {"reassign_window_s": 0.0}}, "diarize", cache_dir=None)
    assert d.reassign(turns, wav) == turns
