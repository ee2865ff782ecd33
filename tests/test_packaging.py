"""A plain (non-editable) install: the wheel holds the tree as it reads, and imports from the
repository root give the same modules under the same names (what `ray job submit --working-dir .`
gives every worker)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["pipelines", "synth", "filters", "catalogs", "ray_jobs", "tandem"]
PROBE = """
import importlib, json, sys
names = ["pipelines.core.contracts", "pipelines.train", "filters.dedup", "catalogs.catalog",
         "ray_jobs.cli", "synth.tts.registry", "tandem.testing.toy"]
mods = {n: importlib.import_module(n).__file__ for n in names}
from pipelines.core.config import load_config
load_config(None)  # the packaged defaults/*.yaml are found
files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
files = [f for f in files if f and any(f"/{p}/" in f for p in ['pipelines', 'synth', 'filters', 'catalogs', 'ray_jobs', 'tandem'])]
print(json.dumps({"mods": mods, "twice": sorted({f for f in files if files.count(f) > 1})}))
"""


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    # build from a copy: nothing is written into the checkout
    src = tmp_path_factory.mktemp("src")
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, src / name)
    for p in PACKAGES:
        shutil.copytree(ROOT / p, src / p, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("tandem-*.whl")
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(whl) as z:  # a wheel install is an unzip (purelib, no scripts needed here)
        z.extractall(target)
    return whl, target


def test_the_wheel_holds_every_module_at_its_path(wheel_dir):
    whl, _ = wheel_dir
    names = set(zipfile.ZipFile(whl).namelist())
    want = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
            if p.suffix in {".py", ".yaml"} and "__pycache__" not in p.parts}
    assert want <= names, sorted(want - names)[:10]
    assert not any(n.startswith(("tests/", "bench/", "tools/")) for n in names)


@pytest.mark.parametrize("cwd_on_path", [False, True], ids=["installed-only", "repo-root-first"])
def test_plain_install_imports_from_the_repo_root(wheel_dir, cwd_on_path):
    import json
    _, target = wheel_dir
    # -P: the working directory is not put first, so the installed copy alone must import;
    # without it the checkout comes first, under the same names
    args = [sys.executable] + ([] if cwd_on_path else ["-P"]) + ["-c", PROBE]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(target)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    home = ROOT if cwd_on_path else target
    for name, f in got["mods"].items():
        assert Path(f).is_relative_to(home), (name, f)
    assert got["twice"] == [], "a module loaded under two names"
