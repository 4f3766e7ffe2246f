"""The camera-less image source's readers (folder, video, ros2 bag) on files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from segzero_ros.ros.image_source import SourceError, frames

FRAMES = [np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8) for seed in range(3)]


def test_a_folder_gives_its_images_sorted_by_name(tmp_path):
    for index, rgb in enumerate(FRAMES):
        PILImage.fromarray(rgb).save(tmp_path / f"frame_{index}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(frames(str(tmp_path)))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, FRAMES, strict=True))


def test_a_video_file_gives_its_frames_as_rgb(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    solid = [np.full((24, 32, 3), (200, 30, 10), np.uint8), np.full((24, 32, 3), (10, 200, 30), np.uint8)]
    for rgb in solid:
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV writes BGR
    writer.release()
    got = list(frames(str(path)))
    assert len(got) == 2
    for frame, rgb in zip(got, solid, strict=True):
        assert frame.shape == (24, 32, 3) and np.abs(frame.astype(int) - rgb).mean() < 8  # JPEG-compressed


def write_bag(path: Path, compressed: bool) -> None:
    pytest.importorskip("rosbags")
    import io

    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    kind = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    header_type, time_type, message_type = (store.types[name] for name in (
        "std_msgs/msg/Header", "builtin_interfaces/msg/Time", kind))
    with Writer(path, version=8) as writer:
        writer.add_connection("/other", "std_msgs/msg/String", typestore=store)
        connection = writer.add_connection("/camera/image_raw", kind, typestore=store)
        for index, rgb in enumerate(FRAMES):
            header = header_type(stamp=time_type(sec=index, nanosec=0), frame_id="camera")
            if compressed:
                buffer = io.BytesIO()
                PILImage.fromarray(rgb).save(buffer, format="PNG")
                msg = message_type(header=header, format="png", data=np.frombuffer(buffer.getvalue(), np.uint8))
            else:
                msg = message_type(header=header, height=24, width=32, encoding="rgb8", is_bigendian=0, step=96,
                              data=rgb.reshape(-1))
            writer.write(connection, index * 1_000_000_000, store.serialize_cdr(msg, kind))


@pytest.mark.parametrize("compressed", [False, True])
def test_a_ros2_bag_gives_its_image_topic_exactly(tmp_path, compressed):
    bag = tmp_path / "recording"
    write_bag(bag, compressed)
    got = list(frames(str(bag)))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, FRAMES, strict=True))
    with pytest.raises(SourceError, match="has no image topic '/nope'; topics: /other"):
        list(frames(str(bag), bag_topic="/nope"))


def test_unusable_sources_say_what_would_work(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        frames(str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="holds no images"):
        list(frames(str(tmp_path)))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="OpenCV cannot open"):
        list(frames(str(tmp_path / "broken.mp4")))
