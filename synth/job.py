"""The synthesis job's pieces: work items from scripts, the stages that make examples, a summary.

`make_items` yields one work item per dialogue; `synthesis_stages(cfg)` returns
[SynthesizeStage, RoundTripStage] (the latter when synth.roundtrip.enabled), in
synth/stages.py and synth/roundtrip.py; `summarize` and `format_summary` (synth/summary.py) report the turn-taking
measured on the rendered audio (and planned, on the words) against Fisher's.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.core.contracts import rejection_row, source_row, stable_hash, work_key
from pipelines.core.stage import Stage
from pipelines.core.text import cer
from pipelines.core.text import norm_text as normalize_text
from synth.params import SynthSection
from synth.roundtrip import ROUNDTRIP_NAME, RoundTripStage
from synth.scripts import ScriptError, builtin_scripts, iter_jsonl, script_hash
from synth.stages import STAGE_NAME, SynthesizeStage
from synth.summary import format_summary, summarize


def dialogue_seed(job_seed: int, *key) -> int:
    """Per-dialogue seed derived from the job seed and the dialogue's identity (fits int64)."""
    return int(stable_hash("synth-seed", int(job_seed), *key, n=15), 16)


def _item(script: dict, uri: str, seed: int, cfg_hash: str) -> dict:
    sh = script_hash(script)
    return {"uri": uri, "kind": "synthetic", "work_key": work_key(stable_hash(sh, seed), cfg_hash),
            "seed": seed, "status": "ok", "rejections": [], "cfg_hash": cfg_hash, "script": script,
            # a synthetic source is one rendition: the script under one seed (the same script
            # rendered with another seed is different audio, not a duplicate)
            "source_id": stable_hash("rendition", sh, seed, n=32), "script_hash": sh,
            "language": script["language"]}


def _bad_item(uri: str, detail: str, key: str, seed: int, cfg_hash: str) -> dict:
    sid = stable_hash("bad-script", key)
    rej = rejection_row(uri=uri, stage="synth", filter="script", reason="bad_script", detail=detail,
                        source_id=sid, kind="synthetic", config_hash=cfg_hash)
    return {"uri": uri, "kind": "synthetic", "work_key": work_key(stable_hash(key, seed), cfg_hash), "seed": seed,
            "status": "rejected", "rejections": [rej], "cfg_hash": cfg_hash, "source_id": sid,
            "source": source_row(source_id=sid, uri=uri, kind="synthetic", format="jsonl", status="rejected",
                                 num_examples=0, config_hash=cfg_hash)}


def make_items(scripts: str | None, count: int, seed: int, languages: list[str], cfg: dict, cfg_hash: str,
               out_dir: str) -> Iterator[dict]:
    """One work item per dialogue (streamed).

    `scripts`: None (or "builtin") for `count` built-in dialogues; "llm" for `count` dialogues
    from the chat endpoint in synth.llm (planned here, requested by the synthesis workers, cached
    under OUT/_llm_cache); else a JSONL file (all its lines when count <= 0, else the first
    `count`). A malformed line is a rejected item naming the file and line.
    """
    sp = SynthSection.from_config(cfg)
    if scripts is None or scripts == "builtin":
        for s in builtin_scripts(count, seed, languages, sp.builtin):
            yield _item(s, f"builtin:{s['dialogue_id']}", dialogue_seed(seed, s["dialogue_id"]), cfg_hash)
        return
    if scripts == "llm" or scripts.startswith("llm:"):
        # only planned here: the synthesis workers ask the server (and cache the replies)
        from pathlib import Path

        from synth.llm import llm_requests, request_key
        llm = sp.llm
        for req in llm_requests(count, seed, languages, llm):
            key = request_key(req, llm)
            dseed = dialogue_seed(seed, key)
            yield {"uri": f"llm:{llm.url}#{req['index']}", "kind": "synthetic",
                   "work_key": work_key(stable_hash(key, dseed), cfg_hash), "seed": dseed, "status": "ok",
                   "rejections": [], "cfg_hash": cfg_hash, "llm_request": req,
                   "llm_cache": str(Path(out_dir) / "_llm_cache"),
                   "source_id": stable_hash("rendition", key, dseed, n=32), "language": req["language"]}
        return
    import os
    where = os.path.abspath(scripts)  # uris absolute, wherever the job ran; uri_given as typed
    for n, (line, s, err) in enumerate(iter_jsonl(scripts, languages)):
        if count > 0 and n >= count:
            return
        if err is not None:
            uri = f"{where}#line{line}"
            it = _bad_item(uri, err, f"{where}:{line}:{err}", dialogue_seed(seed, uri), cfg_hash)
            yield {**it, "uri_given": f"{scripts}#line{line}"}
        else:
            it = _item(s, f"{where}#{s['dialogue_id']}", dialogue_seed(seed, s["dialogue_id"], script_hash(s)),
                       cfg_hash)
            yield {**it, "uri_given": f"{scripts}#{s['dialogue_id']}"}


def synthesis_stages(cfg: dict) -> list[Stage]:
    """The synthesis chain: [SynthesizeStage, RoundTripStage (if synth.roundtrip.enabled)]."""
    stages: list[Stage] = [SynthesizeStage.from_config(cfg)]
    if SynthSection.from_config(cfg).roundtrip.enabled:
        stages.append(RoundTripStage.from_config(cfg))
    return stages


__all__ = [
    "ROUNDTRIP_NAME",
    "STAGE_NAME",
    "RoundTripStage",
    "ScriptError",
    "SynthesizeStage",
    "cer",
    "dialogue_seed",
    "format_summary",
    "make_items",
    "normalize_text",
    "summarize",
    "synthesis_stages",
]
