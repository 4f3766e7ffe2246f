"""Overlay drawing shared by the CLI, the evaluation report and the node's ~/overlay topic."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from segzero_ros.core.geometry import Box, Point, mask_box
from segzero_ros.core.result import SegmentedObject

MASK_COLOR = (255, 64, 0)
"""RGB tint of the mask: a saturated orange that stays visible on most scenes."""
BOX_COLOR = (0, 255, 0)
POINT_COLOR = (255, 0, 255)
MASK_ALPHA = 0.5
OBJECT_COLORS = (MASK_COLOR, (0, 160, 255), (255, 220, 0), (0, 200, 120), (200, 0, 255), (255, 0, 90),
                 (120, 255, 255), (160, 100, 40))
"""Mask and box colour of object i (cycled): the first object looks exactly like a single-object overlay."""


def overlay_image(
    image_rgb: np.ndarray,
    mask: np.ndarray | None,
    box: Box | None = None,
    points: Sequence[Point] | None = None,
    *,
    alpha: float = MASK_ALPHA,
) -> np.ndarray:
    """A copy of the RGB image with the mask tinted and the box and points drawn (uint8 H×W×3)."""
    overlay = np.array(image_rgb, dtype=np.uint8, copy=True)
    if mask is not None:
        selected = mask.astype(bool, copy=False)
        if selected.shape != overlay.shape[:2]:
            raise ValueError(f"mask shape {selected.shape} does not match image {overlay.shape[:2]}")
        _tint_in_place(overlay, selected, alpha, MASK_COLOR)
    thickness = max(1, round(max(overlay.shape[:2]) / 400))
    if box is not None:
        cv2.rectangle(overlay, (box.x1, box.y1), (box.x2, box.y2), BOX_COLOR, thickness)
    for point in points or ():
        cv2.circle(overlay, (point.x, point.y), 2 * thickness + 2, POINT_COLOR, -1)
    return overlay


def overlay_objects(image_rgb: np.ndarray, objects: Sequence[SegmentedObject], *,
                    alpha: float = MASK_ALPHA) -> np.ndarray:
    """Every object of a result in its own colour (OBJECT_COLORS): mask tint and box; points in POINT_COLOR.
    One object draws exactly what :func:`overlay_image` draws."""
    overlay = np.array(image_rgb, dtype=np.uint8, copy=True)
    thickness = max(1, round(max(overlay.shape[:2]) / 400))
    for index, found in enumerate(objects):
        color = OBJECT_COLORS[index % len(OBJECT_COLORS)]
        if found.mask is not None:
            selected = found.mask.astype(bool, copy=False)
            if selected.shape != overlay.shape[:2]:
                raise ValueError(f"mask shape {selected.shape} does not match image {overlay.shape[:2]}")
            _tint_in_place(overlay, selected, alpha, color)
    for index, found in enumerate(objects):
        box_color = BOX_COLOR if index == 0 else OBJECT_COLORS[index % len(OBJECT_COLORS)]
        cv2.rectangle(overlay, (found.box.x1, found.box.y1), (found.box.x2, found.box.y2), box_color, thickness)
        for point in found.points:
            cv2.circle(overlay, (point.x, point.y), 2 * thickness + 2, POINT_COLOR, -1)
    return overlay


def _tint_in_place(image: np.ndarray, mask: np.ndarray, alpha: float, color: tuple[int, int, int]) -> None:
    """Blend MASK_COLOR into the masked pixels, working only inside the mask's bounding rectangle.

    The node draws this for every result; blending the whole frame would dominate its per-frame cost.
    """
    box = mask_box(mask)
    if box is None:
        return
    top, bottom, left, right = box.y1, box.y2 + 1, box.x1, box.x2 + 1
    region = image[top:bottom, left:right]
    blended = cv2.LUT(region, _tint_table(alpha, color))
    # cv2.copyTo is ~50× faster than np.copyto with a broadcast `where`.
    region_mask = np.ascontiguousarray(mask[top:bottom, left:right]).view(np.uint8)
    region[...] = cv2.copyTo(blended, region_mask, np.ascontiguousarray(region))


@functools.lru_cache(maxsize=32)
def _tint_table(alpha: float, color: tuple[int, int, int]) -> np.ndarray:
    """Per-channel lookup table value → round(value·(1−alpha) + tint·alpha), shape 1×256×3 for cv2.LUT."""
    values = np.arange(256, dtype=np.float32)[:, None]
    tint = np.asarray(color, dtype=np.float32)[None, :]
    table = np.clip(values * (1.0 - alpha) + tint * alpha + 0.5, 0, 255).astype(np.uint8)
    lut: np.ndarray = table.reshape(1, 256, 3)
    return lut


def mask_to_mono8(mask: np.ndarray) -> np.ndarray:
    """bool mask → 0/255 uint8, the encoding RViz and simple consumers expect."""
    mono: np.ndarray = mask.astype(bool, copy=False).astype(np.uint8) * np.uint8(255)
    return mono
