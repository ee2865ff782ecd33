"""The runner on toy stages: local and Ray modes agree, resume skips committed work, the per-stage
table and the run record reach the catalog, and requests that cannot fit fail before starting."""

from __future__ import annotations

import json

import pytest
from catalogs.catalog import query
from pipelines.core.stage import Resources, Stage
from ray_jobs.execute import ResourceFitError, check_fit
from ray_jobs.progress import StageTable
from ray_jobs.runner import run_job

from tandem.testing.toy import expected_example_ids, make_items, toy_config, toy_stages


def _ids(out, status="accepted"):
    _, rows = query(out, "SELECT example_id FROM examples WHERE status = ?", [status])
    return sorted(r[0] for r in rows)


def test_local_and_ray_give_the_same_examples(ray_session, tmp_path):
    n, every = 7, 3
    results = {}
    for mode in ("local", "ray"):
        cfg = toy_config(local=mode == "local")
        out = tmp_path / mode
        res = run_job("toy", make_items(n, cfg, reject_every=every), toy_stages(cfg), cfg, out,
                      argv=["test", mode])
        results[mode] = res
        assert res["items"] == n and res["skipped"] == 0
        assert res["examples"] == 5 and res["rejections"] == 2
        ids = _ids(out)
        assert ids == sorted(expected_example_ids(n, cfg, reject_every=every))
        # per-stage table: every stage saw every item; the assembler rejected every 3rd
        table = {r["stage"]: r for r in res["stages"]}
        assert list(table) == ["toy_tone", "toy_work", "toy_assemble"]
        assert table["toy_tone"]["items_in"] == n and table["toy_tone"]["items_out"] == n
        assert table["toy_assemble"]["rejected"] == 2 and table["toy_assemble"]["items_out"] == 5
        assert table["toy_work"]["audio_s"] == pytest.approx(n * 1.0)
        assert table["toy_work"]["rtf"] > 0
        # the run record is in the catalog, finished, with the same table
        _, runs = query(out, "SELECT run_id, job, status, stages, config_hash, argv FROM runs")
        assert len(runs) == 1
        run_id, job, status, stages, h, argv = runs[0]
        assert (run_id, job, status) == (res["run_id"], "toy", "finished")
        assert json.loads(stages) == res["stages"] and h == res["config_hash"]
        assert json.loads(argv) == ["test", mode]
        _, rej = query(out, "SELECT stage, reason, count(*) FROM rejections GROUP BY ALL")
        assert rej == [("toy_assemble", "toy_reject", 2)]
        _, src = query(out, "SELECT count(*), count(DISTINCT work_key) FROM sources")
        assert src == [(n, n)]
    assert _ids(tmp_path / "local") == _ids(tmp_path / "ray")
    assert results["local"]["config_hash"] == results["ray"]["config_hash"]


def test_on_ray_workers_write_and_the_driver_gets_small_manifests(ray_session, tmp_path, monkeypatch):
    import os

    from pipelines.store.commit import committed_files
    from pipelines.store.writer import JobWriter
    seen = []
    real_add_part = JobWriter.add_part

    def spy(self, part):
        seen.append((len(json.dumps(part)), part["pid"], part["counts"]["audio_bytes"]))
        return real_add_part(self, part)

    def never(self, item):
        raise AssertionError("a finished item reached the driver")
    monkeypatch.setattr(JobWriter, "add_part", spy)
    monkeypatch.setattr(JobWriter, "add", never)
    cfg = toy_config()
    n = 8
    res = run_job("toy", make_items(n, cfg, duration_s=3.0), toy_stages(cfg), cfg, tmp_path)
    assert res["examples"] == n and set(_ids(tmp_path)) == expected_example_ids(n, cfg)
    assert seen and all(pid != os.getpid() for _, pid, _ in seen)  # parts written in workers
    manifest_bytes, audio_bytes = sum(s[0] for s in seen), sum(s[2] for s in seen)
    assert audio_bytes > 50 * manifest_bytes  # what reached the driver is tiny next to the audio
    assert manifest_bytes / n < 4096  # a few kilobytes per example at most
    assert len(committed_files(tmp_path, "shards")) == len(seen)


def test_rerun_skips_committed_work(tmp_path):
    cfg = toy_config(local=True)
    first = run_job("toy", make_items(5, cfg), toy_stages(cfg), cfg, tmp_path)
    second = run_job("toy", make_items(9, cfg), toy_stages(cfg), cfg, tmp_path)
    assert (first["items"], second["items"], second["skipped"]) == (5, 4, 5)
    _, rows = query(tmp_path, "SELECT count(*), count(DISTINCT example_id) FROM examples")
    assert rows == [(9, 9)]
    assert set(_ids(tmp_path)) == expected_example_ids(9, cfg)
    third = run_job("toy", make_items(9, cfg), toy_stages(cfg), cfg, tmp_path)
    assert (third["items"], third["skipped"], third["commits"]) == (0, 9, 0)
    _, runs = query(tmp_path, "SELECT status, count(*) FROM runs GROUP BY ALL")
    assert runs == [("finished", 3)]


def test_summarize_is_called_with_the_finished_catalog(tmp_path):
    cfg = toy_config(local=True)

    def summarize(out_dir, run_id):
        _, rows = query(out_dir, "SELECT count(*) FROM examples")
        return {"run": run_id, "examples": rows[0][0]}
    res = run_job("toy", make_items(3, cfg), toy_stages(cfg), cfg, tmp_path, summarize=summarize)
    assert res["summary"] == {"run": res["run_id"], "examples": 3}


def test_stage_table_counts_from_items():
    t = StageTable(["a", "b", "c"])
    t.add({"status": "ok", "timings": {n: {"seconds": 1.0, "audio_s": 2.0} for n in "abc"},
           "rejections": [{"stage": "c"}]})  # one example of the item rejected by c
    t.add({"status": "rejected", "timings": {"a": {"seconds": 0.5, "audio_s": 2.0}},
           "rejections": [{"stage": "a"}]})
    t.add({"status": "ok", "timings": {n: {"seconds": 1.0, "audio_s": 2.0} for n in "abc"},
           "rejections": [{"stage": "dedup"}]})
    rows = {r["stage"]: r for r in t.as_list()}
    assert rows["a"] == {"stage": "a", "items_in": 3, "items_out": 2, "rejected": 1, "rejections": 1,
                         "seconds": 2.5, "audio_s": 6.0, "rtf": pytest.approx(2.5 / 6.0, abs=1e-5)}
    assert (rows["b"]["items_in"], rows["b"]["items_out"]) == (2, 2)
    assert (rows["c"]["rejected"], rows["c"]["rejections"]) == (0, 1)
    assert rows["dedup"]["rejections"] == 1 and rows["dedup"]["items_in"] == 0


def test_check_fit_names_the_stages():
    class A(Stage):
        name = "asr"

    class B(Stage):
        name = "tts"
    cfg = {"resources": {"stages": {"asr": {"num_cpus": 1, "concurrency": 2}, "tts": {"num_cpus": 0.5}}}}
    reqs = [(A.from_config(cfg), Resources.for_stage(cfg, "asr")), (B.from_config(cfg), Resources.for_stage(cfg, "tts"))]
    check_fit(reqs, {"CPU": 2.5})
    with pytest.raises(ResourceFitError, match=r"ask for 2.5 CPUs but the Ray cluster has 2(?s:.*)asr: 2 x 1"):
        check_fit(reqs, {"CPU": 2})
    with pytest.raises(ResourceFitError, match="largest node has 0.75"):
        check_fit(reqs, {"CPU": 4}, node_cpus=[0.75, 0.75])
    gpu = {"resources": {"stages": {"asr": {"num_cpus": 0.25, "num_gpus": 1}}}}
    with pytest.raises(ResourceFitError, match="GPUs"):
        check_fit([(A.from_config(gpu), Resources.for_stage(gpu, "asr"))], {"CPU": 2})


def test_a_stage_asks_ray_for_its_own_resources():
    from ray_jobs.execute import stage_requests

    class Asr(Stage):
        name = "asr"
        default_resources = Resources(num_cpus=1.0)
    built = Asr(resources=Resources(num_cpus=0.5, num_gpus=1))
    assert built.device == "cuda"
    # the config is not consulted again: what the stage was built with is what Ray is asked for
    assert stage_requests([built]) == [(built, Resources(num_cpus=0.5, num_gpus=1))]
    with pytest.raises(ResourceFitError, match="GPUs"):
        check_fit(stage_requests([built]), {"CPU": 2})
    plain = Asr()
    assert plain.resources == Resources(num_cpus=1.0) and plain.resources is not Asr.default_resources
    from_cfg = Asr.from_config({"resources": {"stages": {"asr": {"num_gpus": 0.5}}}})
    assert stage_requests([from_cfg])[0][1].num_gpus == 0.5


def test_requests_that_do_not_fit_fail_before_running(ray_session, tmp_path):
    cfg = toy_config(stages={"toy_work": {"num_cpus": 1.0, "concurrency": 2}})
    with pytest.raises(ResourceFitError, match="toy_work: 2 x 1.0 CPU"):
        run_job("toy", make_items(2, cfg), toy_stages(cfg), cfg, tmp_path)
    _, runs = query(tmp_path, "SELECT status FROM runs")
    assert runs == [("failed",)]
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


def test_a_set_up_stage_is_refused_on_ray(ray_session, tmp_path):
    cfg = toy_config()
    stages = toy_stages(cfg)
    stages[1].ensure_setup()
    with pytest.raises(ValueError, match="already set up on the driver"):
        run_job("toy", make_items(1, cfg), stages, cfg, tmp_path)


def _toy_inputs(d, n, start=0):
    d.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        sub = d / f"g{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"toy-{i}.wav").write_bytes(b"")
    return d


def test_inputs_stream_through_ray_data_in_blocks(ray_session, tmp_path):
    import functools

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pipelines.io import inputs
    from pipelines.io.inputs import InputListing, list_inputs, uri_dataset

    from tandem.testing.toy import items_from_uris
    d = _toy_inputs(tmp_path / "in", 2 * inputs.LIST_BATCH + 7)
    (d / "notes.txt").write_text("not audio")
    want = list(list_inputs(str(d)))
    assert len(want) == 2 * inputs.LIST_BATCH + 7
    ds = uri_dataset(str(d)).materialize()
    assert sorted(r["uri"] for r in ds.take_all()) == sorted(want)
    assert ds.num_blocks() >= 3  # the walk streams out in blocks, not one list
    (tmp_path / "m.jsonl").write_text("".join(f'{{"uri": "in/g0/toy-{i}.wav"}}\n' for i in (0, 3)))
    pq.write_table(pa.table({"uri": ["in/g1/toy-1.wav", "/abs/x.wav"]}), tmp_path / "m.parquet")
    assert sorted(r["uri"] for r in uri_dataset(str(tmp_path / "m.jsonl")).take_all()) == \
        [str(d / "g0" / "toy-0.wav"), str(d / "g0" / "toy-3.wav")]
    assert sorted(r["uri"] for r in uri_dataset(str(tmp_path / "m.parquet")).take_all()) == \
        ["/abs/x.wav", str(d / "g1" / "toy-1.wav")]
    assert sorted(r["uri"] for r in uri_dataset(str(d / "g2" / "*.wav")).take_all()) == \
        sorted(str(p) for p in (d / "g2").glob("*.wav"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        uri_dataset(str(d / "*.opus"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        InputListing(str(tmp_path / "nowhere"), list)
    # a job over a listing: items made by the workers, committed once, a rerun skips them. The
    # stages leave less than one CPU free: a listing or read task asking a whole CPU would stall
    cfg = toy_config(stages={"toy_work": {"num_cpus": 1.0}})
    small = _toy_inputs(tmp_path / "small", 6)
    listing = InputListing(str(small), functools.partial(items_from_uris, cfg=cfg))
    first = run_job("toy", listing, toy_stages(cfg), cfg, tmp_path / "out")
    assert (first["items"], first["examples"]) == (6, 6)
    assert set(_ids(tmp_path / "out")) == expected_example_ids(6, cfg)
    _toy_inputs(small, 3, start=6)
    again = run_job("toy", listing, toy_stages(cfg), cfg, tmp_path / "out")
    assert (again["items"], again["skipped"]) == (3, 6)
    assert set(_ids(tmp_path / "out")) == expected_example_ids(9, cfg)


def test_dedup_on_ray_judges_in_the_workers(ray_session, tmp_path):
    cfg = toy_config()
    items = list(make_items(4, cfg))
    twin = dict(items[1], work_key="another-name-for-toy-1", uri="toy://copy-of-1")
    res = run_job("toy", [*items, twin], toy_stages(cfg), cfg, tmp_path, dedup=True)
    assert (res["items"], res["examples"], res["duplicates"]) == (5, 4, 1)
    _, rows = query(tmp_path, "SELECT uri, reason FROM rejections")
    # whichever name is judged first, the smallest uri keeps the source (pipelines.store.settle)
    assert rows == [("toy://toy-1", "duplicate_source")]
    from pipelines.store.commit import committed_files
    _, n = query(tmp_path, "SELECT count(*) FROM read_parquet(?)", [[str(p) for p in committed_files(tmp_path, "dedup")]])
    assert n == [(4,)]  # the kept examples' signatures, written by the workers (settling retired a copy)


def test_a_finished_run_leaves_no_unclaimed_staging(tmp_path):
    # a worker that wrote its part and died before handing it over leaves staging no commit names;
    # its items are redone elsewhere, and the run that finished drops it (not the next run)
    from pipelines.store.commit import STAGING

    out = tmp_path / "out"

    class DiesAfterWriting(Stage):
        name = "dies_after_writing"

        def process(self, item):
            stray = out / STAGING / f"p-dead-{item['index']}" / "examples"
            stray.mkdir(parents=True, exist_ok=True)
            (stray / "half.parquet").write_bytes(b"PAR1")
            return item

    cfg = toy_config(local=True)
    res = run_job("toy", make_items(3, cfg), [DiesAfterWriting(), *toy_stages(cfg)], cfg, out)
    assert res["items"] == 3 and res["examples"] == 3
    assert not any((out / STAGING).iterdir())
