"""SAM2 latency: sam2 (PyTorch) vs onnxruntime on this machine's CPU, per stage and end to end.

    python benchmarks/bench_sam2_backends.py                      # hiera-tiny and hiera-large, 1024 px
    python benchmarks/bench_sam2_backends.py --arch tiny --repeats 5 --threads 2

Real architectures with seeded random weights (no download); latency does not depend on the weights.
Both sides run the full Segmenter call the pipeline makes: `set_image` (preprocessing + image encoder) and
`segment` (prompt decoder + mask choice + upsampling to the original resolution), with the same thread
count. onnxruntime runs three times: as the CPU backend loads it at fp32 (encoder through the CPU-only
rewrite, see segzero_ros/segmentation/cpu_graph.py), with `precision: int8` (that encoder with int8 weights, see
segzero_ros/segmentation/cpu_int8.py) and on the fp32 graph files as exported (`ort plain`). Graphs are exported once
into --cache (hiera-large: minutes and ~4 GB of RAM). The backends take turns within every repeat, so
load from other processes hits them alike; medians of --repeats runs after one warm-up. The masks of the
backends are compared too (IoU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
from timing import median_ms

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARCHITECTURES = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def random_weight_model(config_name: str, image_size: int) -> object:
    import torch
    from sam2.build_sam import build_sam2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam2(config_name, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={image_size}"])
    return model.eval()


def exported_dir(arch: str, model: object, config_name: str, cache: Path) -> Path:
    from segzero_ros.export.onnx_export import Sam2Source, export_sam2_onnx
    from segzero_ros.segmentation.manifest import MANIFEST_FILENAME

    folder = cache / f"{arch}-{model.image_size}px-seed0"  # type: ignore[attr-defined]
    if not (folder / MANIFEST_FILENAME).is_file():
        print(f"exporting {arch} to {folder} (once) ...", flush=True)
        source = Sam2Source(model=model, config=config_name, checkpoint="random weights, seed 0",
                            checkpoint_sha256="none")
        export_sam2_onnx(source, folder, report=lambda message: print(f"  {message}", flush=True))
    return folder


def interleaved_medians_ms(calls: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per call, the calls taking turns (one warm-up round first)."""
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for round_index in range(repeats + 1):
        for label, call in calls.items():
            started = time.perf_counter()
            call()
            if round_index:
                samples[label].append((time.perf_counter() - started) * 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


def bench_arch(arch: str, args: argparse.Namespace) -> dict[str, float]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from segzero_ros.core.geometry import Box, ObjectPrompt, Point
    from segzero_ros.segmentation.base import Segmenter
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter
    from segzero_ros.segmentation.processing import resize_for_encoder
    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter, sam2_feature_sizes

    config_name = ARCHITECTURES[arch]
    model = random_weight_model(config_name, args.image_size)
    folder = exported_dir(arch, model, config_name, args.cache)
    width, height = args.frame
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    box = Box(width // 5, height // 6, width * 3 // 4, height * 5 // 6)
    points = [Point(width * 2 // 5, height // 2), Point(width // 2, height * 2 // 3)]
    repeats = args.repeats if args.repeats is not None else (2 if arch == "large" else 5)

    predictor = SAM2ImagePredictor(model)
    predictor._bb_feat_sizes = sam2_feature_sizes(model.image_size, model.backbone_stride)  # type: ignore[attr-defined]
    torch_segmenter = Sam2Segmenter(predictor, name=f"sam2-torch-{arch}")
    onnx_segmenter = OnnxRuntimeSegmenter.from_onnx_dir(folder, precision="fp32", device="cpu",
                                                        cpu_threads=args.threads)
    plain_segmenter = OnnxRuntimeSegmenter.from_onnx_dir(folder, precision="fp32", device="cpu",
                                                         cpu_threads=args.threads, cpu_graph_rewrite=False)
    int8_segmenter = OnnxRuntimeSegmenter.from_onnx_dir(folder, precision="int8", device="cpu",
                                                        cpu_threads=args.threads, int8_cache_root=args.cache)
    print(f"  CPU rewrite of the {arch} encoder: {onnx_segmenter.cpu_rewrite}; int8: {int8_segmenter.int8_encoder}",
          flush=True)
    segmenters: dict[str, Segmenter] = {"torch": torch_segmenter, "onnxruntime": onnx_segmenter,
                                        "ort-int8": int8_segmenter, "ort-plain": plain_segmenter}
    # Encode then decode in the same round, so every backend decodes its own features.
    encode = {label: partial(segmenter.set_image, image) for label, segmenter in segmenters.items()}
    decode = {label: partial(segmenter.segment, box, points) for label, segmenter in segmenters.items()}
    results = {f"{label}_encode": ms for label, ms in interleaved_medians_ms(encode, repeats).items()}
    results.update({f"{label}_decode": ms for label, ms in interleaved_medians_ms(decode, max(repeats, 5)).items()})
    pixels = np.empty((1, 3, args.image_size, args.image_size), dtype=np.float32)
    results["preprocess"] = median_ms(lambda: resize_for_encoder(image, args.image_size, out=pixels), 5)
    torch_mask = torch_segmenter.segment(ObjectPrompt(box, points)).mask
    for label in ("onnxruntime", "ort-int8"):
        results[f"{label}_mask_iou"] = mask_iou(torch_mask, segmenters[label].segment(ObjectPrompt(box, points)).mask)
    for segmenter in segmenters.values():
        segmenter.close()
    return results


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny,large", help=f"comma-separated: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--image-size", type=int, default=1024, help="encoder input side")
    parser.add_argument("--frame", type=lambda v: tuple(int(x) for x in v.split("x")), default=(1280, 720),
                        help="camera frame WxH (default 1280x720)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per stage (default 5; large: 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both torch and onnxruntime")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/segzero-bench-sam2"), help="exported graphs")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"SAM2 on CPU, {args.threads} thread(s), {args.image_size}px encoder, frame {args.frame[0]}x{args.frame[1]}, "
          f"torch {torch.__version__}")
    rows = []
    for arch in args.arch.split(","):
        results = bench_arch(arch.strip(), args)
        rows.append((arch, results))
        print(f"{arch}: done", flush=True)
    print()
    labels = {"onnxruntime": "ort fp32", "ort-int8": "ort int8", "ort-plain": "ort plain"}
    print(f"{'arch':<10} {'stage':<8} {'torch ms':>10}" + "".join(f" {name + ' ms':>13} {'/torch':>7}"
                                                            for name in labels.values()))
    for arch, r in rows:
        for stage in ("encode", "decode", "total"):
            ms = {label: r[f"{label}_encode"] + r[f"{label}_decode"] if stage == "total" else r[f"{label}_{stage}"]
                  for label in ("torch", *labels)}
            print(f"{arch:<10} {stage:<8} {ms['torch']:10.1f}" + "".join(
                f" {ms[label]:13.1f} {ms[label] / ms['torch']:7.2f}" for label in labels))
        print(f"{arch:<10} ort preprocessing {r['preprocess']:.1f} ms; mask IoU vs torch: "
              f"ort fp32 {r['onnxruntime_mask_iou']:.4f}, ort int8 {r['ort-int8_mask_iou']:.4f}")


if __name__ == "__main__":
    main()
