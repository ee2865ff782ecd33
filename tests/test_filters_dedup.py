"""Dedup: the same audio under another name, near-duplicate transcripts, persisted state."""

import numpy as np
from filters.dedup import DedupParams, NearDupIndex
from pipelines.core.config import load_config

from tandem.testing import filters as T

TEXT = "we should meet on tuesday to go over the budget for next year and the hiring plan"


def test_duplicate_audio_under_another_name_caught(tmp_path):
    cfg = load_config()
    a = T.white_noise(1.0, seed=5, level=0.05)
    idx = NearDupIndex(tmp_path, DedupParams.from_config(cfg))
    first = T.example(a, kind="real", language="en", example_id="a1", source_id="s1")
    copy = T.example(a.copy(), kind="real", language="en", example_id="b2", source_id="s2")
    other = T.example(T.white_noise(1.0, seed=6, level=0.05), kind="real", language="en", example_id="c3")
    assert idx.check_and_add(first).keep
    d = idx.check_and_add(copy)
    assert not d.keep and d.reason == "duplicate_audio" and "a1" in d.detail
    assert idx.check_and_add(other).keep
    idx.save()
    again = NearDupIndex(tmp_path, DedupParams.from_config(cfg))  # a resumed job keeps the index
    assert not again.check_and_add(T.example(a, kind="real", language="en", example_id="d4")).keep


def test_near_duplicate_text(tmp_path):
    cfg = load_config()
    idx = NearDupIndex(tmp_path, DedupParams.from_config(cfg))
    z = np.zeros(2400, np.float32)

    def ex(eid, text, seed):
        return T.example(z + seed * 1e-3, kind="real", language="en", example_id=eid, text=(text, ""))
    assert idx.check_and_add(ex("t1", TEXT, 1)).keep
    d = idx.check_and_add(ex("t2", TEXT.replace("tuesday", "Tuesday!"), 2))
    assert not d.keep and d.reason == "near_duplicate_text"
    assert idx.check_and_add(ex("t3", "a completely different sentence about the weather in the mountains", 3)).keep
    assert idx.check_and_add(ex("t4", "yes okay", 4)).keep  # too short to compare
    assert idx.check_and_add(ex("t5", "yes okay", 5)).keep
