"""Exact numpy conversion between sensor_msgs/Image and arrays, without cv_bridge.

The PyPI cv-bridge is a ROS 1 port that breaks with numpy 2, and a robot's cv_bridge is tied to its
system Python; these few functions cover the encodings a camera driver publishes, honour row padding
(`step`) and byte order (`is_bigendian`), and refuse everything else with a message that says why.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from segzero_ros.visualize import mask_to_mono8


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


def image_to_array(msg: Image) -> np.ndarray:
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


def image_to_rgb8(msg: Image) -> np.ndarray:
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


def array_to_image(
    pixels: np.ndarray,
    encoding: str,
    header: Any = None,
    *,
    is_bigendian: bool = False,
    step: int | None = None,
) -> Image:
    """An Image holding these pixels exactly; `step` larger than a row pads each row with zeros."""
    layout = layout_of(encoding)
    expected_ndim = 2 if layout.channels == 1 else 3
    if pixels.ndim != expected_ndim or (expected_ndim == 3 and pixels.shape[2] != layout.channels):
        raise ImageConversionError(
            f"{encoding} needs a {'H×W' if layout.channels == 1 else f'H×W×{layout.channels}'} array, "
            f"got shape {pixels.shape}"
        )
    if pixels.dtype != layout.dtype:
        raise ImageConversionError(f"{encoding} needs {layout.dtype} pixels, got {pixels.dtype}")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    row_bytes = width * layout.channels * layout.dtype.itemsize
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is shorter than a row ({row_bytes} bytes)")
    ordered = pixels.astype(layout.dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    buffer = array.array("B")
    if step == row_bytes:
        buffer.frombytes(np.ascontiguousarray(ordered).view(np.uint8).data)
    else:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = np.ascontiguousarray(ordered).view(np.uint8).reshape(height, row_bytes)
        buffer.frombytes(padded.data)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.step = height, width, step
    msg.encoding = encoding
    msg.is_bigendian = 1 if is_bigendian else 0
    msg.data = buffer
    return msg


def mask_to_image(mask: np.ndarray, header: Any = None) -> Image:
    """A bool H×W mask as mono8 with 255 for the target and 0 elsewhere (what RViz and consumers expect)."""
    if mask.ndim != 2:
        raise ImageConversionError(f"mask must be H×W, got shape {mask.shape}")
    return array_to_image(mask_to_mono8(mask), "mono8", header)


def labels_to_image(labels: np.ndarray, header: Any = None) -> Image:
    """An instance label image as mono8 (uint8 labels) or mono16 (uint16), pixel value = object id."""
    encodings = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}
    encoding = encodings.get(labels.dtype)
    if encoding is None:
        raise ImageConversionError(f"labels must be uint8 or uint16, got {labels.dtype}")
    return array_to_image(labels, encoding, header)


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """Decode a CompressedImage (JPEG, PNG, … whatever OpenCV reads) to H×W×3 uint8 RGB."""
    import cv2

    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image is empty")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r})")
    return np.ascontiguousarray(decoded[:, :, ::-1])


def frame_problem(msg: Image | CompressedImage, max_pixels: int) -> str | None:
    """Why a camera message cannot be used, or None. Cheap enough for every frame: metadata against the data's
    length through numpy views (copying only in rare layouts: byte-swapped 16-bit data, or a last row sent
    without its padding). Compressed frames are only checked for being non-empty: decoding waits for a command."""
    if isinstance(msg, CompressedImage):
        return "compressed image is empty" if len(msg.data) == 0 else None
    if int(msg.width) * int(msg.height) > max_pixels:
        return f"image of {msg.width}×{msg.height} pixels is larger than max_image_pixels ({max_pixels})"
    if msg.encoding == "32FC1":
        return "32FC1 is a depth encoding, not a camera image (remap the colour topic)"
    try:
        image_to_array(msg)  # validates encoding, sizes, step and data length; views, does not copy
    except ImageConversionError as exc:
        return str(exc)
    return None


def depth_to_array(msg: Image) -> np.ndarray:
    """H×W depth of a 16UC1 / mono16 (uint16, mm) or 32FC1 (float32, m) Image, host byte order."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(f"depth image encoding {msg.encoding!r} is not one of {', '.join(DEPTH_ENCODINGS)}")
    return image_to_array(msg)


def frame_to_rgb8(msg: Image | CompressedImage, max_pixels: int) -> np.ndarray:
    """RGB H×W×3 uint8 of a camera message; ImageConversionError (a ValueError) says why not. A compressed
    frame's declared size is checked before decoding: a small file can unpack to gigabytes."""
    if not isinstance(msg, CompressedImage):
        return image_to_rgb8(msg)
    declared = _compressed_size(msg.data)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise ImageConversionError(f"compressed image of {declared[0]}×{declared[1]} pixels is larger than "
                                   f"max_image_pixels ({max_pixels})")
    try:
        rgb = compressed_to_rgb8(msg)
    except ImageConversionError:
        raise
    except Exception as exc:  # cv2.error, e.g. a header claiming more than OpenCV's own pixel limit
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}): {first}") from exc
    if rgb.shape[0] * rgb.shape[1] > max_pixels:
        raise ImageConversionError(f"decoded image of {rgb.shape[1]}×{rgb.shape[0]} pixels is larger than "
                                   f"max_image_pixels ({max_pixels})")
    return rgb


def _compressed_size(data: Any) -> tuple[int, int] | None:
    """(width, height) from a compressed image's header without decoding it; None when PIL cannot tell."""
    import io
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(bytes(data))) as image:
                width, height = image.size
                return int(width), int(height)
    except Exception:  # unknown format, or beyond PIL's own bomb limit: OpenCV decides (and limits) then
        return None
