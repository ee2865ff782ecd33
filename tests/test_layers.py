"""The layout: imports flow one way down the layers, and no module outgrows 400 lines."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_import_runs_up_a_layer():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "check_layers.py")], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_checker_catches_an_upward_import(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_layers
    finally:
        sys.path.pop(0)
    bad = ROOT / "pipelines" / "core" / "_layer_probe.py"
    bad.write_text("def f():\n    from tandem.ray_jobs.runner import run_job\n")
    try:
        problems = check_layers.check()
    finally:
        bad.unlink()
    assert any("_layer_probe.py:2" in p and "a layer above" in p for p in problems), problems


def test_installed_under_one_namespace():
    import tandem.pipelines.core.contracts as c
    from tandem.pipelines.train import ShardDataset  # noqa: F401
    assert c.__name__ == "tandem.pipelines.core.contracts"
    r = subprocess.run([sys.executable, "-c", "import pipelines"], check=False, capture_output=True, text=True, cwd="/")
    assert r.returncode != 0, "a top-level `pipelines` package is installed beside tandem"
