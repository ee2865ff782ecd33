"""The import graph: every import follows the written graph, no cycles, no module over 400 lines.
The checker itself is tested on small trees in a temporary directory."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_layers  # noqa: E402

sys.path.pop(0)


def test_this_tree_follows_the_graph():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "check_layers.py")], check=False,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


BASE = {
    "pipelines/__init__.py": "",
    "pipelines/core/__init__.py": "",
    "pipelines/core/contracts.py": "X = 1\n",
    "pipelines/curate/__init__.py": "",
    "pipelines/curate/ingest.py": "from pipelines.core.contracts import X\n",
    "synth/__init__.py": "",
    "synth/stages.py": "from pipelines.core import contracts\n",
    "filters/__init__.py": "",
    "filters/stage.py": "import pipelines.core.contracts\n",
    "ray_jobs/__init__.py": "",
    "ray_jobs/runner.py": "from synth import stages\nfrom filters.stage import *\n",
    "bench/curate.py": "from ray_jobs import runner\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert check_layers.check(_tree(tmp_path, BASE)) == []


@pytest.mark.parametrize("rel, text, expect", [
    # siblings: curate, synth and filters never import each other
    ("synth/roundtrip.py", "def f():\n    from pipelines.curate.ingest import X\n", "synth.roundtrip (synth) imports pipelines.curate.ingest (curate)"),
    ("filters/lang.py", "import synth.stages\n", "filters.lang (filters) imports synth.stages (synth)"),
    # upward, also from inside a function
    ("pipelines/core/probe.py", "def f():\n    from ray_jobs.runner import run\n", "pipelines/core/probe.py:2"),
    # production never imports bench/ or tools/
    ("ray_jobs/cli.py", "from bench import curate\n", "ray_jobs.cli (jobs) imports bench.curate (bench)"),
    # the old namespace is gone
    ("ray_jobs/old.py", "import tandem.pipelines.core\n", "the folders are packages of their own"),
])
def test_a_forbidden_import_fails(tmp_path, rel, text, expect):
    problems = check_layers.check(_tree(tmp_path, {**BASE, rel: text}))
    assert any(expect in p for p in problems), problems


def test_a_cycle_fails_even_inside_one_layer(tmp_path):
    tree = {**BASE,
            "catalogs/__init__.py": "",
            "catalogs/catalog.py": "def f():\n    from catalogs.publish import P\n",
            "catalogs/publish.py": "from catalogs.catalog import f\nP = 1\n"}
    problems = check_layers.check(_tree(tmp_path, tree))
    assert problems == ["import cycle: catalogs.catalog -> catalogs.publish -> catalogs.catalog"], problems


def test_a_long_module_fails(tmp_path):
    problems = check_layers.check(_tree(tmp_path, {**BASE, "filters/big.py": "x = 1\n" * 401}))
    assert problems == ["filters/big.py: 401 lines (max 400)"]


def test_the_command_exits_non_zero_on_a_problem(tmp_path):
    _tree(tmp_path, {**BASE, "filters/lang.py": "import synth.stages\n"})
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "check_layers.py"), "--root", str(tmp_path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "1 import-graph problem(s)" in r.stdout, r.stdout
