"""`segzero infer`: one image, one command → reasoning, JSON result, mask PNG and overlay PNG."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import DEFAULT_REASONER_MODEL, DEFAULT_SAM2_MODEL, PipelineConfig, SegmenterConfig
from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, SEG_ZERO
from segzero_ros.errors import ModelLoadError, SegZeroError
from segzero_ros.images import load_rgb

EPILOG = f"""\
--sam2 accepts a Hugging Face id (default {DEFAULT_SAM2_MODEL}), a local checkpoint (sam2.1_hiera_large.pt: the
config is inferred from the file name) or CONFIG.yaml:CHECKPOINT.pt. Offline, point --reasoner at a local
folder holding the Seg-Zero weights; --tiny runs tiny offline models (meaningless masks) to prove the install.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="segment one image from a natural-language command",
        description="Run the Seg-Zero pipeline on one image: print the reasoning and the JSON result, write "
        "the mask and an overlay PNG.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image", required=True, type=Path, help="input image (any format PIL reads)")
    parser.add_argument("--command", "--query", dest="command", required=True,
                        help='what to segment, e.g. "the thing I can cut bread with" (--query: the older name)')
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("segzero_out"), help="output folder (created)")
    parser.add_argument(
        "--tiny-fallback", action="store_true",
        help="use the real models when they load, the tiny ones (with a notice) when they do not",
    )
    parser.set_defaults(handler=run)


def add_model_arguments(parser: Any) -> None:
    """Model selection flags shared by every command that builds a pipeline (infer, eval)."""
    models = parser.add_argument_group("models")
    models.add_argument("--reasoner", default=DEFAULT_REASONER_MODEL, help="HF id or local folder of the reasoner")
    models.add_argument("--reasoner-backend", default="transformers",
                        help="reasoner backend (transformers; openai = a server at --reasoner-url, --reasoner naming "
                             "the served model or '' for its first; scripted replays a JSON file given as --reasoner)")
    models.add_argument("--reasoner-url", default=None,
                        help="openai backend: the server's API root (default http://127.0.0.1:8000/v1); the API key "
                             "comes from $SEGZERO_REASONER_API_KEY")
    models.add_argument("--sam2", default=DEFAULT_SAM2_MODEL, help="SAM2 HF id, checkpoint, or CONFIG:CHECKPOINT")
    models.add_argument("--segmenter", default="sam2", help="segmenter backend (sam2, onnxruntime, tensorrt, box)")
    models.add_argument("--onnx-dir", default=None,
                        help="onnxruntime/tensorrt: folder from `segzero export-sam2` (default: export --sam2 once "
                             "into the cache)")
    models.add_argument("--segmenter-precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                        help="onnxruntime/tensorrt graphs or engines (auto: fp32 on onnxruntime, fp16 on tensorrt; "
                             "int8: onnxruntime on the CPU only, not parity-exact)")
    models.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    models.add_argument("--max-new-tokens", type=int, default=1024, help="generation budget (reference: 1024)")
    models.add_argument("--answer-format", default=SEG_ZERO, choices=ANSWER_FORMAT_NAMES,
                        help="what the checkpoint answers: seg_zero (one box + two points, Seg-Zero-7B) or "
                             "vision_reasoner (a list of objects, [] when none is in view, VisionReasoner-7B)")
    models.add_argument("--tiny", action="store_true", help="use tiny offline models (meaningless masks)")


def sam2_source(value: str) -> dict[str, str]:
    """--sam2 value → the SegmenterConfig fields naming the model (HF id, CHECKPOINT.pt, CONFIG.yaml:CHECKPOINT.pt)."""
    if ":" in value and value.split(":", 1)[0].endswith((".yaml", ".yml")):
        config_name, checkpoint = value.split(":", 1)
        return {"config": config_name, "checkpoint": checkpoint}
    if value.endswith((".pt", ".pth")) or Path(value).is_file():
        return {"checkpoint": value}
    return {"model": value}


def pipeline_config_from_args(args: argparse.Namespace) -> PipelineConfig:
    from segzero_ros.backends import reasoner_config_for

    return PipelineConfig(
        reasoner=reasoner_config_for(args.reasoner_backend, model=args.reasoner, device=args.device,
                                     max_new_tokens=args.max_new_tokens, answer_format=args.answer_format,
                                     base_url=args.reasoner_url),
        segmenter=segmenter_config_from_args(sam2_source(args.sam2), args),
    )


def segmenter_config_from_args(source: dict[str, Any], args: argparse.Namespace) -> SegmenterConfig:
    """The chosen segmenter backend's config; --onnx-dir / --segmenter-precision reach only the graph backends."""
    from segzero_ros.backends import segmenter_config_for

    return segmenter_config_for(args.segmenter, **{"device": args.device, **source}, onnx_dir=args.onnx_dir,
                                precision=args.segmenter_precision)


def tiny_config(args: argparse.Namespace) -> PipelineConfig:
    from segzero_ros.tiny import TINY_WARNING, tiny_pipeline_config

    print(f"NOTE: {TINY_WARNING}.", file=sys.stderr)
    config = tiny_pipeline_config(device="cpu" if args.device == "auto" else args.device)
    tiny_sam2 = config.segmenter  # through any backend: e.g. onnxruntime, or the box baseline
    source = {"config": tiny_sam2.config, "checkpoint": tiny_sam2.checkpoint, "image_size": tiny_sam2.image_size,
              "device": tiny_sam2.device}
    return PipelineConfig(
        reasoner=dataclasses.replace(config.reasoner, max_new_tokens=args.max_new_tokens,  # type: ignore[call-arg]
                                     answer_format=args.answer_format),
        segmenter=segmenter_config_from_args(source, args),
    )


def run(args: argparse.Namespace) -> int:
    from segzero_ros.backends import build_pipeline

    image = load_rgb(args.image)  # upright: a portrait phone photo is segmented as the person saw it
    if args.tiny and args.tiny_fallback:
        raise SegZeroError("--tiny and --tiny-fallback exclude each other")
    if args.tiny:
        pipeline = build_pipeline(tiny_config(args))
    else:
        try:
            pipeline = build_pipeline(pipeline_config_from_args(args))
        except ModelLoadError as exc:
            if not args.tiny_fallback:
                raise
            print(f"NOTE: real models unavailable ({exc})", file=sys.stderr)
            pipeline = build_pipeline(tiny_config(args))
    try:
        result = pipeline.run(image, args.command)
    finally:
        pipeline.close()

    print("Reasoning:", result.reasoning or "(none)")
    print(json.dumps(result.to_dict(), indent=2))
    written = write_outputs(args.out, args.image.stem, image, result)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if not result.ok:
        print(f"segzero infer: no mask: {result.error}", file=sys.stderr)
        return 1
    return 0


def write_outputs(out_dir: Path, stem: str, image: np.ndarray, result: Any) -> list[Path]:
    """result.json always; mask and overlay PNGs when there is a mask (overlay also shows a failed box)."""
    from PIL import Image

    from segzero_ros.visualize import mask_to_mono8, overlay_objects

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{stem}_result.json"]
    written[0].write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if result.mask is not None:
        mask_path = out_dir / f"{stem}_mask.png"
        Image.fromarray(mask_to_mono8(result.mask)).save(mask_path)
        written.append(mask_path)
        labels = result.labels()
        if labels is not None and len(result.objects) > 1:
            labels_path = out_dir / f"{stem}_labels.png"  # pixel value = object id (1, 2, …), 0 = background
            Image.fromarray(labels).save(labels_path)
            written.append(labels_path)
    overlay_path = out_dir / f"{stem}_overlay.png"
    Image.fromarray(overlay_objects(image, result.objects)).save(overlay_path)
    written.append(overlay_path)
    return written
