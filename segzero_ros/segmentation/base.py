"""The segmenter protocol shared by the sam2-torch, onnxruntime and tensorrt backends.

Split in two calls like SAM2's image predictor: `set_image` runs the heavy image encoder once, `segment`
runs the light prompt decoder and may be called several times per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from segzero_ros.core.geometry import ObjectPrompt


@dataclass(frozen=True)
class SegmentOutput:
    mask: np.ndarray
    """bool H×W at the original image's resolution."""
    score: float
    """The segmenter's own quality estimate of the chosen mask (SAM2: predicted IoU)."""


@runtime_checkable
class Segmenter(Protocol):
    @property
    def name(self) -> str: ...

    def set_image(self, image: np.ndarray) -> None:
        """Encode an RGB H×W×3 uint8 image at full resolution."""
        ...

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        """Mask of the object a box and positive points (original-image pixels) prompt, on the last image set."""
        ...

    def close(self) -> None:
        """Release model memory (GPU included)."""
        ...


def best_index(scores: np.ndarray) -> int:
    """Seg-Zero keeps the highest-scoring of SAM2's multimask outputs; the first of equal scores wins.
    The one rule every backend applies (the graph runtimes then upsample only the winner)."""
    return int(np.argmax(scores))


def select_best_mask(masks: np.ndarray, scores: np.ndarray) -> SegmentOutput:
    """The best-scoring mask of N full-resolution candidates (:func:`best_index`)."""
    if masks.ndim != 3 or scores.ndim != 1 or masks.shape[0] != scores.shape[0] or scores.size == 0:
        raise ValueError(f"expected N×H×W masks and N scores, got {masks.shape} and {scores.shape}")
    best = best_index(scores)
    return SegmentOutput(mask=np.asarray(masks[best] > 0 if masks.dtype != np.bool_ else masks[best]),
                         score=float(scores[best]))
