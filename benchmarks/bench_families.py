"""Reasoner families side by side (a benchmark, not a test: it prints figures).

    python benchmarks/bench_families.py                  # both parts, 1 CPU thread
    python benchmarks/bench_families.py --json out.json

1. Visual tokens per frame size, MEASURED with each family's image processor at its released settings (patch,
   merge, pixel budget; the same class a checkpoint loads): what a frame costs the language model in any
   deployment, CPU or GPU.
2. The tiny offline reasoners (real Qwen2.5-VL / Qwen3-VL architectures, ~0.2 M parameters): prompt tokens and
   CPU reasoning time for one 640×480 image and command through the transformers backend, median of N. Their
   pixel budgets are tiny (16 visual tokens), so this compares the code paths, not the real models' speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RELEASED = {
    # Qwen2.5-VL-*-Instruct's preprocessor_config.json: 14 px patches, 2×2 merge, 3136..12845056 pixels.
    "qwen2_5_vl": {"patch_size": 14, "merge_size": 2, "size": {"shortest_edge": 3136, "longest_edge": 12845056}},
    # Qwen3-VL-*-Instruct's: 16 px patches, 2×2 merge, 65536..16777216 pixels, mean = std = 0.5.
    "qwen3_vl": {"patch_size": 16, "merge_size": 2, "size": {"shortest_edge": 65536, "longest_edge": 16777216},
                 "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
}


def visual_tokens(frames: list[int]) -> list[dict[str, object]]:
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    rows = []
    for name, settings in RELEASED.items():
        processor = Qwen2VLImageProcessor(**settings)
        merge = settings["merge_size"]
        for side in frames:
            grid = processor(images=[Image.new("RGB", (side, side))], return_tensors="np")["image_grid_thw"][0]
            rows.append({"family": name, "frame": side, "grid": [int(v) for v in grid],
                         "visual_tokens": int(grid[0] * grid[1] * grid[2] // (merge * merge))})
    return rows


def tiny_reasoning(repeats: int) -> list[dict[str, object]]:
    from segzero_ros.backends import build_reasoner
    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.tiny.qwen_vl import RECIPES, ensure_tiny_qwen

    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    rows = []
    for name in RECIPES:
        reasoner = build_reasoner(TransformersReasonerConfig(model=str(ensure_tiny_qwen(family=name)), device="cpu",
                                                             max_new_tokens=96))
        try:
            outputs = [reasoner.reason(image, "the red mug") for _ in range(repeats + 1)][1:]
        finally:
            reasoner.close()
        rows.append({
            "family": name, "frame": reasoner.answer_frame.frame_size, "coordinates": reasoner.answer_frame.coordinates,
            "prompt_tokens": outputs[0].prompt_tokens, "completion_tokens": outputs[0].completion_tokens,
            "preprocess_ms": statistics.median(o.preprocess_s for o in outputs) * 1000,
            "generate_ms": statistics.median(o.generate_s for o in outputs) * 1000,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="448,640,832,840,1024", help="square frame sides to measure")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per tiny model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tokens = visual_tokens([int(side) for side in args.frames.split(",")])
    print("visual tokens per square frame, released image-processor settings")
    print(f"{'frame':>6} " + " ".join(f"{name:>12}" for name in RELEASED))
    for side in sorted({int(row["frame"]) for row in tokens}):  # type: ignore[call-overload]
        cells = [next(row["visual_tokens"] for row in tokens if row["frame"] == side and row["family"] == name)
                 for name in RELEASED]
        print(f"{side:>6} " + " ".join(f"{cell:>12}" for cell in cells))
    tiny = tiny_reasoning(args.repeats)
    print(f"\ntiny reasoners, CPU, {args.threads} thread(s), 640×480 image, median of {args.repeats}")
    print(f"{'family':>12} {'frame':>6} {'coordinates':>14} {'prompt tok':>10} {'new tok':>8} {'prep ms':>8} "
          f"{'generate ms':>11}")
    for row in tiny:
        print(f"{row['family']:>12} {row['frame']:>6} {row['coordinates']:>14} {row['prompt_tokens']:>10} "
              f"{row['completion_tokens']:>8} {row['preprocess_ms']:>8.1f} {row['generate_ms']:>11.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump({"visual_tokens": tokens, "tiny": tiny}, stream, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
