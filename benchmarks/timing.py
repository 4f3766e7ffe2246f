"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def sample_ms(function: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls, after `warmup` calls that allocate and pick kernels."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def median_ms(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    return statistics.median(sample_ms(function, repeats, warmup))
