"""`segzero track`: reason once on the first frame, then track the answer's objects through the rest of a video,
image folder, ros2 bag or webcam: the offline counterpart of the node's tracking, for checking a tracker on
recorded video.

Writes, under --out: masks/NNNNN.png (the union mask of each frame, 0/255), overlay.mp4 (the frames with the
masks tinted and each object's box), track.json (the command's result, and per frame every object's presence,
score and box).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.cli.models import add_model_arguments, pipeline_config_from_args
from segzero_ros.errors import SegZeroError

EPILOG = """\
Any segmenter backend that can track works (sam2, onnxruntime, tensorrt, sam3, edgetam: --segmenter.backend);
tracking options: --memory-frames, --freeze-when-absent. Exit codes: 0 tracked, 1 the command found nothing
to track (its error is printed), 2 a set-up or usage error.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "track", help="reason on the first frame of a video, then track the objects through it",
        description="Run the reasoner on the first frame of --source, then the chosen segmenter's tracker on every "
                    "later frame; write per-frame masks, an overlay video and a JSON of boxes and presence.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="a video file, a folder of images, a ros2 bag (sqlite3 or mcap) or a webcam index")
    parser.add_argument("--command", required=True, help='what to track, e.g. "the red mug"')
    parser.add_argument("--out", type=Path, default=Path("segzero_out/track"), help="output folder (created)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = the whole "
                                                                   "source; a webcam needs a limit)")
    parser.add_argument("--bag-topic", default="", help="with a bag: the image topic (default: the first)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of overlay.mp4")
    parser.add_argument("--memory-frames", type=int, default=0,
                        help="past frames the tracker keeps reading (0 = the model's own; fewer is faster and "
                             "changes the masks)")
    parser.add_argument("--freeze-when-absent", action="store_true",
                        help="frames where an object is absent do not enter its memory (changes results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segzero_ros.backends import build_pipeline, build_tracker
    from segzero_ros.sources import SourceError, frames

    if args.max_frames < 0 or args.fps <= 0 or args.memory_frames < 0:
        raise SegZeroError("--max-frames and --memory-frames must be >= 0, --fps > 0")
    config = pipeline_config_from_args(args, "track")  # flags checked before anything is loaded
    try:
        stream = frames(args.source, args.bag_topic)
        first = next(stream, None)
    except SourceError as exc:
        raise SegZeroError(str(exc)) from exc
    if first is None:
        raise SegZeroError(f"{args.source!r} has no frames")
    pipeline = build_pipeline(config)
    try:
        result = pipeline.run(first, args.command)
    finally:
        pipeline.close()  # the reasoner's memory is not needed while tracking
    print("Reasoning:", result.reasoning or "(none)")
    if not result.ok:
        print(f"segzero track: nothing to track: {result.error_kind.value if result.error_kind else 'error'}: "
              f"{result.error}", file=sys.stderr)
        return 1
    tracker = build_tracker(config.segmenter, memory_frames=args.memory_frames or None,
                            freeze_when_absent=args.freeze_when_absent)
    writer = TrackWriter(args.out, args.fps, first.shape[:2])
    try:
        tracked = tracker.start_objects(first, [found.prompt for found in result.objects])
        writer.add(0, first, tracked)
        limit = args.max_frames or None
        bar = _progress(limit, args.no_progress)
        for index, frame in enumerate(stream, start=1):
            if limit is not None and index >= limit:
                break
            writer.add(index, frame, tracker.track_objects(frame))
            bar.update(1)
        bar.close()
    except ValueError as exc:  # a frame of another size, an unreadable frame
        raise SegZeroError(f"tracking stopped at frame {len(writer.records)}: {exc}") from exc
    finally:
        tracker.close()
        writer.close(result.to_dict(), args.command)
    print(f"segzero track: {len(writer.records)} frames, objects present on "
          f"{sum(any(o['present'] for o in r['objects']) for r in writer.records)}; {args.out}", file=sys.stderr)
    return 0


class TrackWriter:
    """masks/NNNNN.png, overlay.mp4 and track.json, written as frames come."""

    def __init__(self, out: Path, fps: float, shape: tuple[int, ...]) -> None:
        import cv2

        self.out = out
        (out / "masks").mkdir(parents=True, exist_ok=True)
        height, width = int(shape[0]), int(shape[1])
        self._video = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        self.records: list[dict[str, Any]] = []

    def add(self, index: int, frame: np.ndarray, tracked: list[Any]) -> None:
        from PIL import Image

        from segzero_ros.core.geometry import ObjectPrompt, mask_box
        from segzero_ros.core.result import SegmentedObject
        from segzero_ros.visualize import mask_to_mono8, overlay_objects

        union = np.zeros(frame.shape[:2], dtype=bool)
        objects, shown = [], []
        for item in tracked:
            union |= item.mask
            box = mask_box(item.mask) if item.present else None
            objects.append({"present": bool(item.present), "score": round(float(item.score), 4),
                            "box": box.as_list() if box is not None else None})
            if box is not None:
                shown.append(SegmentedObject(ObjectPrompt(box), mask=item.mask, score=item.score))
        Image.fromarray(mask_to_mono8(union)).save(self.out / "masks" / f"{index:05d}.png")
        self._video.write(np.ascontiguousarray(overlay_objects(frame, shown)[:, :, ::-1]))
        self.records.append({"frame": index, "mask_pixels": int(union.sum()), "objects": objects})

    def close(self, result: dict[str, Any], command: str) -> None:
        self._video.release()
        summary = {"command": command, "result": result, "frames": self.records}
        (self.out / "track.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _progress(total: int | None, disabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=None if total is None else max(total - 1, 0), initial=0, disable=disabled, unit="frame",
                desc="tracking", file=sys.stderr)
