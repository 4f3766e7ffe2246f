"""The benchmark scripts start and explain themselves (they print figures, so they are not tests of speed):
each imports, parses its options, and the GPU one says clearly that it needs a GPU where there is none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["bench_tracking.py", "bench_tracking_gpu.py"])
def test_help(script):
    completed = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "--arch" in completed.stdout


def test_gpu_benchmark_without_a_gpu_says_so():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the benchmark itself")
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "bench_tracking_gpu.py"), "--arch", "tiny"],
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 2 and "no CUDA GPU" in completed.stderr


def test_families_benchmark_explains_itself():
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "bench_families.py"), "--help"], capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "--frames" in completed.stdout and "Visual tokens per frame size" in completed.stdout


def test_segmenters_benchmark_explains_itself():
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "bench_segmenters.py"), "--help"],
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "sam3" in completed.stdout and "edgetam" in completed.stdout and "--frames" in completed.stdout


def test_tracked_3d_benchmark_explains_itself():
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "bench_tracked_3d.py"), "--help"],
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "compressedDepth" in completed.stdout and "--frames" in completed.stdout
