"""The stage contract: transient failures are retried and never become rejections; bad input is a
rejection naming the stage; an item that keeps killing its worker is quarantined; a missing model
fails the job before any item runs."""

import pytest
from pipelines.core.stage import InputError, ModelMissing, Stage, TransientError, is_transient
from pipelines.store.commit import manifests
from ray_jobs.runner import run_job

from tandem.testing.toy import expected_example_ids, make_items, toy_config, toy_stages


class Flaky(Stage):
    name = "flaky"
    uses_model = True

    def __init__(self, errors: list[BaseException]):
        super().__init__()
        self.errors = list(errors)
        self.calls = 0

    def process(self, item):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        item["done"] = True
        return item


def _item(tmp_path, key="k1"):
    return {"uri": f"test://{key}", "work_key": key, "out_dir": str(tmp_path), "status": "ok", "rejections": []}


def test_transient_failure_is_retried_in_place(tmp_path):
    st = Flaky([MemoryError("host"), RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")])
    it = st(_item(tmp_path))
    assert it["status"] == "ok" and it["done"] and st.calls == 3
    assert st.counters.extra["transient_retries"] == 2
    assert not (tmp_path / "_attempts").exists() or not any((tmp_path / "_attempts").iterdir())


def test_persistent_transient_failure_is_left_for_a_rerun_not_rejected(tmp_path):
    st = Flaky([ModelMissing("aligner for 'fr' not found; run `tandem models fetch`")] * 5)
    it = st(_item(tmp_path))
    assert it["status"] == "retry" and not it["rejections"]
    assert it["retry"]["stage"] == "flaky" and "tandem models fetch" in it["retry"]["detail"]
    # later stages pass it through untouched
    assert Flaky([])(it)["status"] == "retry"


def test_bad_input_is_a_rejection_naming_the_stage(tmp_path):
    it = Flaky([InputError("cannot parse header", reason="decode_error")])(_item(tmp_path))
    assert it["status"] == "rejected"
    (r,) = it["rejections"]
    assert r["stage"] == "flaky" and r["reason"] == "decode_error" and "cannot parse header" in r["detail"]


def test_a_bug_in_a_stage_is_left_for_a_rerun_not_rejected(tmp_path):
    st = Flaky([ValueError("cannot parse header")])
    it = st(_item(tmp_path))
    assert it["status"] == "retry" and not it["rejections"] and st.calls == 1  # not retried in place
    assert it["retry"]["kind"] == "error" and "cannot parse header" in it["retry"]["detail"]
    assert "ValueError" in it["retry"]["trace"]


def test_classification():
    assert is_transient(TransientError()) and is_transient(OSError(28, "No space left on device"))
    assert not is_transient(OSError(2, "No such file")) and not is_transient(KeyError("x"))


def test_item_that_keeps_killing_its_worker_is_quarantined(tmp_path):
    import json
    import os
    import socket
    st = Flaky([])
    st.attempt_run = "run-1"
    marker = st._attempt_file(_item(tmp_path))
    marker.parent.mkdir(parents=True)
    # an attempt of this run that never returned (its worker died), after two earlier deaths
    dead = {"pid": 4242, "host": socket.gethostname(), "node": None}

    def left_behind(deaths):
        marker.write_text(json.dumps({"run": "run-1", **dead, "deaths": [dead] * deaths}))
    left_behind(1)  # two deaths counted: a third attempt still runs
    assert st(_item(tmp_path))["status"] == "ok" and not marker.exists()
    left_behind(2)
    it = st(_item(tmp_path))
    assert it["status"] == "rejected" and it["rejections"][0]["reason"] == "quarantined"
    assert "died 3 times" in it["rejections"][0]["detail"] and "pid 4242" in it["rejections"][0]["detail"]
    assert not marker.exists()
    # a running attempt leaves a marker naming its own run and process
    seen = []
    st2 = Flaky([])
    st2.attempt_run = "run-1"
    st2.process = lambda item: seen.append(json.loads(marker.read_text())) or item
    st2(_item(tmp_path))
    assert seen[0]["run"] == "run-1" and seen[0]["pid"] == os.getpid() and seen[0]["deaths"] == []


class NeedsModel(Stage):
    name = "needs_model"

    def check(self):
        raise ModelMissing("needs_model: no weights in /nowhere; run `tandem models fetch`")

    def process(self, item):
        raise AssertionError("no item may run when a model is missing")


def test_missing_model_fails_the_job_at_start(tmp_path):
    cfg = toy_config(local=True)
    with pytest.raises(ModelMissing, match="tandem models fetch"):
        run_job("toy", make_items(3, cfg), [*toy_stages(cfg), NeedsModel()], cfg, tmp_path / "out")
    assert not manifests(tmp_path / "out")


class OomOnce(Stage):
    """Fails with a CUDA-style OOM on the items named in `bad` (every attempt)."""

    name = "oom"

    def __init__(self, bad):
        super().__init__()
        self.bad = set(bad)

    def process(self, item):
        if item["toy_key"] in self.bad:
            raise RuntimeError("CUDA out of memory")
        return item


def test_transient_items_stay_uncommitted_and_a_rerun_lands_them(tmp_path):
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    res = run_job("toy", make_items(4, cfg), [OomOnce({"toy-1"}), *toy_stages(cfg)], cfg, out)
    assert [r["uri"] for r in res["retry"]] == ["toy://toy-1"]
    assert res["rejections"] == 0
    res2 = run_job("toy", make_items(4, cfg), [OomOnce(set()), *toy_stages(cfg)], cfg, out)
    assert res2["skipped"] == 3 and not res2["retry"]
    from catalogs import catalog
    _, rows = catalog.query(out, "SELECT example_id FROM examples WHERE status = 'accepted'")
    assert {r[0] for r in rows} == expected_example_ids(4, cfg)
