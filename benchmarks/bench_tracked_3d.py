"""What 3D adds to a tracked frame at 640×480: one tracked frame (the tiny SAM2 tracker) without and with the
node's per-frame 3D work — the paired depth decoded (raw 16UC1 / 32FC1 or image_transport's compressedDepth),
`locate` on the frame's mask, the oriented box, and the collision object's change — printed side by side.

    python benchmarks/bench_tracked_3d.py [--frames 20]

A benchmark, not a test: it prints figures. One thread (numpy and torch). The scene: a 250×200 px object at
~0.9 m in front of a wall, sliding; the tracker (random weights) tracks each frame, and the 3D step runs on the
object's true 50,000-pixel mask of that frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.core.planning_scene import PlanningScene
from segzero_ros.core.spatial import CameraIntrinsics, locate
from segzero_ros.image_messages import compress_depth, compressed_depth_to_array

K = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5)


def frames(count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames and float depth (m) of an orange object sliding 4 px per frame."""
    rng = np.random.default_rng(0)
    rgbs, depths = [], []
    for index in range(count):
        x = 150 + 4 * index
        rgb = np.full((480, 640, 3), 60, np.uint8)
        rgb[140:340, x:x + 250] = (220, 120, 40)
        depth = np.full((480, 640), 2.5, np.float32) + rng.normal(0, 0.004, (480, 640)).astype(np.float32)
        depth[140:340, x:x + 250] = 0.9 + rng.normal(0, 0.003, (200, 250)).astype(np.float32)
        rgbs.append(rgb)
        depths.append(depth)
    return rgbs, depths


def depth_inputs(depth: np.ndarray) -> dict[str, object]:
    """The same depth as each input the node accepts (a raw array is a view of the message: no decode)."""
    millimetres = np.round(depth * 1000).astype(np.uint16)
    return {"16UC1": millimetres, "32FC1": depth,
            "16UC1 compressedDepth": compress_depth(millimetres), "32FC1 compressedDepth": compress_depth(depth)}


def three_d(mask: np.ndarray, source: object, scene: PlanningScene) -> None:
    if isinstance(source, tuple):
        from types import SimpleNamespace

        depth = compressed_depth_to_array(SimpleNamespace(format=source[0], data=source[1]))
    else:
        depth = source  # type: ignore[assignment]
    found = locate(mask, depth, K)
    scene.place("bench", [found.oriented_box()], "camera")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    import torch

    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2
    from segzero_ros.tracking import build_tracker

    torch.set_num_threads(1)
    rgbs, depths = frames(args.frames + 1)
    tracker = build_tracker(ensure_tiny_sam2().segmenter_config(device="cpu"))
    tracker.start(rgbs[0], ObjectPrompt(Box(150, 140, 399, 339), (Point(275, 240),)))
    tracked_ms = []
    for rgb in rgbs[1:]:
        started = time.perf_counter()
        tracker.track(rgb)
        tracked_ms.append((time.perf_counter() - started) * 1e3)
    tracker.close()
    # The 3D step runs on each frame's true object mask (50,000 px): the random-weight tracker's own masks have
    # arbitrary sizes, and 3D's cost grows with the mask (~8 ms for a whole 640×480 frame).
    masks = [np.all(rgb == (220, 120, 40), axis=-1) for rgb in rgbs[1:]]

    track = statistics.median(tracked_ms)
    print(f"CPU, 1 thread, 640×480, tiny SAM2 tracker (hiera-t, 256 px), {args.frames} frames, medians")
    print(f"{'depth input':<24} {'3D ms':>7} {'tracked frame ms':>17} {'with 3D ms':>11} {'3D share':>9}")
    print(f"{'(3D off)':<24} {'—':>7} {track:>17.1f} {track:>11.1f} {'—':>9}")
    for name in ("16UC1", "32FC1", "16UC1 compressedDepth", "32FC1 compressedDepth"):
        scene = PlanningScene()
        scene.command("bench", [None], "camera")
        cost = []
        for mask, depth in zip(masks, depths[1:], strict=True):
            source = depth_inputs(depth)[name]
            started = time.perf_counter()
            three_d(mask, source, scene)
            cost.append((time.perf_counter() - started) * 1e3)
        spatial = statistics.median(cost)
        print(f"{name:<24} {spatial:>7.2f} {track:>17.1f} {track + spatial:>11.1f} {spatial / (track + spatial):>9.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
