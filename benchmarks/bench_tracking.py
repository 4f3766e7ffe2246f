"""SAM2 streaming tracking cost on this machine's CPU: one tracked frame (image encoder + memory attention +
decoder + memory encoder) against one `set_image` + `segment` of the image segmenter, per architecture.

    python benchmarks/bench_tracking.py                         # hiera-t at 256 px (the tiny test size)
    python benchmarks/bench_tracking.py --arch tiny large --image-size 1024 --frames 10

Real architectures with seeded random weights (no download; latency does not depend on the weights), a
640×480 frame with a moving disc, torch backend, --threads CPU threads. Prints medians in ms after the
memory window has filled (so memory attention reads its full 6 frames + 15 pointers), and the frames held.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

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


def bench(arch: str, image_size: int, count: int) -> dict[str, float]:
    import torch
    from sam2.build_sam import build_sam2, build_sam2_video_predictor
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from segzero_ros.core.geometry import Box, Point
    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter, sam2_feature_sizes
    from segzero_ros.tracking.sam2_tracker import Sam2Tracker

    config = ARCHITECTURES[arch]
    overrides = [f"++model.image_size={image_size}"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        video_model = build_sam2_video_predictor(config, None, device="cpu", hydra_overrides_extra=overrides)
        torch.manual_seed(0)
        image_model = build_sam2(config, None, device="cpu", hydra_overrides_extra=overrides).eval()
    predictor = SAM2ImagePredictor(image_model)
    predictor._bb_feat_sizes = sam2_feature_sizes(image_size)
    segmenter = Sam2Segmenter(predictor, name=arch)
    tracker = Sam2Tracker(video_model, arch)
    video = frames(count + 1)
    box, points = Box(130, 170, 270, 310), (Point(200, 240),)

    segment_ms = []
    for frame in video[:4]:
        started = time.perf_counter()
        segmenter.set_image(frame)
        segmenter.segment(box, points)
        segment_ms.append((time.perf_counter() - started) * 1000)
    tracker.start(video[0], box, points)
    track_ms = []
    for frame in video[1:]:
        started = time.perf_counter()
        tracker.track(frame)
        track_ms.append((time.perf_counter() - started) * 1000)
    filled = track_ms[16:] or track_ms[-3:]
    return {"segment_ms": statistics.median(segment_ms[1:]), "track_ms": statistics.median(filled),
            "first_track_ms": track_ms[0], "stored_frames": tracker.stored_frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["tiny"], choices=sorted(ARCHITECTURES))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=24, help="tracked frames (>16 to time a full memory)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), 640×480 frames, encoder input {args.image_size} px, torch backend")
    print(f"{'arch':>10} {'segment ms':>11} {'track ms':>9} {'1st track':>10} {'frames kept':>12}")
    for arch in args.arch:
        row = bench(arch, args.image_size, args.frames)
        print(f"{arch:>10} {row['segment_ms']:>11.0f} {row['track_ms']:>9.0f} {row['first_track_ms']:>10.0f} "
              f"{row['stored_frames']:>12}", flush=True)


if __name__ == "__main__":
    main()
