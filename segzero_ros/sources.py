"""Frames from an image folder, a video file, a webcam (OpenCV device index) or a ros2 bag (read with the
`rosbags` package: no ROS installation needed), as RGB arrays, one at a time: what `segzero_image_source`
publishes and `segzero track` tracks through. ROS-free (a bag's image messages are converted by the same code
as the node's camera images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
BAG_SUFFIXES = (".db3", ".mcap")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class SourceError(ValueError):
    """The source cannot be read; the message says why and what would work."""


def folder_frames(folder: Path) -> Iterator[np.ndarray]:
    from segzero_ros.images import load_rgb

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for path in files:
        yield np.ascontiguousarray(load_rgb(path))


def video_frames(source: str | int) -> Iterator[np.ndarray]:
    """Frames of a video file or webcam (OpenCV), as RGB."""
    import cv2

    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise SourceError(f"OpenCV cannot open {source!r} (a video file, or a webcam index such as 0)")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[:, :, ::-1])
    finally:
        capture.release()


def bag_frames(path: Path, topic: str = "") -> Iterator[np.ndarray]:
    """Image / CompressedImage messages of a ros2 bag (sqlite3 or mcap), as RGB, in recorded order."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError as exc:
        raise SourceError("reading bags needs the rosbags package: pip install rosbags") from exc
    from types import SimpleNamespace

    from segzero_ros.image_messages import compressed_to_rgb8, image_to_rgb8

    with AnyReader([path]) as reader:
        connections = [c for c in reader.connections if c.msgtype in IMAGE_TYPES and (not topic or c.topic == topic)]
        if not connections:
            found = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
            raise SourceError(f"{path} has no image topic{f' {topic!r}' if topic else ''}; topics: {found}")
        chosen = connections[:1]
        for connection, _, raw in reader.messages(connections=chosen):
            msg: Any = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype.endswith("CompressedImage"):
                yield compressed_to_rgb8(SimpleNamespace(format=msg.format, data=bytes(msg.data)))  # type: ignore[arg-type]
            else:
                yield image_to_rgb8(SimpleNamespace(  # type: ignore[arg-type]
                    height=msg.height, width=msg.width, encoding=msg.encoding, is_bigendian=msg.is_bigendian,
                    step=msg.step, data=bytes(msg.data)))


def frames(source: str, bag_topic: str = "") -> Iterator[np.ndarray]:
    """The frames of `source` once through (see the module docstring for what `source` may be)."""
    if source.strip().isdigit():
        return video_frames(int(source))
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{source!r} does not exist (a folder of images, a video, a bag, or a webcam index)")
    is_bag = path.suffix in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())
    if is_bag:
        return bag_frames(path, bag_topic)
    if path.is_dir():
        return folder_frames(path)
    return video_frames(str(path))
