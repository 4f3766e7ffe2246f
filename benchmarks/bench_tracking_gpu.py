"""SAM2 streaming tracking on a GPU: frames per second at 640×480, per architecture and runtime.

    python benchmarks/bench_tracking_gpu.py                              # tiny + large, all runtimes
    python benchmarks/bench_tracking_gpu.py --arch large --runtime eager compile --frames 200

Runtimes (the same tracking step, segzero_ros.tracking):
  eager     the torch tracker (sam2's own modules), bfloat16 autocast as sam2's demos run it;
  compile   the same model built as SAM2VideoPredictorVOS (`vos_optimized=True`: torch.compile of the image
            encoder, memory attention, memory encoder, prompt encoder and mask decoder, max-autotune), bf16;
  tensorrt  the tensorrt tracker on engines of the exported graphs (export + engine build first, not timed).
Random weights (no download; speed does not depend on the weights), encoder input at the config's 1024 px,
one object, a disc moving across a noisy frame. Reports the median per-frame time and fps after --warmup
frames (memory full), plus peak GPU memory. SAM2's paper figures to compare with (A100, their VOS setup):
91.2 fps hiera-t, 39.5 fps hiera-l.

Needs a CUDA GPU (torch with CUDA; tensorrt for the tensorrt rows). Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.bench_tracking import ARCHITECTURES, frames

PAPER_FPS = {"tiny": 91.2, "large": 39.5}


def torch_tracker(arch: str, *, compiled: bool) -> Any:
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from segzero_ros.tracking.sam2_tracker import Sam2Tracker

    torch.manual_seed(0)
    model = build_sam2_video_predictor(ARCHITECTURES[arch], None, device="cuda", vos_optimized=compiled)
    return Sam2Tracker(model, f"{arch}-{'compile' if compiled else 'eager'}")


def tensorrt_tracker(arch: str, folder: Path) -> Any:
    import torch
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    from segzero_ros.export.onnx_export import Sam2Source, export_sam2_onnx
    from segzero_ros.export.tracking_graphs import add_tracking_graphs
    from segzero_ros.tracking.tensorrt_tracker import TensorRTTracker

    torch.manual_seed(0)
    image_model = build_sam2(ARCHITECTURES[arch], None, device="cpu").eval()
    export_sam2_onnx(Sam2Source(model=image_model, config=ARCHITECTURES[arch], checkpoint="random weights",
                                checkpoint_sha256="0" * 64), folder, report=print)
    torch.manual_seed(0)
    add_tracking_graphs(folder, build_sam2_video_predictor(ARCHITECTURES[arch], None, device="cpu"))
    return TensorRTTracker(folder, device="cuda", engine_cache_dir=str(folder / "engines"))


def run(tracker: Any, video: list[np.ndarray], warmup: int, autocast: bool) -> dict[str, float]:
    import contextlib

    import torch

    from segzero_ros.core.geometry import Box, ObjectPrompt, Point

    context = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    box, points = Box(130, 170, 270, 310), (Point(200, 240),)
    torch.cuda.reset_peak_memory_stats()
    times = []
    with context:
        tracker.start(video[0], ObjectPrompt(box, points))
        for frame in video[1:]:
            torch.cuda.synchronize()
            started = time.perf_counter()
            tracker.track(frame)  # returns a host mask: the frame's work is done
            times.append(time.perf_counter() - started)
    measured = times[warmup:]
    median = statistics.median(measured)
    return {"ms": 1000 * median, "fps": 1.0 / median, "p90_ms": 1000 * sorted(measured)[int(0.9 * len(measured))],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["tiny", "large"], choices=sorted(ARCHITECTURES))
    parser.add_argument("--runtime", nargs="+", default=["eager", "compile", "tensorrt"],
                        choices=("eager", "compile", "tensorrt"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=30, help="untimed frames (compilation, memory filling)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark needs one", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, 640×480 frames, 1024 px encoder input")
    print(f"{'arch':>6} {'runtime':>9} {'ms/frame':>9} {'p90 ms':>7} {'fps':>7} {'paper A100 fps':>15} {'peak GiB':>9}")
    video = frames(args.frames + 1)
    for arch in args.arch:
        for runtime in args.runtime:
            with tempfile.TemporaryDirectory(prefix="bench-tracking-gpu-") as scratch:
                try:
                    tracker = (tensorrt_tracker(arch, Path(scratch)) if runtime == "tensorrt"
                               else torch_tracker(arch, compiled=runtime == "compile"))
                    row = run(tracker, video, args.warmup, autocast=runtime != "tensorrt")
                    tracker.close()
                except Exception as error:  # one runtime failing (e.g. no tensorrt) must not end the others
                    print(f"{arch:>6} {runtime:>9}  failed: {type(error).__name__}: {error}", flush=True)
                    continue
            paper = PAPER_FPS.get(arch)
            print(f"{arch:>6} {runtime:>9} {row['ms']:>9.1f} {row['p90_ms']:>7.1f} {row['fps']:>7.1f} "
                  f"{paper if paper else '':>15} {row['peak_gib']:>9.2f}", flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
