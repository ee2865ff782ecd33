"""Faults: killed workers and actors are retried, a killed driver resumes without loss or duplicate,
an unwritable or full output fails clearly with nothing half-visible, and a multi-node cluster
survives losing a node mid-job."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from catalogs.catalog import build, query, table_fingerprint
from pipelines.store.commit import COMMITS, STAGING, OutputError, iter_examples, manifests, verify
from ray_jobs.runner import run_job

from tandem.testing.toy import FAULT_ENV, expected_example_ids, make_items, toy_config, toy_stages

ROOT = Path(__file__).resolve().parents[1]


def _exactly_once(out: Path, cfg: dict, n: int) -> None:
    _, rows = query(out, "SELECT example_id, count(*) FROM examples GROUP BY ALL")
    assert all(c == 1 for _, c in rows), [r for r in rows if r[1] != 1]
    assert {r[0] for r in rows} == expected_example_ids(n, cfg)
    _, src = query(out, "SELECT count(*), count(DISTINCT work_key) FROM sources")
    assert src == [(n, n)]
    assert verify(out) == []
    assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())
    # the catalog a job built commit by commit equals one rebuilt from the shards
    live = table_fingerprint(out)
    build(out)
    assert table_fingerprint(out) == live


def _toy_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tandem.testing.toy", str(out), *args]


def _wait_for_commits(out: Path, proc: subprocess.Popen, n: int, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if (out / COMMITS).exists() and len(list((out / COMMITS).glob("*.json"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the job ended ({proc.returncode}) before {n} commit(s):\n"
                                 + proc.stdout.read()[-3000:])
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {n} commit(s) after {timeout} s")


def test_killed_task_worker_and_actor_are_retried(ray_session, tmp_path, monkeypatch):
    cfg = toy_config()
    marks = tmp_path / "exit.marker", tmp_path / "kill.marker"
    # a task worker exits at item 2, the actor of toy_work is SIGKILLed at item 5
    monkeypatch.setenv(FAULT_ENV, f"toy_tone:exit:2:{marks[0]};toy_work:kill:5:{marks[1]}")
    out = tmp_path / "out"
    res = run_job("toy", make_items(8, cfg), toy_stages(cfg), cfg, out)
    fired = [json.loads(m.read_text()) for m in marks]
    assert [f["mode"] for f in fired] == ["exit", "kill"]  # both faults really happened
    assert fired[0]["pid"] != os.getpid() and fired[1]["pid"] != os.getpid()
    assert (res["items"], res["examples"], res["repeated"]) == (8, 8, 0)
    _exactly_once(out, cfg, 8)


def _cli_config(commit_every: int) -> dict:
    """The config `python -m pipelines.toy --commit-every N` runs with (shards are hashed)."""
    cfg = toy_config()
    cfg["shards"]["max_items_per_commit"] = commit_every
    return cfg


def test_killed_driver_resumes_exactly_once(ray_session, ray_address, tmp_path):
    cfg = _cli_config(2)
    n = 12
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(FAULT_ENV, None)
    common = ["--items", str(n), "--commit-every", "2", "--concurrency", "1"]
    # 1. a Ray driver SIGKILLed from outside once its first commit is on disk
    p1 = subprocess.Popen(_toy_cmd(out, "--address", ray_address, "--sleep", "0.3", *common), cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_commits(out, p1, 1)
        p1.send_signal(signal.SIGKILL)
    finally:
        p1.wait(timeout=60)
    assert p1.returncode == -signal.SIGKILL
    after1 = len(manifests(out))
    assert 1 <= after1 < n // 2
    # 2. a driver killed inside a commit: its files staged, the manifest not yet written
    p2 = subprocess.run(_toy_cmd(out, "--local", "--kill-before-commit", "2", *common), cwd=ROOT, env=env, check=False,
                        capture_output=True, text=True, timeout=120)
    assert p2.returncode == -signal.SIGKILL, p2.stdout[-2000:] + p2.stderr[-2000:]
    assert len(manifests(out)) == after1 + 1
    committed = {m["commit_id"] for m in manifests(out)}
    orphans = [d.name for d in (out / STAGING).iterdir() if d.name not in committed]
    assert len(orphans) == 1 and any((out / STAGING / orphans[0]).rglob("*.parquet"))
    # only committed work is visible: in the files, and in the catalog (which may lag a commit:
    # it is published when that costs little of the driver's time)
    assert len(list(iter_examples(out, columns=["example_id"]))) == 2 * (after1 + 1)
    _, rows = query(out, "SELECT count(*) FROM examples")
    assert rows[0][0] in (2 * after1, 2 * (after1 + 1))
    # 3. the rerun drops the orphan staging, skips committed work keys and finishes the rest
    p3 = subprocess.run(_toy_cmd(out, "--address", ray_address, *common), cwd=ROOT, env=env, check=False,
                        capture_output=True, text=True, timeout=300)
    assert p3.returncode == 0, p3.stdout[-3000:] + p3.stderr[-3000:]
    summary = json.loads(p3.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == 2 * (after1 + 1)
    assert summary["items"] == n - summary["skipped"]
    _exactly_once(out, cfg, n)
    _, runs = query(out, "SELECT status, count(*) FROM runs GROUP BY ALL ORDER BY ALL")
    assert runs == [("finished", 1), ("running", 2)]  # the killed runs never got to finish


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, read_only: bool = False):
    """Mount a small tmpfs (root only); yields False where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True,
                            check=False).returncode == 0
    except FileNotFoundError:  # no mount program
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _visible_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and STAGING not in p.parts]


def test_unwritable_output_fails_clearly(tmp_path):
    cfg = toy_config(local=True)
    out = tmp_path / "ro"
    with _tmpfs(out, "1m", read_only=True) as mounted:
        if not mounted:
            if os.geteuid() == 0:
                # root ignores file modes: a path under a regular file cannot be created either
                (tmp_path / "file").write_text("x")
                out = tmp_path / "file" / "out"
            else:
                out.chmod(0o500)
        with pytest.raises(OutputError, match=f"output directory {out} is not writable"):
            run_job("toy", make_items(2, cfg), toy_stages(cfg), cfg, out)
        assert not out.exists() or not list(out.rglob("*"))


def test_full_disk_fails_clearly_and_keeps_commits_whole(tmp_path, monkeypatch):
    cfg = toy_config(local=True)
    cfg["shards"]["max_items_per_commit"] = 1
    out = tmp_path / "full"
    # the empty catalog alone takes about 640 KB
    with _tmpfs(out, "2m") as mounted:
        if not mounted:
            # no tmpfs without privileges: the 4th Parquet write reports a full disk instead
            from pipelines.io import files as shards
            real, calls = shards.pq.write_table, [0]

            def full(*a, **k):
                calls[0] += 1
                if calls[0] >= 4:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(*a, **k)
            monkeypatch.setattr(shards.pq, "write_table", full)
        with pytest.raises(OutputError, match=str(out)):
            run_job("toy", make_items(40, cfg, duration_s=2.0), toy_stages(cfg), cfg, out)
        ms = manifests(out)
        assert 1 <= len(ms) < 40
        assert verify(out) == []  # every committed file whole
        listed = {rel for m in ms for rel in m["files"]}
        for p in _visible_files(out):
            rel = p.relative_to(out).as_posix()
            if rel.split("/", 1)[0] in ("shards", "rejected", "rejections", "sources"):
                assert rel in listed, f"{rel} is visible but not committed"
        assert sorted(p.stem for p in (out / COMMITS).glob("*.json")) == sorted(m["commit_id"] for m in ms)
        assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())


@pytest.mark.cluster
def test_cluster_survives_losing_a_node(cluster, tmp_path):
    from ray_jobs.cluster import add_node, cluster_env, kill_node, wait_for_nodes
    cfg = _cli_config(2)
    n = 16
    out = tmp_path / "out"
    env = cluster_env({**os.environ, "PYTHONPATH": str(ROOT)})
    env.pop(FAULT_ENV, None)
    # 2 actors x 0.5 CPU + two task stages x 0.25: 1.5 CPUs, more than the head's 1, so both
    # nodes have work when the worker node dies
    p = subprocess.Popen(_toy_cmd(out, "--address", cluster.address, "--items", str(n), "--sleep", "0.4",
                                  "--commit-every", "2", "--concurrency", "2", "--work-cpus", "0.5"),
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_commits(out, p, 1)
        kill_node(cluster, 1)
        assert len(manifests(out)) < n // 2  # killed mid-job
        # a replacement joins (an autoscaler's job on a real cluster); the lost work reruns there
        add_node(cluster, cpus=1)
        log, _ = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    wait_for_nodes(cluster, 2)
    tail = [ln for ln in log.strip().splitlines() if ln.startswith("{")]
    assert tail, log[-3000:]
    summary = json.loads(tail[-1])
    assert (summary["items"], summary["examples"]) == (n, n), log[-3000:]
    _exactly_once(out, cfg, n)
    _, runs = query(out, "SELECT status FROM runs")
    assert runs == [("finished",)]


@pytest.mark.cluster
def test_ray_job_submit_runs_the_same_job(cluster, tmp_path):
    # ray[default] (the dashboard's job server) is a declared dependency: missing is a failure
    from ray_jobs.cluster import cluster_env, dashboard_available
    assert dashboard_available(), "`ray job submit` needs Ray's dashboard: reinstall with ray[data,default]"
    cfg = _cli_config(2)
    out = tmp_path / "out"
    r = subprocess.run([str(Path(sys.executable).with_name("ray")), "job", "submit", "--address",
                        cluster.dashboard_url, "--working-dir", str(ROOT), "--",
                        "python", "-m", "tandem.testing.toy", str(out), "--items", "6", "--commit-every", "2"],
                       cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout
    _exactly_once(out, cfg, 6)
