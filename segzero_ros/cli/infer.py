"""`segzero infer`: one image, one command → reasoning, JSON result, mask PNG and overlay PNG."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.cli.models import add_model_arguments, pipeline_config_from_args
from segzero_ros.errors import ModelLoadError, SegZeroError
from segzero_ros.images import load_rgb

EPILOG = """\
Every option of every reasoner and segmenter backend is a flag (--reasoner.<option>, --segmenter.<option>); the
short flags (--reasoner, --sam2, --segmenter, ...) are aliases. Offline, point --reasoner at a local folder
holding the weights; --tiny runs tiny offline models (meaningless masks) to prove the install.
Exit codes: 0 mask written, 1 the pipeline answered with an error result, 2 a set-up or usage error.
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


def run(args: argparse.Namespace) -> int:
    from segzero_ros.backends import build_pipeline

    if args.tiny and args.tiny_fallback:
        raise SegZeroError("--tiny and --tiny-fallback exclude each other")
    config = pipeline_config_from_args(args, "infer")  # flags checked before anything is loaded
    image = load_rgb(args.image)  # upright: a portrait phone photo is segmented as the person saw it
    try:
        pipeline = build_pipeline(config)
    except ModelLoadError as exc:
        if not args.tiny_fallback:
            raise
        print(f"NOTE: real models unavailable ({exc})", file=sys.stderr)
        pipeline = build_pipeline(pipeline_config_from_args(args, "infer", tiny_instead=True))
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
