"""`tandem models`: every model each backend uses, where it comes from, whether it is here;
`tandem models fetch`: prepare the production models in one cache directory the nodes share."""

from __future__ import annotations

import os
import sys

COMMAND = "models"
HELP = "list the models of every backend and whether they are present; `fetch` prepares the production ones"


def add_arguments(p) -> None:
    p.add_argument("action", nargs="?", choices=("status", "fetch"), default="status",
                   help="status (default): table of models; fetch: download the production models into the cache")
    p.add_argument("--config", help="job config YAML (models.cache_dir, asr.*, diarize.pipeline)")
    p.add_argument("--check", action="store_true", help="status: exit 1 if an embedded default is missing")
    p.add_argument("--cache", help="cache directory to prepare or inspect (default: models.cache_dir)")
    p.add_argument("--languages", nargs="+", metavar="LANG",
                   help="fetch: aligner languages (default: asr.language, else asr.align_languages)")
    p.add_argument("--asr-model", help="fetch: Whisper size or hub id (default: asr.model, else large-v3)")
    p.add_argument("--no-diarization", action="store_true", help="fetch: skip the pyannote pipeline")


def _config(args):
    """The job config's model cache, ASR settings and `diarize` section."""
    from pipelines.core.config import load_config, section
    from pipelines.models.asr_base import AsrParams
    from pipelines.models.cache import ModelsParams
    over = {"models": {"cache_dir": os.path.abspath(args.cache)}} if args.cache else None
    cfg = load_config(args.config, over)
    return ModelsParams.from_config(cfg), AsrParams.from_config(cfg), section(cfg, "diarize")


def fetch(args) -> int:
    from pipelines.models import fetch as f
    from pipelines.models.cache import cache_dir
    models, a, d = _config(args)
    langs = args.languages or ([a.language] if a.language else list(a.align_languages))
    token = os.environ.get(d["hf_token_env"] or "HF_TOKEN")
    print(f"preparing {cache_dir(models)}")
    rows = f.fetch(models, asr_model=args.asr_model or a.model or "large-v3", languages=langs,
                   diarize_pipeline=None if args.no_diarization else d["pipeline"], token=token)
    failed = [r for r in rows if r[1] != "ok"]
    if failed:
        offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
        print(f"\n{len(failed)} of {len(rows)} models could not be prepared:", file=sys.stderr)
        for what, _, detail in failed:
            print(f"  {what}: {detail}", file=sys.stderr)
        print("Run this on a machine that reaches huggingface.co and download.pytorch.org"
              + (" (HF_HUB_OFFLINE is set here)" if offline else "")
              + ", with HF_TOKEN set for gated models, then share the cache directory with the nodes "
              "(models.cache_dir or TANDEM_MODEL_DIR); or set asr.model, asr.align_model and "
              "diarize.pipeline to local paths.", file=sys.stderr)
        return 1
    print(f"all {len(rows)} models ready in {cache_dir(models)}")
    return 0


def run(args) -> int:
    if args.action == "fetch":
        return fetch(args)
    from rich.console import Console
    from rich.table import Table

    from pipelines.models.registry import status
    models, a, d = _config(args)
    rows = status(models, a, d["pipeline"])
    t = Table(title="tandem models")
    for c in ("backend", "role", "model", "origin", "present", "path / how to get it"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["backend"], r["role"], r["model"], r["origin"],
                  "[green]yes[/]" if r["present"] else "[red]no[/]", r["path"] or r["note"])
    Console(width=200).print(t)
    missing = [r for r in rows if r["backend"] in ("embedded",) and not r["present"]]
    return 1 if (args.check and missing) else 0
