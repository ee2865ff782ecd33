"""bench/gpu.py stops before loading anything when there is no CUDA device, saying why."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_fails_clearly_without_cuda():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu import cuda_problem
    if cuda_problem() is None:
        pytest.skip("a CUDA device is here: the bench would run")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--only", "synth"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "needs a CUDA GPU" in r.stderr and "CUDA device" in r.stderr
    assert "== synthesis" not in r.stdout  # nothing started
