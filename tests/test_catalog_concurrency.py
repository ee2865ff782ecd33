"""Researchers and jobs share an output: a reader holding the catalog never stops a job, a broken
catalog is reported and repaired later, and one writer at a time holds the output."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest
from tandem.catalogs.catalog import build, catalog_path, query
from tandem.ray_jobs.runner import run_job

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
