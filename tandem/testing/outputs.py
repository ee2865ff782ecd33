"""Small real output directories for tests of what readers see (globs, catalog, docs recipes).

`dialogue_output` runs the real filter stage (quality with DNSMOS, language, trust, dedup) over
espeak dialogues through the job writer, then builds the catalog: accepted examples in three
languages, a noisy one a stricter SNR rejects, a renamed copy (duplicate_audio), Dutch speech
(language_other) and noise. `settled_output` commits copies of one recording, the non-canonical
one first, so settling moves examples between shards/ and rejected/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.core.config import load_config
from pipelines.core.contracts import stable_hash

# DNSMOS on (its keys are what researchers query); no round trip (needs Whisper per example)
DIALOGUE_CONFIG = {"filters": {"enabled": ["quality", "language", "trust"],
                               "trust": {"compute_roundtrip": False}}}
NOISY_SNR_DB = 12.0  # the noisy example's added noise; a stricter min_snr_db rejects it


def dialogue_output(out: str | Path, *, run_id: str = "run1") -> dict:
    """Write the output (see module doc); returns {"config": cfg, "ids": {name: example_id}}."""
    from catalogs.catalog import build
    from filters.stage import FilterStage
    from pipelines.store.writer import JobWriter
    from pipelines.core.turntaking import measure

    from tandem.testing import filters as T

    cfg = load_config(overrides=DIALOGUE_CONFIG)
    exs = []
    for lang in ("en", "fr", "de"):
        audio, words, texts = T.dialogue(lang)
        exs.append((f"{lang}-clean", lang, audio, words, texts))
    audio, words, texts = T.dialogue("es")
    noisy = np.stack([T.add_noise(audio[0], NOISY_SNR_DB, seed=1), T.add_noise(audio[1], NOISY_SNR_DB, seed=2)])
    exs.append(("es-noisy", "es", noisy, words, texts))
    audio, words, texts = T.dialogue("nl")
    exs.append(("nl-as-en", "en", audio, words, texts))  # Dutch speech declared English
    en = exs[0]
    exs.append(("en-copy", "en", en[2], en[3], en[4]))  # the same audio under another name
    ids = {}
    w = JobWriter.from_config(out, cfg, run_id=run_id, job="synth", config_hash="docs", dedup=True)
    st = FilterStage.from_config(cfg)
    for i, (name, lang, a, ws, tx) in enumerate(exs):
        eid = stable_hash("docs-example", name)
        ids[name] = eid
        params = json.dumps({"turn_taking": measure(ws)})
        ex = T.example(a, kind="synthetic", language=lang, words=ws, text=tuple(tx), example_id=eid,
                       roundtrip_cer=0.03, params=params, source_id=stable_hash("docs-source", name))
        w.add(st(T.item([ex], uri=f"scripts.jsonl:{i + 1}", kind="synthetic")))
    noise = T.example(T.white_noise(3, seed=3), kind="synthetic", language="en", words=en[3][:2],
                      text=("good morning", ""), example_id=stable_hash("docs-example", "noise"), roundtrip_cer=0.9)
    ids["noise"] = noise["example_id"]
    w.add(st(T.item([noise], uri=f"scripts.jsonl:{len(exs) + 1}", kind="synthetic")))
    w.close()
    _run_record(out, run_id, cfg)
    build(out)
    return {"config": cfg, "ids": ids}


def _run_record(out, run_id: str, cfg: dict) -> None:
    """The run's record, so `tandem filter` starts from this config as after a real job."""
    from pipelines.core.config import config_hash, config_json
    from pipelines.store.writer import write_run_record
    write_run_record(out, {"run_id": run_id, "job": "synth", "started_at": "2026-01-01T00:00:00Z",
                           "finished_at": "2026-01-01T00:01:00Z", "status": "finished",
                           "config_hash": config_hash(cfg), "config": config_json(cfg), "stages": "[]",
                           "argv": "[]", "versions": "{}", "pipeline_version": "test"})


def settled_output(out: str | Path) -> dict:
    """Three copies of one recording and a loner, the non-canonical copies committed first (one
    part each) and settled by the writer; returns {"keep": example ids that must be accepted}."""
    from catalogs.catalog import build
    from pipelines.store.writer import JobWriter

    from tandem.testing.fixtures import tone_item
    items = [tone_item(1)]
    for n in (1, 2):
        it = tone_item(1)
        sid = stable_hash("copy-source", n)
        it["examples"][0].update(example_id=stable_hash("copy", n), source_ids=[sid])
        it.update(work_key=stable_hash("copy-work", n), uri=f"copy_{n}.wav", source_id=sid)
        it["source"].update(source_id=sid, uri=it["uri"])
        items.append(it)
    items.sort(key=lambda it: it["examples"][0]["example_id"], reverse=True)
    items.append(tone_item(7))
    cfg = load_config(overrides={"shards": {"max_items_per_commit": 1}})
    w = JobWriter.from_config(out, cfg, run_id="r1", job="t", config_hash="h", dedup=True)
    for it in items:
        w.add(it)
    totals = w.close()
    build(out)
    keep = {min(it["examples"][0]["example_id"] for it in items[:3]), items[3]["examples"][0]["example_id"]}
    return {"keep": keep, "settled": totals["settled"]}
