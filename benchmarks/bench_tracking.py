"""SAM2 streaming tracking cost on this machine's CPU: one tracked frame (image encoder + memory attention +
decoder + memory encoder) against one `set_image` + `segment` of the image segmenter, per architecture and
backend, with the time of each stage.

    python benchmarks/bench_tracking.py                         # hiera-t at 256 px (the tiny test size)
    python benchmarks/bench_tracking.py --arch tiny large --image-size 1024 --frames 20 --backend torch onnxruntime

Real architectures with seeded random weights (no download; latency does not depend on the weights), a
640×480 frame with a moving disc, --threads CPU threads. Prints medians in ms after the memory window has
filled (so memory attention reads its full 6 frames + 15 pointers), per stage (encoder, memory attention,
heads, memory encoder; the rest is pre/post-processing), and the frames held. The onnxruntime rows export
the graphs first (not timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

ARCHITECTURES = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def frames(count: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    background = rng.integers(40, 120, (height, width, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    out = []
    for index in range(count):
        frame = background.copy()
        frame[(xs - 200 - 6 * index) ** 2 + (ys - 240) ** 2 <= 70 ** 2] = (220, 40, 40)
        out.append(frame)
    return out


STAGES = ("encoder", "memory_attention", "heads", "memory")


def build_models(arch: str, image_size: int) -> tuple[object, object]:
    import torch
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    config = ARCHITECTURES[arch]
    overrides = [f"++model.image_size={image_size}"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        video_model = build_sam2_video_predictor(config, None, device="cpu", hydra_overrides_extra=overrides)
        torch.manual_seed(0)
        image_model = build_sam2(config, None, device="cpu", hydra_overrides_extra=overrides).eval()
    return video_model, image_model


def torch_tracker(video_model: Any, arch: str, stage_ms: dict[str, float]) -> Any:
    """The torch tracker with each stage's time added to stage_ms (sam2's own calls, wrapped)."""
    from segzero_ros.tracking.sam2_tracker import Sam2Tracker

    def timed(stage: str, call: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                stage_ms[stage] += (time.perf_counter() - started) * 1000
        return run

    video_model.forward_image = timed("encoder", video_model.forward_image)
    video_model.memory_attention.forward = timed("memory_attention", video_model.memory_attention.forward)
    video_model._forward_sam_heads = timed("heads", video_model._forward_sam_heads)
    video_model._encode_new_memory = timed("memory", video_model._encode_new_memory)
    return Sam2Tracker(video_model, arch)


def onnx_tracker(video_model: Any, image_model: Any, arch: str, stage_ms: dict[str, float], *, threads: int,
                 folder: Path) -> Any:
    from segzero_ros.export.onnx_export import Sam2Source, export_sam2_onnx
    from segzero_ros.export.tracking_graphs import add_tracking_graphs
    from segzero_ros.tracking.onnx_tracker import OnnxTracker

    export_sam2_onnx(Sam2Source(model=image_model, config=ARCHITECTURES[arch], checkpoint="random weights",
                                checkpoint_sha256="0" * 64), folder)
    add_tracking_graphs(folder, video_model)
    tracker = OnnxTracker(folder, cpu_threads=threads)
    run = tracker._run
    names = {"encoder": "encoder", "memory_attention": "memory_attention", "prompted_heads": "heads",
             "tracking_heads": "heads", "prompted_memory": "memory", "memory": "memory"}

    def timed_run(role: str, *inputs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(role, *inputs)
        finally:
            stage_ms[names[role]] += (time.perf_counter() - started) * 1000

    tracker._run = timed_run  # type: ignore[method-assign]
    return tracker


def bench(arch: str, image_size: int, count: int, backend: str, threads: int) -> dict[str, Any]:
    import tempfile

    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from segzero_ros.core.geometry import Box, ObjectPrompt, Point
    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter, sam2_feature_sizes

    video_model, image_model = build_models(arch, image_size)
    predictor = SAM2ImagePredictor(image_model)
    predictor._bb_feat_sizes = sam2_feature_sizes(image_size)
    segmenter = Sam2Segmenter(predictor, name=arch)
    stage_ms = dict.fromkeys(STAGES, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as scratch:
        tracker = (torch_tracker(video_model, arch, stage_ms) if backend == "torch"
                   else onnx_tracker(video_model, image_model, arch, stage_ms, threads=threads, folder=Path(scratch)))
        video = frames(count + 1)
        box, points = Box(130, 170, 270, 310), (Point(200, 240),)

        segment_ms = []
        for frame in video[:4]:
            started = time.perf_counter()
            segmenter.set_image(frame)
            segmenter.segment(ObjectPrompt(box, points))
            segment_ms.append((time.perf_counter() - started) * 1000)
        tracker.start(video[0], ObjectPrompt(box, points))
        track_ms, stages = [], []
        for frame in video[1:]:
            stage_ms.update(dict.fromkeys(STAGES, 0.0))
            started = time.perf_counter()
            tracker.track(frame)
            track_ms.append((time.perf_counter() - started) * 1000)
            stages.append(dict(stage_ms))
        kept = tracker.stored_frames
        tracker.close()
    filled = slice(16, None) if len(track_ms) > 16 else slice(-3, None)
    return {"segment_ms": statistics.median(segment_ms[1:]), "track_ms": statistics.median(track_ms[filled]),
            "first_track_ms": track_ms[0], "stored_frames": kept,
            **{f"{stage}_ms": statistics.median(row[stage] for row in stages[filled]) for stage in STAGES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["tiny"], choices=sorted(ARCHITECTURES))
    parser.add_argument("--backend", nargs="+", default=["torch"], choices=("torch", "onnxruntime"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=24, help="tracked frames (>16 to time a full memory)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), 640×480 frames, encoder input {args.image_size} px; medians in ms")
    print(f"{'arch':>10} {'backend':>12} {'segment':>8} {'track':>7} {'encoder':>8} {'mem attn':>9} {'heads':>6} "
          f"{'memory':>7} {'1st track':>10} {'frames kept':>12}")
    for arch in args.arch:
        for backend in args.backend:
            row = bench(arch, args.image_size, args.frames, backend, args.threads)
            print(f"{arch:>10} {backend:>12} {row['segment_ms']:>8.0f} {row['track_ms']:>7.0f} "
                  f"{row['encoder_ms']:>8.0f} {row['memory_attention_ms']:>9.0f} {row['heads_ms']:>6.0f} "
                  f"{row['memory_ms']:>7.0f} {row['first_track_ms']:>10.0f} {row['stored_frames']:>12}", flush=True)


if __name__ == "__main__":
    main()
