"""Pixels of sensor_msgs Image / CompressedImage messages as numpy arrays, exactly and ROS-free (anything with
the messages' fields works: a node's messages, a bag's deserialised ones), without cv_bridge.

The PyPI cv-bridge is a ROS 1 port that breaks with numpy 2, and a robot's cv_bridge is tied to its
system Python; these few functions cover the encodings a camera driver publishes, honour row padding
(`step`) and byte order (`is_bigendian`), and refuse everything else with a message that says why.
`segzero_ros.ros.image_conversion` builds messages from arrays and re-exports these.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


class ImageConversionError(ValueError):
    """The message cannot be turned into pixels (unsupported encoding, inconsistent sizes, bad data)."""


@dataclass(frozen=True)
class EncodingLayout:
    dtype: np.dtype[Any]
    channels: int


ENCODINGS: dict[str, EncodingLayout] = {
    "rgb8": EncodingLayout(np.dtype(np.uint8), 3),
    "bgr8": EncodingLayout(np.dtype(np.uint8), 3),
    "rgba8": EncodingLayout(np.dtype(np.uint8), 4),
    "bgra8": EncodingLayout(np.dtype(np.uint8), 4),
    "mono8": EncodingLayout(np.dtype(np.uint8), 1),
    "mono16": EncodingLayout(np.dtype(np.uint16), 1),
    "16UC1": EncodingLayout(np.dtype(np.uint16), 1),
    "32FC1": EncodingLayout(np.dtype(np.float32), 1),
}
"""Encodings this module converts, with their per-pixel layout."""
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
"""Depth images (REP 118): 16UC1 / mono16 in millimetres, 32FC1 in metres."""

_HOST_IS_BIGENDIAN = sys.byteorder == "big"


def layout_of(encoding: str) -> EncodingLayout:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        supported = ", ".join(ENCODINGS)
        raise ImageConversionError(f"unsupported image encoding {encoding!r}; supported: {supported}") from None


def image_to_array(msg: Any) -> np.ndarray:
    """Pixels of an Image as H×W×C (colour) or H×W (mono) in the encoding's own channel order.

    16-bit data comes back in the host's byte order. The result may share memory with msg.data.
    """
    layout = layout_of(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels ({width}×{height})")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is shorter than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    # Publishers may leave out the padding after the last row; nothing less than that is enough.
    if not (step * (height - 1) + row_bytes <= data.size <= step * height):
        raise ImageConversionError(
            f"data holds {data.size} bytes, but {height} rows of step {step} need {step * height}"
        )
    if data.size < step * height:
        data = np.concatenate([data, np.zeros(step * height - data.size, dtype=np.uint8)])
    rows = data.reshape(height, step)[:, :row_bytes]
    pixel_dtype = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels: np.ndarray = rows.view(pixel_dtype)
    if pixel_dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_IS_BIGENDIAN:
        pixels = pixels.astype(layout.dtype)
    if layout.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, layout.channels)


def image_to_rgb8(msg: Any) -> np.ndarray:
    """The H×W×3 uint8 C-contiguous RGB array the pipeline takes (may share memory with msg.data).

    Alpha is dropped, mono is repeated into three channels, and 16-bit mono keeps its high byte
    (value // 256), the same scaling cv_bridge applies when converting mono16 to rgb8.
    """
    import cv2

    if msg.encoding == "32FC1":
        raise ImageConversionError("32FC1 is a depth encoding, not a camera image (remap the colour topic)")
    pixels = image_to_array(msg)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    conversion = _TO_RGB.get(msg.encoding)
    if conversion is None:  # rgb8 already
        return np.ascontiguousarray(pixels)
    # OpenCV reads padded rows in place and is ~30× faster than numpy's channel shuffles here.
    return np.asarray(cv2.cvtColor(pixels, getattr(cv2, conversion)))


_TO_RGB = {
    "bgr8": "COLOR_BGR2RGB",
    "rgba8": "COLOR_RGBA2RGB",
    "bgra8": "COLOR_BGRA2RGB",
    "mono8": "COLOR_GRAY2RGB",
    "mono16": "COLOR_GRAY2RGB",
    "16UC1": "COLOR_GRAY2RGB",
}


def compressed_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a CompressedImage (JPEG, PNG, … whatever OpenCV reads) to H×W×3 uint8 RGB."""
    import cv2

    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image is empty")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r})")
    return np.ascontiguousarray(decoded[:, :, ::-1])


def depth_to_array(msg: Any) -> np.ndarray:
    """H×W depth of a 16UC1 / mono16 (uint16, mm) or 32FC1 (float32, m) Image, host byte order."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(f"depth image encoding {msg.encoding!r} is not one of {', '.join(DEPTH_ENCODINGS)}")
    return image_to_array(msg)
