"""`segzero export-sam2` (SAM2 → ONNX graphs + manifest) and `segzero build-engine` (ONNX → TensorRT engines).

Both print progress as they go: exporting hiera-large takes minutes on a CPU, and building TensorRT
engines takes minutes on the robot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segzero_ros.config import DEFAULT_SAM2_MODEL, Sam2WeightsConfig, SegmenterConfig, widen
from segzero_ros.errors import SegZeroError

EXPORT_EPILOG = f"""\
Examples:
  segzero export-sam2 --config configs/sam2/sam2_hiera_l.yaml --checkpoint sam2_hiera_large.pt \
      --out models/sam2-l --fp16
  segzero export-sam2 --model {DEFAULT_SAM2_MODEL} --out models/sam2-l        (from the local Hugging Face cache)
  segzero export-sam2 --tiny --out /tmp/sam2-tiny                           (offline test model, meaningless masks)
  segzero export-sam2 --backend edgetam --model ~/models/EdgeTAM-hf --out models/edgetam
  segzero export-sam2 --backend sam3 --model facebook/sam3 --out models/sam3       (SAM3's tracker image path)
--backend sam3 / edgetam export the image path of transformers' Sam3TrackerModel / EdgeTamModel as the same two
graphs, so segmenter.backend onnxruntime / tensorrt run them (segmenter.onnx_dir); their tracking graphs are not
exported (track with segmenter.backend sam3 / edgetam on torch).
An existing export of the same checkpoint, config and size is kept (use --force to redo it).
"""

BUILD_EPILOG = """\
Run on the robot, with the GPU the node will use. Engines land in --cache (default: $SEGZERO_CACHE/tensorrt or
~/.cache/segzero_ros/tensorrt), keyed by graph hash + GPU + TensorRT version; the node finds them there when
its segmenter.engine_cache_dir is the same folder.
"""


def add_parser(subparsers: Any) -> None:
    """Registers two subcommands: export-sam2 and build-engine."""
    export = subparsers.add_parser(
        "export-sam2",
        help="export SAM2 (or SAM3's tracker / EdgeTAM) to ONNX (image encoder + prompt decoder) with a manifest",
        description="Export the image predictor path of SAM2 (or of transformers' SAM3 tracker / EdgeTAM, "
        "--backend) to two ONNX graphs (opset 18, dynamic number of "
        "prompt points), check them (onnx.checker, shape inference, TensorRT operator allow-list) and "
        "write sam2_onnx.json beside them.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--backend", choices=EXPORT_FAMILIES, default="sam2",
                        help="the model family: sam2 (the sam2 package, default), sam3 or edgetam (transformers)")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="local SAM2 .pt checkpoint (--config too, unless a released file name)")
    source.add_argument("--model", help="Hugging Face id (resolved through the local hub cache) or, for sam3 / "
                        "edgetam, a local transformers model folder")
    source.add_argument("--tiny", action="store_true",
                        help="the backend's tiny offline model (random weights; SAM2 256 px, SAM3 224, EdgeTAM 256)")
    export.add_argument("--config", help="sam2 package config, e.g. configs/sam2.1/sam2.1_hiera_l.yaml")
    export.add_argument("--image-size", type=int, help="encoder input side (default: the config's, 1024)")
    export.add_argument("--out", required=True, type=Path, help="output folder (created)")
    export.add_argument("--fp16", action="store_true", help="also write fp16 graphs (for GPUs / TensorRT)")
    export.add_argument("--force", action="store_true", help="re-export even if --out holds this export already")
    export.add_argument("--tracking", action="store_true",
                        help="also write the tracking graphs (memory attention, SAM heads, memory encoder) for the "
                             "onnxruntime / tensorrt trackers (tracking.enabled with those segmenter backends)")
    export.set_defaults(handler=run_export)

    build = subparsers.add_parser(
        "build-engine",
        help="build TensorRT engines from an export-sam2 folder (on the robot's GPU)",
        description="Build (or find cached) TensorRT engines for the SAM2 encoder and decoder graphs (and the "
        "tracking graphs, when the export has them).",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--onnx-dir", required=True, type=Path, help="folder written by export-sam2")
    build.add_argument("--cache", type=Path, help="engine cache folder")
    build.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision (default fp16)")
    build.add_argument("--device", default="auto", help="auto, cuda or cuda:N")
    build.set_defaults(handler=run_build_engine)


def report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


EXPORT_FAMILIES = ("sam2", "sam3", "edgetam")


def source_config(args: argparse.Namespace) -> Sam2WeightsConfig:
    if args.tiny:
        from segzero_ros.tiny.sam2_model import ensure_tiny_sam2

        if args.image_size is not None or args.config is not None:
            raise SegZeroError("--tiny fixes its config and image size; drop --config/--image-size")
        return widen(ensure_tiny_sam2().segmenter_config(device="cpu"), Sam2WeightsConfig)
    if args.model is not None:
        return Sam2WeightsConfig(model=args.model, config=args.config, image_size=args.image_size, device="cpu")
    return Sam2WeightsConfig(checkpoint=args.checkpoint, config=args.config, image_size=args.image_size, device="cpu")


def transformers_source_config(args: argparse.Namespace) -> SegmenterConfig:
    """The sam3 / edgetam segmenter config an export reads (its model: --model or the tiny one)."""
    from segzero_ros.registry import backend

    if args.checkpoint is not None or args.config is not None or args.image_size is not None or args.tracking:
        raise SegZeroError(f"--backend {args.backend} takes --model DIR|ID or --tiny; --checkpoint, --config, "
                           "--image-size and --tracking are for SAM2")
    if args.tiny:
        from segzero_ros.tiny import tiny_segmenter_config

        return tiny_segmenter_config(args.backend)
    config = backend("segmenter", args.backend).make_config(model=args.model, device="cpu")
    assert isinstance(config, SegmenterConfig)
    return config


def run_export(args: argparse.Namespace) -> int:
    from segzero_ros.export.onnx_export import export_matches, export_sam2_onnx, load_sam2_source, resolve_checkpoint
    from segzero_ros.segmentation.manifest import load_manifest, sha256_of_file

    if args.backend != "sam2":
        return run_transformers_export(args)
    config = source_config(args)
    config_name, checkpoint = resolve_checkpoint(config)
    report(f"hashing checkpoint {checkpoint} ...")
    checkpoint_sha256 = sha256_of_file(checkpoint)
    precisions = ["fp32", "fp16"] if args.fp16 else ["fp32"]
    if not args.force and export_matches(args.out, checkpoint_sha256, config_name, config.image_size, precisions):
        report(f"{args.out} already holds this export (same checkpoint, config, size); --force redoes it")
        manifest = load_manifest(args.out)
    else:
        source = load_sam2_source(config, report, checkpoint_sha256=checkpoint_sha256)
        manifest = export_sam2_onnx(source, args.out, fp16=args.fp16, report=report)
    if args.tracking and (args.force or manifest.tracking is None):
        from segzero_ros.export.tracking_graphs import add_tracking_graphs
        from segzero_ros.segmentation.sam2_backend import build_sam2_model

        report("exporting the tracking graphs (built as sam2's video predictor)")
        model, _ = build_sam2_model(config, video=True)
        manifest = add_tracking_graphs(args.out, model)
    report_graphs(manifest)
    print(args.out)
    return 0


def run_transformers_export(args: argparse.Namespace) -> int:
    from segzero_ros.export.onnx_export import (
        export_matches,
        export_transformers_sam_onnx,
        transformers_export_name,
        weights_sha256,
    )
    from segzero_ros.segmentation.manifest import load_manifest

    config = transformers_source_config(args)
    precisions = ["fp32", "fp16"] if args.fp16 else ["fp32"]
    weights = weights_sha256(str(config.model))
    if (not args.force and weights
            and export_matches(args.out, weights, transformers_export_name(config), None, precisions)):
        report(f"{args.out} already holds this export (same weights); --force redoes it")
        manifest = load_manifest(args.out)
    else:
        manifest = export_transformers_sam_onnx(config, args.out, fp16=args.fp16, report=report)
    report_graphs(manifest)
    print(args.out)
    return 0


def report_graphs(manifest: Any) -> None:
    for precision in manifest.precisions:
        files = ", ".join(manifest.graph(precision, role).file for role in ("encoder", "decoder"))
        report(f"{precision}: {files}")
    if manifest.tracking is not None:
        report(f"tracking: {', '.join(spec.file for spec in manifest.tracking.graphs.values())}, "
               f"{manifest.tracking.constants}")


def run_build_engine(args: argparse.Namespace) -> int:
    from segzero_ros.export.onnx_export import add_fp16_graphs
    from segzero_ros.segmentation.manifest import load_manifest
    from segzero_ros.segmentation.tensorrt_backend import build_engines

    if args.precision == "fp16" and "fp16" not in load_manifest(args.onnx_dir).graphs:
        report(f"{args.onnx_dir} has no fp16 graphs yet: converting the fp32 ones")
        add_fp16_graphs(Path(args.onnx_dir).expanduser(), report)
    engines = build_engines(args.onnx_dir, args.cache, precision=args.precision, device=args.device, report=report)
    if load_manifest(args.onnx_dir).tracking is not None:  # the tracker's engines too (fp32, see tensorrt_tracker)
        from segzero_ros.tracking.tensorrt_tracker import build_tracking_engines

        tracking = build_tracking_engines(args.onnx_dir, args.cache, device=args.device, report=report)
        engines.update({f"track_{role}": path for role, path in tracking.items() if role != "encoder"})
    for role, path in engines.items():
        print(f"{role}: {path}")
    return 0
