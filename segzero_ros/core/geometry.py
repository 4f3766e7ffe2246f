"""Geometry of the 840×840 reasoning frame.

The reasoner sees every image squashed (aspect ratio NOT preserved) to 840×840 and answers in that frame's
integer pixels; everything downstream works in the original image's pixels. These helpers are the only
place where the two frames meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # PIL is only needed by the caller that actually resizes.
    from PIL import Image

REASONING_FRAME_SIZE = 840
"""Side of the square frame the reasoner sees: 30 × 28 px, i.e. 900 visual tokens for Qwen2.5-VL."""


@dataclass(frozen=True)
class Point:
    x: int
    y: int

    def as_list(self) -> list[int]:
        return [self.x, self.y]


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel coordinates, corners inclusive: (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]

    def contains(self, point: Point) -> bool:
        return self.x1 <= point.x <= self.x2 and self.y1 <= point.y <= self.y2


@dataclass(frozen=True)
class ObjectPrompt:
    """One object as the reasoner locates it and segmenters and trackers take it: a box and its positive points,
    in original-image pixels (Seg-Zero: two points; VisionReasoner: one or none)."""

    box: Box
    points: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))  # a list from a caller stays hashable and equal


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a mask's foreground, corners inclusive; None when it has no foreground pixel."""
    foreground = np.asarray(mask).astype(bool, copy=False)
    rows = np.flatnonzero(foreground.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(foreground.any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


@dataclass(frozen=True)
class FrameScale:
    """Factors that map reasoning-frame pixels to original-image pixels (x_factor = W / 840)."""

    x_factor: float
    y_factor: float

    @classmethod
    def for_image(cls, image_size: tuple[int, int], frame_size: int = REASONING_FRAME_SIZE) -> FrameScale:
        width, height = image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}×{height}")
        return cls(x_factor=width / frame_size, y_factor=height / frame_size)

    def x_to_image(self, x_frame: int) -> int:
        # Python's round (half to even) on int × factor: the reference's exact arithmetic.
        return round(x_frame * self.x_factor)

    def y_to_image(self, y_frame: int) -> int:
        return round(y_frame * self.y_factor)

    def x_to_frame(self, x_image: float) -> int:
        return round(x_image / self.x_factor)

    def y_to_frame(self, y_image: float) -> int:
        return round(y_image / self.y_factor)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def clamp_point(point: Point, image_size: tuple[int, int]) -> Point:
    """Keep a point on a pixel of the image: x in [0, W-1], y in [0, H-1]."""
    width, height = image_size
    return Point(clamp(point.x, 0, width - 1), clamp(point.y, 0, height - 1))


def normalize_box(box: Box, image_size: tuple[int, int]) -> Box:
    """Order the corners (x1 <= x2, y1 <= y2) and clamp them onto the image's pixels."""
    width, height = image_size
    x1, x2 = sorted((box.x1, box.x2))
    y1, y2 = sorted((box.y1, box.y2))
    return Box(
        clamp(x1, 0, width - 1),
        clamp(y1, 0, height - 1),
        clamp(x2, 0, width - 1),
        clamp(y2, 0, height - 1),
    )


def box_to_image(box: Box, scale: FrameScale) -> Box:
    return Box(
        scale.x_to_image(box.x1),
        scale.y_to_image(box.y1),
        scale.x_to_image(box.x2),
        scale.y_to_image(box.y2),
    )


def point_to_image(point: Point, scale: FrameScale) -> Point:
    return Point(scale.x_to_image(point.x), scale.y_to_image(point.y))


def box_to_frame(box: Box, scale: FrameScale) -> Box:
    """Original-image box → reasoning frame (for building training targets from full-size masks)."""
    return Box(
        scale.x_to_frame(box.x1),
        scale.y_to_frame(box.y1),
        scale.x_to_frame(box.x2),
        scale.y_to_frame(box.y2),
    )


def point_to_frame(point: Point, scale: FrameScale) -> Point:
    return Point(scale.x_to_frame(point.x), scale.y_to_frame(point.y))


def resize_to_reasoning_frame(image: Image.Image, frame_size: int = REASONING_FRAME_SIZE) -> Image.Image:
    """Squash to frame_size² with PIL bilinear filtering, exactly like the reference (no letterboxing)."""
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.resize((frame_size, frame_size), PILImage.Resampling.BILINEAR)
