"""The curation chain in-process for tests: the local engine (ray_jobs.execute.LocalExecutor) and the
job's writer, so a test sees each item and the committed output (shards, sources, rttm/) as
`tandem curate` with resources.local writes them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pipelines.curate.chain import curation_stages, make_items
from pipelines.store.writer import JobWriter
from ray_jobs.execute import LocalExecutor
from ray_jobs.runner import new_run_id


def curate_local(inputs: Iterable[str], cfg: dict, cfg_hash: str, out_dir: str | Path) -> Iterator[dict]:
    """Items as the writer takes them; the last part is committed when the iteration ends."""
    writer = JobWriter.from_config(out_dir, cfg, run_id=new_run_id(), job="curate", config_hash=cfg_hash)
    try:
        stages = curation_stages(cfg)
        yield from LocalExecutor().run(make_items(inputs, cfg, cfg_hash, str(out_dir)), stages, writer)
        writer.commit()
    finally:
        writer.release()
