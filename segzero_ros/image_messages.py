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


COMPRESSED_DEPTH_HEADER = 12
"""image_transport's compressed_depth prefix: int32 format (0 = inverse depth) and float32 depthParam[2]."""


def compressed_depth_to_array(msg: Any) -> np.ndarray:
    """Depth of a `compressedDepth` CompressedImage (image_transport's compressed_depth plugin, PNG): uint16 mm for
    format "16UC1; compressedDepth …", float32 m for "32FC1; compressedDepth …" (stored as quantised inverse
    depth: z = A / (v - B) with A, B from the header; v = 0 is no reading → NaN)."""
    import cv2

    encoding, _, compression = str(msg.format).partition(";")
    encoding = encoding.strip()
    if compression and "compresseddepth" not in compression.lower():
        raise ImageConversionError(f"depth format {msg.format!r} is not image_transport's compressedDepth")
    if "rvl" in compression.lower():
        raise ImageConversionError(f"compressedDepth {msg.format!r}: RVL is not supported, only PNG (the "
                                   "plugin's default; set its 'format' parameter to png)")
    if encoding not in ("16UC1", "32FC1"):
        raise ImageConversionError(f"compressedDepth of {encoding!r}: only 16UC1 and 32FC1 are depth encodings")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size <= COMPRESSED_DEPTH_HEADER:
        raise ImageConversionError("compressedDepth image is empty or has no PNG after its header")
    decoded = cv2.imdecode(data[COMPRESSED_DEPTH_HEADER:], cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 2:
        raise ImageConversionError(f"cannot decode compressedDepth image (format {msg.format!r}): expected a "
                                   "16-bit single-channel PNG after the header")
    if encoding == "16UC1":
        return np.asarray(decoded)
    quant_a, quant_b = np.frombuffer(data[4:COMPRESSED_DEPTH_HEADER].tobytes(), dtype="<f4")
    inverse = decoded.astype(np.float32)
    with np.errstate(divide="ignore"):
        depth = np.float32(quant_a) / (inverse - np.float32(quant_b))
    depth[decoded == 0] = np.nan
    return np.asarray(depth, dtype=np.float32)


def compress_depth(depth: np.ndarray, depth_max: float = 10.0, depth_quantization: float = 100.0) -> tuple[str, bytes]:
    """(format, data) of a depth image as image_transport's compressed_depth plugin writes it (PNG): what a robot's
    `…/compressedDepth` topic carries. uint16 (mm) → 16UC1 (readings beyond depth_max dropped); float32 (m) →
    32FC1 as quantised inverse depth. For tests and recorded-data tools; the node only decodes."""
    import cv2

    if depth.dtype == np.uint16:
        header = np.array([0], dtype="<i4").tobytes() + np.zeros(2, dtype="<f4").tobytes()
        ok, png = cv2.imencode(".png", np.where(depth > np.uint16(min(depth_max * 1000.0, 65535)), 0, depth))
        encoding = "16UC1"
    elif depth.dtype == np.float32:
        quant_a = depth_quantization * (depth_quantization + 1.0)
        quant_b = 1.0 - quant_a / depth_max
        valid = np.isfinite(depth) & (depth > 0) & (depth < depth_max)
        inverse = np.zeros(depth.shape, dtype=np.uint16)
        inverse[valid] = (quant_a / depth[valid] + quant_b).astype(np.uint16)
        header = np.array([0], dtype="<i4").tobytes() + np.array([quant_a, quant_b], dtype="<f4").tobytes()
        ok, png = cv2.imencode(".png", inverse)
        encoding = "32FC1"
    else:
        raise ImageConversionError(f"compressedDepth holds uint16 (mm) or float32 (m) depth, got {depth.dtype}")
    if not ok:
        raise ImageConversionError("PNG encoding failed")
    return f"{encoding}; compressedDepth png", header + png.tobytes()
