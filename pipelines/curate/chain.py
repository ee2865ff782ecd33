"""The curation job's inputs, work items and stage chain (what `tandem curate` runs)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from pipelines.core.config import setting
from pipelines.core.contracts import stable_hash, work_key
from pipelines.core.stage import Stage
from pipelines.io.inputs import given_of, list_inputs  # noqa: F401 - list_inputs' old home; callers import it here


def make_items(inputs: Iterable[str], cfg: dict, cfg_hash: str, out_dir: str) -> Iterator[dict]:
    """One work item per input; the work key uses size and mtime so it costs no decoding, and the
    absolute path, so the same job run from another directory resumes."""
    base_seed = int(setting(cfg, "seed"))
    for named in inputs:
        uri = os.path.abspath(named) if "://" not in named else str(named)
        try:
            st = os.stat(uri)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # ingest rejects it with the reason
        seed = int(stable_hash("seed", base_seed, uri), 16) % (2 ** 63)
        yield {
            "uri": uri, "uri_given": given_of(named), "kind": "real",
            "work_key": work_key(f"{uri}|{size}|{mtime}", cfg_hash),
            "seed": seed, "status": "ok", "rejections": [], "out_dir": str(out_dir), "cfg_hash": cfg_hash,
        }


def curation_stages(cfg: dict) -> list[Stage]:
    """ingest -> vad -> diarize -> transcribe -> assemble."""
    from pipelines.curate.assemble import AssembleStage
    from pipelines.curate.diarize import DiarizeStage
    from pipelines.curate.ingest import IngestStage
    from pipelines.curate.transcribe import TranscribeStage
    from pipelines.curate.vad import VadStage
    return [s.from_config(cfg) for s in (IngestStage, VadStage, DiarizeStage, TranscribeStage, AssembleStage)]
