"""Every python/sql/bash/sh code block of README.md and docs/*.md runs against a small real output
(tandem.testing.outputs.dialogue_output, at ./OUT; ./out names it too, as docs/CLUSTER.md does), in
document order. Results are checked: catalog queries return rows and no all-NULL column; a
`datasets` dataset or a query over OUT/shards/*.parquet has as many rows as the catalog's
`accepted` view. A block that cannot run here is marked in the docs on the line above it with
`<!-- ci-skip: NAME: reason -->`, and only the names in SKIPPED may be skipped."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from catalogs import catalog

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "sql", "bash", "sh"}
SKIPPED = {
    "setup-and-demo": "installs the environment and runs the whole demo (minutes; tests/test_demo.py runs the demo)",
    "command-synopsis": "a synopsis with placeholders (INPUT, [options]); each command has its own tests",
    "benchmarks": "benchmarks take minutes each",
    "evaluation": "fetches Debian packages and runs the chain on 22 min of audio (tests/test_realspeech.py runs a small set)",
    "cluster-manual": "starts Ray nodes (docs/CLUSTER.md; tests/test_runner.py runs a two-node cluster)",
    "cluster-helper": "starts and kills Ray nodes (tests/test_runner.py)",
    "cluster-jobs": "needs a running Ray cluster and raw audio",
    "cluster-submit": "needs a Ray cluster's job server",
    "cluster-crash": "kills a driver on a running cluster (tests/test_faults.py does it locally)",
    "resume-fragment": "a fragment of a training loop (bench/train_loop_example.py --verify runs it in full)",
    "training-loop-fragment": "a fragment of a training loop (bench/train_loop_example.py --verify runs it in full)",
}
_FENCE = re.compile(r"^\s*```(\S*)\s*$")
_SKIP = re.compile(r"<!--\s*ci-skip:\s*([\w-]+)\s*:\s*(.+?)\s*-->")


def blocks() -> list[dict]:
    out = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = _FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not _FENCE.match(lines[j]):
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            skip = _SKIP.search(prev)
            out.append({"doc": doc.relative_to(ROOT).as_posix(), "line": i + 1, "lang": m.group(1),
                        "code": "\n".join(lines[i + 1:j]), "skip": skip.group(1) if skip else None})
            i = j + 1
    return out


BLOCKS = [b for b in blocks() if b["lang"] in RUN]


def test_skips_are_named_and_explained():
    marked = [b["skip"] for b in blocks() if b["skip"]]
    assert sorted(set(marked)) == sorted(SKIPPED)  # no silent skip, no stale reason
    assert all(b["lang"] in RUN for b in blocks() if b["skip"])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from tandem.testing.outputs import dialogue_output
    d = tmp_path_factory.mktemp("docs")
    dialogue_output(d / "OUT")
    (d / "out").symlink_to("OUT")
    return d


def _accepted(work) -> int:
    return catalog.query(work / "OUT", "SELECT count(*) FROM accepted")[1][0][0]


def _check_rows(what: str, cols: list[str], rows: list) -> None:
    assert rows, f"{what}: no rows"
    for i, c in enumerate(cols):
        assert any(r[i] is not None for r in rows), f"{what}: column {c!r} is NULL in every row"


def _check_sql(work, sql: str) -> None:
    """A catalog query from the docs: rows, no all-NULL column; over the shards glob, the
    accepted count."""
    con = duckdb.connect(str(work / "OUT" / "catalog.duckdb"), read_only=True)
    try:
        for st in duckdb.extract_statements(sql):
            cur = con.execute(st.query)
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            _check_rows(st.query.strip(), cols, rows)
            if "OUT/shards/*.parquet" in st.query and "count(" not in st.query.lower():
                assert len(rows) == _accepted(work), st.query
            elif "OUT/shards/*.parquet" in st.query:
                assert rows[0][0] == _accepted(work), st.query
    finally:
        con.close()


def _run_bash(work, code: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    # each catalog query of the block, checked on its rows
    for line in code.replace("\\\n", " ").splitlines():
        try:
            argv = shlex.split(line, comments=True)
        except ValueError:
            continue
        if argv[:3] == ["tandem", "catalog", "query"]:
            with_out = argv[3].rstrip("/")
            assert with_out in ("OUT", "out"), line
            _check_sql(work, argv[4])


def _run_python(work, code: str) -> None:
    import datasets
    ns = {"__name__": "__main__"}
    exec(compile(code, "<docs block>", "exec"), ns)  # noqa: S102 - the docs' own code
    for name, v in ns.items():
        if isinstance(v, datasets.Dataset):
            assert len(v) == _accepted(work), name
            for c in v.column_names:
                assert any(x is not None for x in v[c]), f"{name}: column {c!r} is None in every row"


@pytest.mark.parametrize("block", BLOCKS, ids=[b["skip"] or f"{b['doc']}:{b['line']}" for b in BLOCKS])
def test_recipe_runs(block, work, monkeypatch):
    if block["skip"]:
        pytest.skip(f"{block['skip']}: {SKIPPED[block['skip']]}")
    monkeypatch.chdir(work)  # the docs name the output OUT, relative
    if block["lang"] in ("bash", "sh"):
        _run_bash(work, block["code"])
    elif block["lang"] == "sql":
        _check_sql(work, block["code"])
    else:
        _run_python(work, block["code"])
