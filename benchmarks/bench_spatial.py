"""3D from depth: `locate` on a 640×480 mask of 50,000 pixels (target: ≤ 5 ms on one core), and its parts.

    python benchmarks/bench_spatial.py [--repeats 50]

Prints the median and 90th percentile in milliseconds for uint16 (16UC1) and float32 (32FC1) depth, with
and without 10 % spill onto the background and 5 % holes. Runs numpy single-threaded (OMP/BLAS 1 thread).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from timing import sample_ms

from segzero_ros.core.spatial import CameraIntrinsics, locate

K = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5)


def scene(spill: bool, holes: bool, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """A 250×200 px object (50,000 px) at ~0.9 m with sensor noise, in front of a wall at 2.5 m."""
    rng = np.random.default_rng(0)
    depth = np.full((480, 640), 2.5, np.float32) + rng.normal(0, 0.004, (480, 640)).astype(np.float32)
    depth[140:340, 195:445] = 0.9 + rng.normal(0, 0.003, (200, 250)).astype(np.float32)
    mask = np.zeros((480, 640), bool)
    mask[140:340, 195:445] = True
    if spill:
        mask[140:340, 445:470] = True  # +10 %
    if holes:
        depth[rng.random((480, 640)) < 0.05] = 0
    if dtype == np.uint16:
        return mask, np.round(depth * 1000).astype(np.uint16)
    return mask, depth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"{'depth':<8} {'scene':<22} {'points':>7} {'median ms':>10} {'p90 ms':>8}")
    for dtype in (np.uint16, np.float32):
        for spill, holes in ((False, False), (True, False), (True, True)):
            mask, depth = scene(spill, holes, dtype)
            found = locate(mask, depth, K)
            samples = sorted(sample_ms(lambda mask=mask, depth=depth: locate(mask, depth, K), args.repeats))
            label = "clean" if not spill else ("10 % spill + 5 % holes" if holes else "10 % spill")
            print(f"{np.dtype(dtype).name:<8} {label:<22} {found.n_points:>7} {samples[len(samples) // 2]:>10.2f} "
                  f"{samples[int(len(samples) * 0.9)]:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
