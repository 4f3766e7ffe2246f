"""A colour-key segmenter and tracker for tests of what happens AROUND segmentation and tracking (3D on every
tracked frame, MoveIt's planning scene, the node's outputs) on synthetic scenes whose objects have a colour of
their own: the object is exactly the pixels of the colour under its first prompt point (the box's centre when it
has none). On such scenes that is the true silhouette, which lets a test compare the node's 3D with the scene's
geometry. Not a model: tracker exactness is tested against sam2 / transformers elsewhere.

    from segzero_ros.testing.colour import register_colour_backend
    register_colour_backend()       # segmenter.backend "colour", with its tracker
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segzero_ros.backends import register_segmenter
from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation.base import SegmentOutput
from segzero_ros.tracking.base import TrackedMask, check_frame

COLOUR_BACKEND = "colour"


def _key(image: np.ndarray, prompt: ObjectPrompt) -> np.ndarray:
    point = prompt.points[0] if prompt.points else None
    x = point.x if point is not None else (prompt.box.x1 + prompt.box.x2) // 2
    y = point.y if point is not None else (prompt.box.y1 + prompt.box.y2) // 2
    return np.asarray(image[y, x], dtype=np.uint8)


def _matching(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.asarray(np.all(image == colour, axis=-1))


class ColourSegmenter:
    """The pixels of the key colour inside the prompt's box."""

    def __init__(self) -> None:
        self._image: np.ndarray | None = None

    @property
    def name(self) -> str:
        return COLOUR_BACKEND

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> ColourSegmenter:
        del config
        return cls()

    def set_image(self, image: np.ndarray) -> None:
        self._image = image

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        if self._image is None:
            raise RuntimeError("set_image must be called before segment")
        box = prompt.box
        inside = np.zeros(self._image.shape[:2], dtype=bool)
        inside[box.y1:box.y2 + 1, box.x1:box.x2 + 1] = True
        return SegmentOutput(mask=_matching(self._image, _key(self._image, prompt)) & inside, score=1.0)

    def close(self) -> None:
        self._image = None


class ColourTracker:
    """Each object is the pixels of its key colour anywhere on the frame; absent when there are none."""

    def __init__(self) -> None:
        self._colours: list[np.ndarray] = []
        self._frames = 0

    @property
    def name(self) -> str:
        return COLOUR_BACKEND

    @classmethod
    def from_config(cls, config: SegmenterConfig, **options: Any) -> ColourTracker:
        del config, options
        return cls()

    def start(self, image: np.ndarray, prompt: ObjectPrompt) -> TrackedMask:
        return self.start_objects(image, [prompt])[0]

    def track(self, image: np.ndarray) -> TrackedMask:
        return self.track_objects(image)[0]

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
        check_frame(image)
        self._colours, self._frames = [_key(image, prompt) for prompt in prompts], 0
        return self._masks(image)

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        check_frame(image)
        self._frames += 1
        return self._masks(image)

    def _masks(self, image: np.ndarray) -> list[TrackedMask]:
        masks = [_matching(image, colour) for colour in self._colours]
        return [TrackedMask(mask, 1.0 if mask.any() else 0.0, bool(mask.any()), self._frames) for mask in masks]

    def reset(self) -> None:
        self._colours, self._frames = [], 0

    def close(self) -> None:
        self.reset()


def register_colour_backend() -> None:
    """segmenter.backend "colour" with its tracker (idempotent)."""
    register_segmenter(COLOUR_BACKEND, ColourSegmenter.from_config, tracker=ColourTracker.from_config)
