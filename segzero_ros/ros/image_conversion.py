"""Exact numpy conversion between sensor_msgs/Image and arrays, without cv_bridge: messages from arrays here,
arrays from messages in the ROS-free `segzero_ros.image_messages` (re-exported), and the camera-frame checks.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from segzero_ros.image_messages import (
    DEPTH_ENCODINGS,
    ENCODINGS,
    EncodingLayout,
    ImageConversionError,
    compressed_to_rgb8,
    depth_to_array,
    image_to_array,
    image_to_rgb8,
    layout_of,
)
from segzero_ros.visualize import mask_to_mono8

__all__ = ["DEPTH_ENCODINGS", "ENCODINGS", "EncodingLayout", "ImageConversionError", "array_to_image",
           "compressed_to_rgb8", "depth_to_array", "frame_problem", "frame_to_rgb8", "image_to_array",
           "image_to_rgb8", "labels_to_image", "layout_of", "mask_to_image"]


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
