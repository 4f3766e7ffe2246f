"""Segmenters and trackers side by side on this machine's CPU (a benchmark, not a test: it prints figures).

    python benchmarks/bench_segmenters.py                               # all four, 1 thread
    python benchmarks/bench_segmenters.py --models edgetam sam2-t --frames 10 --threads 2 --json out.json

Real architectures at their native input size (SAM2 1024 px, SAM3 1008 px, EdgeTAM 1024 px) with seeded random
weights (no download: latency does not depend on the weights), one 640×480 frame with a moving disc: the image
encode (`set_image`), one decode (box + 2 points, multimask), and one tracked frame once the tracker has
--frames frames behind it (memory attention reading up to 6 memory frames), median of --repeats. Also the
parameters and the tracker's memory held. SAM2 runs through the sam2 package (the `sam2` backend), SAM3's tracker
and EdgeTAM through transformers (the `sam3` / `edgetam` backends).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_tracking import frames as moving_disc

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("sam2-t", "sam2-l", "sam3", "edgetam")
SAM2_CONFIGS = {"sam2-t": "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2-l": "configs/sam2.1/sam2.1_hiera_l.yaml"}


def build(name: str, device: str = "cpu", dtype: Any = None, compile: bool = False) -> tuple[Any, Any, int]:
    """(segmenter, tracker, parameters) of one architecture with random weights, on `device` (SAM2 keeps fp32
    weights and runs under bf16 autocast on CUDA, as its backend does; the transformers models take `dtype`).
    `compile`: as `segmenter.compile` does it (the same parts, then the same warm-ups)."""
    segmenter, tracker, parameters = _build(name, device, dtype, compile)
    if compile:
        from segzero_ros.segmentation.compiling import warm_up_segmenter, warm_up_tracker

        warm_up_segmenter(segmenter)
        warm_up_tracker(tracker)
    return segmenter, tracker, parameters


def _build(name: str, device: str, dtype: Any, compile: bool) -> tuple[Any, Any, int]:
    import torch

    from segzero_ros.segmentation import compiling

    torch.manual_seed(0)
    dtype = torch.float32 if dtype is None else dtype
    if name in SAM2_CONFIGS:
        from sam2.build_sam import build_sam2, build_sam2_video_predictor
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from segzero_ros.segmentation.sam2_backend import Sam2Segmenter
        from segzero_ros.tracking.sam2_tracker import Sam2Tracker

        image_model = build_sam2(SAM2_CONFIGS[name], None, device=device).eval()
        video_model = build_sam2_video_predictor(SAM2_CONFIGS[name], None, device=device)
        if compile:
            compiling.compile_parts(image_model, compiling.SAM2_IMAGE_PARTS)
            compiling.compile_parts(video_model, compiling.SAM2_VIDEO_PARTS)
        segmenter = Sam2Segmenter(SAM2ImagePredictor(image_model), name)
        tracker = Sam2Tracker(video_model, name)
        return segmenter, tracker, sum(p.numel() for p in image_model.parameters())
    import transformers

    from segzero_ros.segmentation.transformers_sam import EDGETAM, SAM3, LoadedSam, TransformersSamSegmenter
    from segzero_ros.tiny.sam_transformers import EDGETAM as TINY_EDGETAM
    from segzero_ros.tracking.transformers_sam_tracker import TransformersSamTracker

    hf: Any = transformers
    classes = SAM3 if name == "sam3" else EDGETAM
    if name == "sam3":
        video_config = hf.Sam3TrackerVideoConfig()
        image_processor = hf.Sam3ImageProcessor()
    else:  # the released EdgeTAM: RepViT-M1 backbone (transformers' default names it wrongly, see tiny/)
        from segzero_ros.tiny.sam_transformers import tiny_video_config

        released = tiny_video_config(TINY_EDGETAM).vision_config.backbone_config
        video_config = hf.EdgeTamVideoConfig(vision_config=hf.EdgeTamVisionConfig(backbone_config=released))
        image_processor = hf.Sam2ImageProcessor()
    video_model = getattr(hf, classes.video_model)(video_config).eval().to(device=device, dtype=dtype)
    image_model = getattr(hf, classes.image_model)(video_config).eval().to(device=device, dtype=dtype)
    if compile:
        compiling.compile_parts(image_model, compiling.TRANSFORMERS_IMAGE_PARTS)
        compiling.compile_parts(video_model, compiling.TRANSFORMERS_VIDEO_PARTS)
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    size = image_processor.size
    video_processor = getattr(hf, classes.video_processor)(
        image_processor=image_processor,
        video_processor=Sam2VideoVideoProcessor(size=dict(size), image_mean=image_processor.image_mean,
                                                image_std=image_processor.image_std))
    where = torch.device(device)
    segmenter = TransformersSamSegmenter(LoadedSam(image_model, getattr(hf, classes.processor)(
        image_processor=image_processor), where, dtype, name))
    tracker = TransformersSamTracker(LoadedSam(video_model, video_processor, where, dtype, name))
    return segmenter, tracker, sum(p.numel() for p in image_model.parameters())


def measure(name: str, frames: int, repeats: int) -> dict[str, Any]:
    from segzero_ros.core.geometry import Box, ObjectPrompt, Point

    built = time.perf_counter()
    segmenter, tracker, parameters = build(name)
    build_s = time.perf_counter() - built
    clips = moving_disc(frames + repeats)
    prompt = ObjectPrompt(Box(130, 170, 270, 310), (Point(200, 240), Point(215, 250)))
    encode, decode = [], []
    for frame in clips[:repeats]:
        started = time.perf_counter()
        segmenter.set_image(frame)
        encode.append(time.perf_counter() - started)
        started = time.perf_counter()
        segmenter.segment(prompt)
        decode.append(time.perf_counter() - started)
    segmenter.close()
    tracker.start(clips[0], prompt)
    tracked = []
    for index, frame in enumerate(clips[1:], start=1):
        started = time.perf_counter()
        tracker.track(frame)
        if index >= frames:
            tracked.append(time.perf_counter() - started)
    held = getattr(tracker, "stored_bytes", 0)
    tracker.close()
    return {"model": name, "parameters_m": round(parameters / 1e6, 1), "build_s": round(build_s, 1),
            "encode_ms": statistics.median(encode) * 1000, "decode_ms": statistics.median(decode) * 1000,
            "tracked_frame_ms": statistics.median(tracked) * 1000, "tracker_memory_mb": round(held / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--frames", type=int, default=8, help="frames tracked before the timed ones")
    parser.add_argument("--repeats", type=int, default=2, help="timed encodes/decodes/tracked frames")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    print(f"CPU, {args.threads} thread(s), 640×480 frame, native input sizes, random weights, median of "
          f"{args.repeats}")
    print(f"{'model':>8} {'params M':>9} {'encode ms':>10} {'decode ms':>10} {'tracked ms':>11} {'memory MB':>10}")
    for name in args.models:
        row = measure(name, args.frames, args.repeats)
        rows.append(row)
        print(f"{name:>8} {row['parameters_m']:>9} {row['encode_ms']:>10.0f} {row['decode_ms']:>10.1f} "
              f"{row['tracked_frame_ms']:>11.0f} {row['tracker_memory_mb']:>10}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
