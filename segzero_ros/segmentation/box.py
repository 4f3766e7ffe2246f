"""Box-fill segmenter: the mask is the box itself.

A baseline that shows how much SAM2 adds over the reasoner's box alone, and a dependency-free segmenter
for exercising everything around segmentation (node, CLI, evaluation) without loading a model.
"""

from __future__ import annotations

import numpy as np

from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation.base import SegmentOutput


class BoxSegmenter:
    def __init__(self) -> None:
        self._shape: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return "box"

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> BoxSegmenter:
        return cls()

    def set_image(self, image: np.ndarray) -> None:
        self._shape = (int(image.shape[0]), int(image.shape[1]))

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        box = prompt.box
        if self._shape is None:
            raise RuntimeError("set_image must be called before segment")
        mask = np.zeros(self._shape, dtype=bool)
        mask[box.y1 : box.y2 + 1, box.x1 : box.x2 + 1] = True
        return SegmentOutput(mask=mask, score=1.0)

    def close(self) -> None:
        self._shape = None
