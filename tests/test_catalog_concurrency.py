"""Researchers and jobs share an output: a reader holding the catalog never stops a job, a broken
catalog is reported and repaired later, and one writer at a time holds the output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest
from catalogs.catalog import build, catalog_path, query
from pipelines.io.files import iter_rows
from pipelines.store.commit import verify
from pipelines.store.lock import LockHeld, LockLost, OutputLock, read_lock
from pipelines.store.writer import JobWriter
from ray_jobs.runner import run_job

from tandem.testing.fixtures import tone_item
from tandem.testing.toy import expected_example_ids, make_items, toy_config, toy_stages

READER = textwrap.dedent("""
    import sys, duckdb
    path = sys.argv[1]
    con = duckdb.connect(path, read_only=True)
    print(con.execute("SELECT count(*) FROM examples").fetchone()[0], flush=True)
    for line in sys.stdin:  # the test says when to look again
        if line.strip() == "same":
            print(con.execute("SELECT count(*) FROM examples").fetchone()[0], flush=True)
        elif line.strip() == "reopen":
            con.close()
            con = duckdb.connect(path, read_only=True)
            print(con.execute("SELECT count(*) FROM examples").fetchone()[0], flush=True)
""")


def _ask(reader: subprocess.Popen, what: str) -> int:
    reader.stdin.write(what + "\n")
    reader.stdin.flush()
    return int(reader.stdout.readline())


def test_job_completes_while_a_reader_holds_the_catalog(tmp_path):
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    run_job("toy", make_items(3, cfg), toy_stages(cfg), cfg, out)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(catalog_path(out))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert int(reader.stdout.readline()) == 3
        # the reader really holds DuckDB's lock: a writer in this process is refused
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(catalog_path(out)))
        res = run_job("toy", make_items(8, cfg), toy_stages(cfg), cfg, out)
        assert (res["items"], res["skipped"]) == (5, 3)
        assert res["catalog"]["problems"] == [] and res["catalog"]["publications"] >= 2
        assert _ask(reader, "same") == 3  # its open file is the one it opened
        assert _ask(reader, "reopen") == 8  # reopening shows the new rows
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    _, rows = query(out, "SELECT count(DISTINCT example_id) FROM examples")
    assert rows == [(8,)]
    _, runs = query(out, "SELECT status, count(*) FROM runs GROUP BY ALL")
    assert runs == [("finished", 2)]


def test_catalog_failure_is_reported_not_fatal_and_build_repairs(tmp_path):
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    (out / "_state" / "catalog.duckdb").mkdir(parents=True)  # the working copy cannot be opened
    res = run_job("toy", make_items(4, cfg), toy_stages(cfg), cfg, out)
    assert res["examples"] == 4 and res["commits"] == 1
    problems = res["catalog"]["problems"]
    assert problems and all(f"tandem catalog build {out}" in p for p in problems)
    assert not catalog_path(out).exists()
    build(out)  # the repair the message names works while the working copy is still broken
    _, rows = query(out, "SELECT example_id FROM examples")
    assert {r[0] for r in rows} == expected_example_ids(4, cfg)


# ---- one writer per output ---------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from pipelines.store.lock import OutputLock
    lock = OutputLock(sys.argv[1], run_id="holder-run", job="curate", lease_s=float(sys.argv[2])).acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    sys.stdin.readline()  # held until the test closes its pipe
    lock.release()
""")


def test_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    run_job("toy", make_items(2, cfg), toy_stages(cfg), cfg, out)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # a job in another process holds the output (lease 2 s, renewed every 0.5 s) until told to stop
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), "2", "2.5"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        with pytest.raises(LockHeld, match=rf"run holder-run \(pid {p.pid} on host {socket.gethostname()}"):
            run_job("toy", make_items(4, cfg), toy_stages(cfg), cfg, out)
        # on the command line: a one-line error naming the holder, no traceback
        from ray_jobs.cli import main
        assert main(["filter", str(out)]) == 2
        assert "is being written by another job curate run holder-run" in capsys.readouterr().err
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    after = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert after == before  # the refused job wrote nothing: no run record, no staging, no catalog change
    res = run_job("toy", make_items(4, cfg), toy_stages(cfg), cfg, out)  # released: the next job runs
    assert (res["items"], res["skipped"]) == (2, 2)
    assert read_lock(out) is None


def test_crashed_holder_is_taken_over_and_its_staging_dropped(tmp_path):
    cfg = toy_config(local=True)
    out = tmp_path / "out"
    # a holder on this host that died (its pid is gone) is taken over at once ...
    p = subprocess.run([sys.executable, "-c", HOLDER.replace("lock.release()", "import os; os._exit(9)"),
                        str(out), "600", "0"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       check=False)
    assert p.returncode == 9 and read_lock(out)["run_id"] == "holder-run"
    (out / "_staging" / "000000-crashed" / "shards").mkdir(parents=True)
    (out / "_staging" / "000000-crashed" / "shards" / "x.parquet").write_bytes(b"half")
    res = run_job("toy", make_items(2, cfg), toy_stages(cfg), cfg, out)
    assert res["recovered"]["dropped_uncommitted"] == 1 and res["examples"] == 2
    # ... one on another host only when its lease has run out
    stale = {"host": "elsewhere", "pid": 1, "run_id": "gone", "job": "curate", "token": "t", "lease_s": 1.0,
             "renewed_at": time.time() + 30, "renewed_iso": "now"}
    (out / "_lock.json").write_text(json.dumps(stale))
    with pytest.raises(LockHeld, match="run gone .*host elsewhere"):
        run_job("toy", make_items(3, cfg), toy_stages(cfg), cfg, out)
    stale["renewed_at"] = time.time() - 2
    (out / "_lock.json").write_text(json.dumps(stale))
    assert run_job("toy", make_items(3, cfg), toy_stages(cfg), cfg, out)["items"] == 1


def test_a_writer_whose_lease_was_taken_stops_before_its_commit_point(tmp_path):
    from pipelines.store.commit import manifests
    w = JobWriter.from_config(tmp_path, {"shards": {"max_items_per_commit": 100}}, run_id="slow", job="t")
    w.add(tone_item(0))
    w.lock._stop.set()  # paused past its lease: no heartbeat ...
    lock = json.loads((tmp_path / "_lock.json").read_text())
    lock["renewed_at"] -= 3600
    (tmp_path / "_lock.json").write_text(json.dumps(lock))
    other = OutputLock(tmp_path, run_id="new", job="t", lease_s=60)
    other.acquire()  # ... so another job took over
    try:
        with pytest.raises(LockLost, match="lost its lock to job t run new"):
            w.commit()
        assert manifests(tmp_path) == [] and not list((tmp_path / "_staging").iterdir())
    finally:
        other.release()


def test_commit_order_is_the_sequence_not_the_clock(tmp_path):
    from pipelines.store.commit import COMMITS, manifests
    w = JobWriter.from_config(tmp_path, {"shards": {"max_items_per_commit": 1}}, run_id="a", job="t")
    for i in range(3):
        w.add(tone_item(i))
    w.close()
    for p in (tmp_path / COMMITS).glob("*.json"):  # clocks that disagree change nothing
        m = json.loads(p.read_text())
        m["created_at"] = f"2020-01-0{3 - m['seq']}T00:00:00.000000Z"
        p.write_text(json.dumps(m))
    assert [m["seq"] for m in manifests(tmp_path)] == [0, 1, 2]
    w2 = JobWriter.from_config(tmp_path, {"shards": {"max_items_per_commit": 1}}, run_id="b", job="t")
    w2.add(tone_item(3))
    w2.close()
    assert [m["seq"] for m in manifests(tmp_path)] == [0, 1, 2, 3]


def test_retired_files_stay_until_gc_after_the_grace_period(tmp_path):
    import glob

    from pipelines.store.commit import collect_garbage, committed_files, locate, manifests, retired_path
    from ray_jobs.gc import parse_duration
    w = JobWriter.from_config(tmp_path, {"shards": {"max_items_per_commit": 10}}, run_id="a", job="t")
    for i in range(2):
        w.add(tone_item(i))
    w.commit()
    old = committed_files(tmp_path, "shards")
    w.add_rows("shards", list(iter_rows(old)))
    w.retire(old)
    w.close()
    rel = old[0].relative_to(tmp_path).as_posix()
    moved = retired_path(tmp_path, manifests(tmp_path)[-1]["commit_id"], rel)
    # out of shards/ (the glob is the data), not deleted: a trainer that listed it can still read it
    assert not old[0].exists() and moved.exists() and old[0] not in committed_files(tmp_path, "shards")
    assert locate(tmp_path, rel) == moved and len(glob.glob(str(tmp_path / "shards" / "*.parquet"))) == 1
    assert collect_garbage(tmp_path, parse_duration("7d"))["deleted"] == []
    assert moved.exists()
    later = time.time() + parse_duration("8d")
    dry = collect_garbage(tmp_path, parse_duration("7d"), dry_run=True, now=later)
    assert dry["deleted"] == [rel] and moved.exists()
    res = collect_garbage(tmp_path, parse_duration("7d"), now=later)
    assert res["deleted"] == dry["deleted"] and not moved.exists() and res["bytes"] > 0
    assert not (tmp_path / "_retired").exists() or not any((tmp_path / "_retired").iterdir())
    assert len(manifests(tmp_path)) == 2 and verify(tmp_path) == []
    build(tmp_path)  # the catalog rebuilds without the deleted file
    _, rows = query(tmp_path, "SELECT count(*) FROM examples")
    assert rows == [(2,)]
    with pytest.raises(ValueError, match="duration"):
        parse_duration("a week")
