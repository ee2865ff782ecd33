"""Hostile and unlucky inputs (issue 20): each case fails on the code before the fix.

Inputs are built on the fly in tmp dirs: playlists posing as .wav, NaN samples, 8 channels,
garbage lock files, duplicate and malformed manifests, tampered shards, stacked SQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipelines.core.config import config_hash, load_config
from pipelines.core.stage import InputError, Stage
from pipelines.curate.chain import make_items as curate_items
from pipelines.curate.ingest import IngestStage
from ray_jobs.runner import run_job

from tandem.testing.toy import expected_example_ids, make_items, toy_config, toy_stages

SR = 16000


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def _speech_like(seconds: float = 2.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def _ingest(cfg, path, out):
    (item,) = curate_items([str(path)], cfg, config_hash(cfg), str(out))
    return IngestStage.from_config(cfg)(item)


def _rejection(item) -> dict:
    assert item["status"] == "rejected", item.get("retry")
    (r,) = item["rejections"]
    return r


# ---- case 12: a bug is never the data's fault -----------------------------------------------------

class BuggyOn(Stage):
    """A stage with a bug that shows on one item (a KeyError: not an input fault)."""

    name = "buggy"

    def __init__(self, bad: set[str]):
        super().__init__()
        self.bad = bad

    def process(self, item):
        if item["toy_key"] in self.bad:
            return {}["no such key"]
        if item["toy_key"] == "toy-2":
            raise InputError(f"{item['uri']}: no speech in it", reason="no_speech")
        return item


def test_case12_a_stage_bug_is_retried_not_committed_as_a_rejection(tmp_path, capsys):
    from pipelines.store.commit import manifests
    from ray_jobs.jobs import report_retries
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    res = run_job("toy", make_items(4, cfg), [BuggyOn({"toy-1"}), *toy_stages(cfg)], cfg, out)
    (failed,) = res["retry"]
    assert failed["uri"] == "toy://toy-1" and failed["kind"] == "error" and "KeyError" in failed["detail"]
    assert res["rejections"] == 1  # only the named input fault (toy-2) is a rejection
    assert all("toy://toy-1" not in str(m["work_keys"]) for m in manifests(out))
    assert report_retries(res) == 3
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert record["status"] == "finished" and record["uncommitted"] == {"error": 1, "transient": 0}
    err = capsys.readouterr().err
    assert "toy://toy-1: buggy: KeyError" in err and "not a fault of the input" in err
    # the next run (bug fixed) retries it; the input fault stays committed
    res2 = run_job("toy", make_items(4, cfg), [BuggyOn(set()), *toy_stages(cfg)], cfg, out)
    assert res2["skipped"] == 3 and res2["items"] == 1 and not res2["retry"]
    from catalogs import catalog
    _, rows = catalog.query(out, "SELECT example_id FROM examples WHERE status = 'accepted'")
    assert {r[0] for r in rows} == expected_example_ids(4, cfg) - expected_example_ids(1, cfg, start=2)
    _, rej = catalog.query(out, "SELECT stage, reason FROM rejections")
    assert rej == [("buggy", "no_speech")]


# ---- case 1: decode audio, and only audio ---------------------------------------------------------

@pytest.mark.parametrize("body,fmt", [
    ("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{secret}\n#EXT-X-ENDLIST\n", "hls"),
    ("ffconcat version 1.0\nfile '{secret}'\n", "concat"),
])
def test_case1_a_playlist_named_wav_is_refused_naming_its_format(cfg, tmp_path, body, fmt):
    secret = tmp_path / "elsewhere" / "secret.mp3"
    secret.parent.mkdir()
    # an mp3 outside the input that a playlist names: it must never be read
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=3", str(secret)], check=True)
    x = tmp_path / "in" / "x.wav"
    x.parent.mkdir()
    x.write_text(body.format(secret=secret))
    r = _rejection(_ingest(cfg, x, tmp_path / "out"))
    assert r["reason"] == "unsupported_format", r
    assert f"'{fmt}'" in r["detail"] and str(x) in r["detail"]


def test_case1_odd_names_stay_plain_paths(cfg, tmp_path, monkeypatch):
    # a relative name that reads as an FFmpeg protocol ("concat:...") is opened as that file
    d = tmp_path / "concat:a"
    d.mkdir()
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=300:d=2", str(d / "speech.m4a")],
                   check=True)
    monkeypatch.chdir(tmp_path)
    it = _ingest(cfg, "concat:a/speech.m4a", tmp_path / "out")
    assert it["status"] == "ok" and it["duration_s"] == pytest.approx(2.0, abs=0.1)


# ---- case 2: NaN / inf samples --------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_case2_invalid_samples_have_their_own_reason(cfg, tmp_path, bad):
    x = _speech_like()
    x[SR // 2: SR // 2 + 10] = bad
    p = tmp_path / "nan.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    r = _rejection(_ingest(cfg, p, tmp_path / "out"))
    assert r["reason"] == "invalid_samples" and "NaN or infinite" in r["detail"] and str(p) in r["detail"]


# ---- case 11: more channels than supported --------------------------------------------------------

def test_case11_eight_channels_say_what_is_unsupported(cfg, tmp_path):
    p = tmp_path / "eight.wav"
    sf.write(p, _speech_like(channels=8), SR)
    r = _rejection(_ingest(cfg, p, tmp_path / "out"))
    assert r["reason"] == "unsupported_channels" and "8 audio channels" in r["detail"]


# ---- case 6: a lock that heals ----------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                     max_leaves=6)
_lock_fields = st.fixed_dictionaries({}, optional={
    "pid": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "renewed_at": st.one_of(st.floats(), st.text(max_size=4), st.none()),
    "lease_s": st.one_of(st.floats(), st.text(max_size=4)), "token": st.one_of(st.text(max_size=4), st.none()),
    "host": st.text(max_size=4)})
garbage_locks = st.one_of(
    st.binary(max_size=40),
    _json.map(lambda v: json.dumps(v).encode()),
    _lock_fields.filter(lambda d: not {"pid", "renewed_at", "lease_s", "token"} <= set(d)
                        or not isinstance(d.get("token"), str) or not isinstance(d.get("pid"), int)
                        or not all(isinstance(d.get(k), float) for k in ("renewed_at", "lease_s")))
    .map(lambda d: json.dumps(d).encode()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=garbage_locks)
def test_case6_garbage_lock_files_heal_after_the_lease(tmp_path, body):
    from pipelines.store.lock import LOCK, LockHeld, OutputLock, read_lock
    out = tmp_path / f"out-{time.monotonic_ns()}"
    out.mkdir()
    lock = out / LOCK
    lock.write_bytes(body)
    # fresh: a job may be starting; the error names the file and how to clear it
    if "garbage" in (read_lock(out) or {}):
        with pytest.raises(LockHeld, match=f"delete {lock}"):
            OutputLock(out, run_id="r", lease_s=60).acquire()
    # two hours old: expired, taken over
    old = time.time() - 7200
    os.utime(lock, (old, old))
    held = OutputLock(out, run_id="r", lease_s=60).acquire()
    try:
        assert read_lock(out)["token"] == held.token
        held.check()
    finally:
        held.release()
    assert not lock.exists()


def test_case6_lock_creation_is_atomic(tmp_path, monkeypatch):
    # a reader racing the creator sees the whole record or no file, never a torn one
    from pipelines.store import lock as L
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(L.read_lock(tmp_path))  # just before the lock appears
        real_link(src, dst)
        seen.append(L.read_lock(tmp_path))
    monkeypatch.setattr(L.os, "link", link)
    held = L.OutputLock(tmp_path, run_id="r").acquire()
    held.release()
    assert seen[0] is None and seen[1]["token"] == held.token


# ---- case 10: a --set value YAML refuses is one line ------------------------------------------

@pytest.mark.parametrize("override", [
    'asr.beam_size=!!python/object/apply:os.system ["echo pwned"]',
    "asr.beam_size=[unclosed", "asr..beam_size=1",
])
def test_case10_bad_set_is_one_line(tmp_path, capsys, override):
    from ray_jobs.cli import main
    rc = main(["curate", str(tmp_path), str(tmp_path / "out"), "--set", override])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("tandem curate: error: --set"), err
    assert not (tmp_path / "out").exists()


def test_case10_bad_config_file_is_one_line(tmp_path, capsys):
    from ray_jobs.cli import main
    cfg = tmp_path / "job.yaml"
    cfg.write_text('asr: !!python/object/apply:os.system ["echo pwned"]\n')
    rc = main(["curate", str(tmp_path), str(tmp_path / "out"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"config file {cfg}: not valid YAML" in err, err


# ---- cases 3 and 4: manifests -------------------------------------------------------------------

def test_case3_one_input_named_many_ways_is_claimed_once(cfg, tmp_path):
    from pipelines.io.inputs import list_inputs
    from pipelines.store.index import CommitIndex
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", _speech_like(), SR)
    (d / "link.wav").symlink_to(d / "a.wav")
    man = d / "m.jsonl"
    names = ["a.wav", "./a.wav", "sub/../a.wav", str(d / "a.wav"), "link.wav", "a.wav"]
    man.write_text("".join(json.dumps({"uri": n}) + "\n" for n in names))
    uris = list(list_inputs(str(man)))
    assert uris == [str((d / "a.wav").resolve())] * len(names)
    keys = [it["work_key"] for it in curate_items(uris, cfg, config_hash(cfg), str(tmp_path / "out"))]
    assert CommitIndex(tmp_path / "out").claim(keys, "block-0") == [True] + [False] * (len(names) - 1)


_line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
_manifest_line = st.one_of(
    st.builds(lambda n: json.dumps({"uri": f"{n}.wav"}), st.integers(0, 9)),
    _line_text,
    _json.map(json.dumps),
    st.builds(lambda v: json.dumps({"uri": v}), _json),
    st.just(json.dumps({"uri": ""})), st.just(json.dumps({"uri": "  "})), st.just("{\"uri\": \"a.wav\""))


def _first_bad_line(lines: list[str]) -> int | None:
    """The oracle: 1-based number of the first line that is not blank and not {"uri": <non-empty str>}."""
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            return i
        if not (isinstance(obj, dict) and isinstance(obj.get("uri"), str) and obj["uri"].strip()
                and "\0" not in obj["uri"]):
            return i
    return None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_manifest_line, max_size=8))
def test_case4_every_bad_manifest_line_is_named(tmp_path, lines):
    from pipelines.io.inputs import InputListing
    man = tmp_path / f"m-{time.monotonic_ns()}.jsonl"
    man.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    bad = _first_bad_line(lines)
    if bad is None:
        listing = InputListing(str(man), list)
        assert len(list(listing)) == sum(1 for line in lines if line.strip())
    else:
        with pytest.raises(ValueError, match=f"^manifest {man}, line {bad}: "):
            InputListing(str(man), list)


def test_case4_bad_manifest_line_is_one_line_from_the_cli(tmp_path, capsys):
    from ray_jobs.cli import main
    sf.write(tmp_path / "a.wav", _speech_like(), SR)
    man = tmp_path / "m.jsonl"
    man.write_text('{"uri": "a.wav"}\n{"uri": ""}\n{"uri": "a.wav"\n')
    rc = main(["curate", str(man), str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"tandem curate: error: manifest {man}, line 2: 'uri' is empty"
    assert not (tmp_path / "out").exists()


# ---- case 8: confined SQL -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_out(tmp_path_factory):
    from tandem.testing import loader as lt
    out = tmp_path_factory.mktemp("sql") / "o'ut"  # a quote in the path: SQL text must never hold it
    lt.make_output_dir(out, 8, languages=("en", "fr"), durations=(0.5,), per_item=2, items_per_commit=2)
    return out


def _stacked(target) -> list[str]:
    """SQL that must never run as written: the first five are not one SELECT; the last two are one
    SELECT that reaches outside the catalog."""
    return [
        # closes the wrapping subquery and stacks a COPY (the attack of issue 20)
        (f"SELECT example_id FROM examples) AS q); COPY (SELECT 'x') TO '{target}'; "
         "SELECT * FROM ((SELECT example_id FROM examples"),
        f"COPY (SELECT 'x') TO '{target}'",
        f"SELECT example_id FROM examples; COPY (SELECT 'x') TO '{target}'",
        "SET enable_external_access = true",
        "ATTACH '/tmp/elsewhere.duckdb' AS x",
        "SELECT example_id FROM examples WHERE example_id IN (SELECT content FROM read_text('/etc/hostname'))",
        f"SELECT example_id FROM read_csv('{target.parent}/*.csv')",
    ]


def test_case8_mixture_and_sql_selections_are_confined(small_out, tmp_path):
    from catalogs import mix
    from pipelines.train import LoaderError, MixtureDataset, ShardDataset
    target = tmp_path / "written.txt"
    (target.parent / "ids.csv").write_text("example_id\nx\n")
    for i, sql in enumerate(_stacked(target)):
        with pytest.raises(mix.MixtureError):
            mix.add_mixture(small_out, "m", sql, validate=True)
        if i < 5:  # parsed even when not run
            with pytest.raises(mix.MixtureError, match="statement|parse"):
                mix.add_mixture(small_out, "m", sql, validate=False)
        with pytest.raises(LoaderError):
            list(ShardDataset.from_sql(small_out, sql))
        # a mixture file written by hand (or by an attacker) is checked before any query runs
        (small_out / "mixtures").mkdir(exist_ok=True)
        (small_out / "mixtures" / "evil.json").write_text(json.dumps(
            {"name": "evil", "components": [{"name": "c0", "sql": sql, "weight": 1.0}]}))
        with pytest.raises(LoaderError):
            next(iter(MixtureDataset(small_out, "evil")))
        assert not target.exists(), sql
    with pytest.raises(LoaderError, match="mixture name"):
        MixtureDataset(small_out, "../../evil")
    # a plain selection still works
    assert len(list(ShardDataset.from_sql(small_out, "SELECT example_id FROM examples WHERE language = 'fr';"))) > 0


def test_case8_catalog_query_from_the_cli_is_confined(small_out, tmp_path, capsys):
    from ray_jobs.cli import main
    target = tmp_path / "written.txt"
    for sql in _stacked(target):
        assert main(["catalog", "query", str(small_out), sql]) == 2, sql
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert not target.exists()
    assert main(["catalog", "query", str(small_out), "SELECT count(*) FROM examples"]) == 0


def test_case8_report_reads_any_path(small_out, tmp_path):
    # the report opens the catalog, or without one the shards: paths go to DuckDB as values, not SQL text
    import shutil

    from catalogs import catalog
    from catalogs.report import _connect
    out = tmp_path / "it's"
    shutil.copytree(small_out, out)
    _, want = catalog.query(small_out, "SELECT status, count(*) FROM examples GROUP BY ALL ORDER BY ALL")
    assert want
    for how_want in ("catalog", "parquet"):
        con, how = _connect(out)
        assert how == how_want
        assert con.execute("SELECT status, count(*) FROM examples GROUP BY ALL ORDER BY ALL").fetchall() == want
        con.close()
        (out / "catalog.duckdb").unlink(missing_ok=True)


# ---- case 9: ids and files checked ------------------------------------------------------------

def _tamper(shard, new_id="../../x"):
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pq.read_table(shard)
    ids = t.column("example_id").to_pylist()
    ids[0] = new_id
    pq.write_table(t.set_column(t.schema.get_field_index("example_id"), "example_id", pa.array(ids)), shard)


def test_case9_a_tampered_shard_is_an_error_naming_it(small_out, tmp_path, capsys):
    import shutil

    from pipelines.store.commit import committed_files
    from pipelines.train import LoaderError, ShardDataset
    from pipelines.train.export import export_moshi
    from ray_jobs.cli import main
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    shard = committed_files(out, "shards")[0]
    _tamper(shard)
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(LoaderError, match=f"{shard}: checksum .* does not match its commit manifest"):
        export_moshi(out, dest)
    with pytest.raises(LoaderError, match="commit manifest"):
        list(ShardDataset(out, shuffle=False))
    assert main(["export", "moshi", str(out), str(dest)]) == 2
    assert str(shard) in capsys.readouterr().err
    assert not list(tmp_path.rglob("x.*"))


def test_case9_ids_must_match_their_pattern_before_naming_files(small_out, tmp_path):
    # a plain folder of shards has no manifest to check against: the id pattern is the guard
    import shutil

    from pipelines.store.commit import committed_files
    from pipelines.train.export import export_moshi, export_rttm
    plain = tmp_path / "plain"
    (plain / "shards").mkdir(parents=True)
    for f in committed_files(small_out, "shards"):
        shutil.copy(f, plain / "shards" / f.name)
    _tamper(next((plain / "shards").glob("*.parquet")))
    dest = tmp_path / "a" / "b" / "dest"
    for export in (export_moshi, export_rttm):
        with pytest.raises(ValueError, match="'../../x' is not a tandem id"):
            export(plain, dest)
    assert not list(tmp_path.rglob("x.*"))
    with pytest.raises(ValueError, match="outside the export directory"):
        export_moshi(small_out, dest, index="../index.jsonl")


# ---- case 5: attempts that mean something ---------------------------------------------------------

def test_case5_driver_kills_do_not_quarantine_a_good_input(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "out"
    # three runs, each killed (SIGKILL of the driver) while ToyWork holds item 1
    faults = ";".join(f"toy_work:driver:1:{tmp_path / f'kill{k}.marker'}" for k in range(3))
    env = {**os.environ, "TANDEM_TOY_FAULT": faults}
    cmd = [sys.executable, "-m", "tandem.testing.toy", str(out), "--items", "3", "--local", "--commit-every", "1"]
    for k in range(3):
        r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == -9 and (tmp_path / f"kill{k}.marker").exists(), r.stderr[-2000:]
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from catalogs import catalog
    _, rej = catalog.query(out, "SELECT reason FROM rejections")
    assert rej == []
    _, n = catalog.query(out, "SELECT count(*) FROM examples WHERE status = 'accepted'")
    assert n == [(3,)]


def test_case5_deaths_on_the_input_still_quarantine_with_evidence(tmp_path):
    from pipelines.core import attempts

    class Model(Stage):
        name = "model"
        uses_model = True

        def process(self, item):
            return item
    item = {"uri": "x.wav", "work_key": "wk", "out_dir": str(tmp_path), "status": "ok", "rejections": []}
    st_ = Model()
    st_.attempt_run = "run-7"
    marker = st_._attempt_file(item)
    for pid in (11, 12, 13):  # three attempts of this run that never returned: their workers died
        attempts.enter(marker, "run-7")
        rec = json.loads(marker.read_text())
        marker.write_text(json.dumps({**rec, "pid": pid}))
    it = st_(dict(item))
    assert it["status"] == "rejected" and it["rejections"][0]["reason"] == "quarantined"
    assert "died 3 times" in it["rejections"][0]["detail"] and "pid 13" in it["rejections"][0]["detail"]


# ---- case 7: a full disk ----------------------------------------------------------------------------

@contextlib.contextmanager
def _full_disk(out, monkeypatch, after: int = 4):
    """A 2 MB tmpfs at `out` (root), else the 4th Parquet write reports ENOSPC."""
    import errno
    import subprocess
    out.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)], capture_output=True,
                        check=False).returncode == 0
    if not ok:
        from pipelines.io import files as shards
        real, calls = shards.pq.write_table, [0]

        def full(*a, **k):
            calls[0] += 1
            if calls[0] >= after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*a, **k)
        monkeypatch.setattr(shards.pq, "write_table", full)
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(out)], check=False)


def test_case7_full_disk_is_one_line_exit_3_and_a_failed_run_record(tmp_path, monkeypatch, capsys):
    from pipelines.store.commit import verify
    from ray_jobs import jobs
    from ray_jobs.cli import main
    cfg = toy_config(local=True)
    cfg["shards"]["max_items_per_commit"] = 1
    out = tmp_path / "full"

    def toy_curate(input_spec, out_dir, cfg_, argv=None):  # the CLI's own path, with toy work in it
        return run_job("toy", make_items(40, cfg, duration_s=2.0), toy_stages(cfg), cfg, out_dir)
    monkeypatch.setattr(jobs, "run_curate", toy_curate)
    with _full_disk(out, monkeypatch):
        rc = main(["curate", str(tmp_path), str(out), "--local"])
        err = capsys.readouterr().err.strip()
        assert rc == 3, err
        assert len(err.splitlines()) == 1 and "No space left on device" in err and "rerun" in err, err
        (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
        assert record["status"] == "failed" and record["finished_at"] and "No space" in record["error"]
        assert verify(out) == []  # what was committed is whole
        assert not list((out / "runs").glob(".reserve-*"))


def test_case7_a_storage_error_inside_a_ray_task_is_recognised():
    import errno

    from ray.exceptions import RayTaskError
    from ray_jobs.runner import infra_cause
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/_staging/p/x.parquet")
    wrapped = RayTaskError("_write_fn", "Traceback ...", full).as_instanceof_cause()
    try:
        try:
            raise wrapped
        except OSError as inner:
            raise RuntimeError("Ray Data: a task failed") from inner
    except RuntimeError as outer:
        assert infra_cause(outer) is full
    assert infra_cause(RayTaskError("f", "tb", KeyError("x")).as_instanceof_cause()) is None
    assert infra_cause(OSError(errno.ENOENT, "no such file")) is None


def test_case9_voice_bank_names_are_checked(small_out, tmp_path, capsys):
    import shutil

    from pipelines.io.files import iter_rows
    from pipelines.store.commit import committed_files
    from ray_jobs.cli import main
    from synth.voicebank import write_voice_bank
    rows = list(iter_rows(committed_files(small_out, "shards"), columns=["example_id", "language", "words", "audio"]))
    dest = tmp_path / "a" / "b" / "bank"
    assert write_voice_bank(rows[:1], dest, min_s=0.1, guard_s=0.0, join_s=0.0)  # a clean row makes a clip
    for bad in ({"example_id": "../../x"}, {"language": "../../x"}):
        with pytest.raises(ValueError, match="refusing to name"):
            write_voice_bank([{**rows[0], **bad}], dest, min_s=0.1, guard_s=0.0, join_s=0.0)
    assert not list(tmp_path.rglob("x*"))
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    _tamper(committed_files(out, "shards")[0])
    assert main(["voices", str(out), str(dest)]) == 2
    assert "does not match its commit manifest" in capsys.readouterr().err


def test_case5_a_lost_node_is_not_a_death_on_the_input(tmp_path, monkeypatch):
    import sys
    import types

    from pipelines.core import attempts
    fake = types.SimpleNamespace(is_initialized=lambda: True,
                                 nodes=lambda: [{"NodeID": "alive", "Alive": True}, {"NodeID": "gone", "Alive": False}])
    monkeypatch.setitem(sys.modules, "ray", fake)
    marker = tmp_path / "_attempts" / "wk.model"
    marker.parent.mkdir()
    for node, counted in (("gone", 0), ("alive", 1)):
        marker.write_text(json.dumps({"run": "r", "pid": 1, "host": "h", "node": node, "deaths": []}))
        assert len(attempts.enter(marker, "r")) == counted, node
    # an attempt left by another run (a killed driver, a cancelled job) is not counted either
    marker.write_text(json.dumps({"run": "r0", "pid": 1, "host": "h", "node": "alive", "deaths": []}))
    assert attempts.enter(marker, "r") == []


def test_case5_a_stage_error_exits_non_zero_and_the_rerun_retries_it(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "out"
    env = {**os.environ, "TANDEM_TOY_FAULT": f"toy_work:raise:1:{tmp_path / 'raise.marker'}"}
    cmd = [sys.executable, "-m", "tandem.testing.toy", str(out), "--items", "3", "--local", "--commit-every", "1"]
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "1 item(s) failed with an error inside a stage" in r.stderr and "toy fault at item 1" in r.stderr
    from catalogs import catalog
    assert catalog.query(out, "SELECT count(*) FROM rejections")[1] == [(0,)]  # never the data's fault
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    _, n = catalog.query(out, "SELECT count(*) FROM examples WHERE status = 'accepted'")
    assert n == [(3,)]
