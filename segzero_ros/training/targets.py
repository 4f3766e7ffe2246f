"""Training targets from a binary mask: the GT box and two points, computed as Seg-Zero's data preparation does.

The reference (``prepare_dataset/training_data_prepare_toturial.ipynb`` in Seg-Zero) works on the mask at the
ORIGINAL resolution and only then scales to the 840×840 frame; reproducing its choices matters because the
rewards compare the policy's answer against exactly these numbers:

* **Box**: the mask's extreme pixels, ``[min x, min y, max x, max y]``, corners inclusive.
* **Point 1**: the maximum of the Euclidean distance transform (distance of each mask pixel to the nearest
  background pixel; outside the image does NOT count as background), first in row-major order on ties.
* **Point 2**: among mask pixels whose distance to point 1 is strictly greater than the median of those
  distances, the one with the largest distance-transform value, first in row-major order on ties. When no
  pixel qualifies (a single pixel, a plus sign), the distance-transform maximum inside the window
  ``[cy-10, cy+10) × [cx-10, cx+10)`` around the mask's truncated centroid, moved to the nearest mask pixel
  (squared distance, first in row-major order) if it is background.
* **Frame**: every coordinate maps with ``int(v * (840 / size) + 0.5)`` (round half up, x with the width and y
  with the height), which can give 840 for the last pixel of an image wider than 1680 px, as in the reference.

Where ours differs: a mask with no background pixel at all (the whole image) has no defined distance
transform; the reference's scipy call then measures from a phantom pixel above the top-left corner and puts
point 1 in the bottom-right corner. Here the image border counts as background in that one case, so the
point lands in the middle.

Distances come from OpenCV's exact (Felzenszwalb) transform in float32; the winners of every arg-max are then
re-checked with exact integer squared distances, so ties and near-ties resolve as they do in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segzero_ros.core.geometry import REASONING_FRAME_SIZE, Box, Point, mask_box
from segzero_ros.core.solution import format_solution, object_solution

FALLBACK_HALF_WINDOW = 10
"""Half side of the window around the centroid searched when no pixel is farther than the median."""
_NEAR_MAX_RELATIVE = 1e-5
"""float32 distances this close (relative) to a maximum are re-checked with exact integer arithmetic."""
_EXACT_CHUNK = 256


class EmptyMaskError(ValueError):
    """The mask has no foreground pixel, so there is nothing to point at."""


@dataclass(frozen=True)
class MaskTargets:
    """GT box and the two points, in one coordinate frame (original image pixels or the 840 frame)."""

    box: Box
    points: tuple[Point, Point]

    def to_frame(self, image_size: tuple[int, int], frame_size: int = REASONING_FRAME_SIZE) -> MaskTargets:
        """Map original-image pixels to the reasoning frame with the reference's arithmetic."""
        width, height = image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}×{height}")
        x_factor = frame_size / width
        y_factor = frame_size / height
        box = Box(
            scale_to_frame(self.box.x1, x_factor),
            scale_to_frame(self.box.y1, y_factor),
            scale_to_frame(self.box.x2, x_factor),
            scale_to_frame(self.box.y2, y_factor),
        )
        first, second = (Point(scale_to_frame(p.x, x_factor), scale_to_frame(p.y, y_factor)) for p in self.points)
        return MaskTargets(box, (first, second))

    def solution(self) -> str:
        """The ``<box>…</box><points>…</points>`` string the rewards read (use frame coordinates)."""
        return format_solution(self.box, self.points)


def scale_to_frame(value: int, factor: float) -> int:
    """``int(value * factor + 0.5)``: the reference's round-half-up, not Python's round-half-even."""
    return int(value * factor + 0.5)


def mask_targets(mask: np.ndarray) -> MaskTargets:
    """Box and points of a bool H×W mask, in the mask's own pixels."""
    foreground = _as_bool_mask(mask)
    box = mask_box(foreground)
    if box is None:
        raise EmptyMaskError("the mask has no foreground pixel")
    return MaskTargets(box, representative_points(foreground))


def frame_targets(mask: np.ndarray, frame_size: int = REASONING_FRAME_SIZE) -> MaskTargets:
    """Box and points of a mask at original resolution, mapped to the square reasoning frame."""
    foreground = _as_bool_mask(mask)
    height, width = foreground.shape
    return mask_targets(foreground).to_frame((width, height), frame_size)


def solution_for_mask(mask: np.ndarray, frame_size: int = REASONING_FRAME_SIZE) -> str:
    """The training ``solution`` string for a mask at original resolution."""
    return frame_targets(mask, frame_size).solution()


def object_list_solution(instances: Sequence[np.ndarray], frame_size: int = REASONING_FRAME_SIZE) -> str:
    """The VisionReasoner ``solution`` of a sample with several (or no) GT objects, in the 840 frame: per
    object its box and ONE point, the first "largest inscribed circle" point of :func:`representative_points`
    (VisionReasoner answers one point per object). No objects gives ``[]``."""
    objects: list[tuple[list[int], list[int]]] = []
    for instance in instances:
        targets = frame_targets(instance, frame_size)
        objects.append((targets.box.as_list(), targets.points[0].as_list()))
    return object_solution(objects)





def representative_points(mask: np.ndarray) -> tuple[Point, Point]:
    """The two "largest inscribed circle" points of the reference data preparation (see the module doc)."""
    foreground = _as_bool_mask(mask)
    ys, xs = np.nonzero(foreground)  # row-major order, as np.where gives them to the reference
    if ys.size == 0:
        raise EmptyMaskError("the mask has no foreground pixel")
    height, width = foreground.shape
    oracle = _ExactDistances(foreground)
    distances = oracle.approximate

    flat_first = _first_arg_max(distances.ravel(), np.arange(foreground.size), oracle)
    y1, x1 = divmod(int(flat_first), width)

    squared_to_first = (ys - y1) ** 2 + (xs - x1) ** 2
    to_first = np.sqrt(squared_to_first.astype(np.float64))
    far = to_first > np.median(to_first)
    if far.any():
        far_flat = ys[far] * width + xs[far]
        y2, x2 = divmod(int(_first_arg_max(distances.ravel(), far_flat, oracle)), width)
    else:
        center_y = int(np.mean(ys))
        center_x = int(np.mean(xs))
        top, bottom = max(0, center_y - FALLBACK_HALF_WINDOW), min(height, center_y + FALLBACK_HALF_WINDOW)
        left, right = max(0, center_x - FALLBACK_HALF_WINDOW), min(width, center_x + FALLBACK_HALF_WINDOW)
        window_rows, window_cols = np.mgrid[top:bottom, left:right]
        window_flat = (window_rows * width + window_cols).ravel()
        y2, x2 = divmod(int(_first_arg_max(distances.ravel(), window_flat, oracle)), width)
        if not foreground[y2, x2]:
            nearest = int(np.argmin((xs - x2) ** 2 + (ys - y2) ** 2))
            y2, x2 = int(ys[nearest]), int(xs[nearest])
    return Point(int(x1), int(y1)), Point(int(x2), int(y2))


class _ExactDistances:
    """Distance transform of a mask: fast float32 everywhere, exact integer squares on request."""

    def __init__(self, foreground: np.ndarray) -> None:
        import cv2

        self._foreground = foreground
        self._width = foreground.shape[1]
        self._no_background = bool(foreground.all())
        # Where the mask fills the image, the border is the only background there is (see the module doc).
        source = np.pad(foreground, 1, constant_values=False) if self._no_background else foreground
        transformed = cv2.distanceTransform(source.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        self.approximate: np.ndarray = transformed[1:-1, 1:-1] if self._no_background else transformed
        background = ~source
        touches_foreground = np.zeros_like(background)
        touches_foreground[1:, :] |= source[:-1, :]
        touches_foreground[:-1, :] |= source[1:, :]
        touches_foreground[:, 1:] |= source[:, :-1]
        touches_foreground[:, :-1] |= source[:, 1:]
        # The nearest background pixel of any foreground pixel is always 4-adjacent to the foreground.
        by, bx = np.nonzero(background & touches_foreground)
        offset = 1 if self._no_background else 0
        self._boundary_y = by.astype(np.int64) - offset
        self._boundary_x = bx.astype(np.int64) - offset

    def squared(self, flat_indices: np.ndarray) -> np.ndarray:
        """Exact squared distance to the nearest background pixel for each flat index (0 on background)."""
        result = np.zeros(flat_indices.size, dtype=np.int64)
        ys, xs = np.divmod(flat_indices.astype(np.int64), self._width)
        inside = self._foreground[ys, xs]
        positions = np.flatnonzero(inside)
        for start in range(0, positions.size, _EXACT_CHUNK):
            chunk = positions[start : start + _EXACT_CHUNK]
            dy = ys[chunk, None] - self._boundary_y[None, :]
            dx = xs[chunk, None] - self._boundary_x[None, :]
            result[chunk] = (dy * dy + dx * dx).min(axis=1)
        return result


def _first_arg_max(distances: np.ndarray, flat_indices: np.ndarray, oracle: _ExactDistances) -> int:
    """The first of ``flat_indices`` (in their order) whose exact distance is the largest among them."""
    values = distances[flat_indices]
    peak = float(values.max())
    near = flat_indices[values >= peak * (1.0 - _NEAR_MAX_RELATIVE)]
    exact = oracle.squared(near)
    return int(near[int(np.argmax(exact))])


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H×W), got shape {array.shape}")
    if array.size == 0:
        raise EmptyMaskError("the mask is empty (zero size)")
    return array.astype(bool, copy=False)
