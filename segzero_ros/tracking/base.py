"""The tracker protocol and its registry (backend name → factory), like the segmenters'."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import Box, Point
from segzero_ros.errors import BackendUnavailableError


@dataclass(frozen=True)
class TrackedMask:
    mask: np.ndarray = field(repr=False)
    """bool H×W at the frame's resolution (all False when the object is not present)."""
    score: float
    """SAM2's object-presence probability on this frame (sigmoid of its object-score logit)."""
    present: bool
    """SAM2's object-score logit > 0: the object is visible on this frame."""
    frame_index: int
    """Frames since `start` (0 = the prompted frame)."""


@runtime_checkable
class Tracker(Protocol):
    @property
    def name(self) -> str: ...

    def start(self, image: np.ndarray, box: Box, points: Sequence[Point]) -> TrackedMask:
        """Forget any previous target; segment and remember the object the box and points prompt."""
        ...

    def track(self, image: np.ndarray) -> TrackedMask:
        """The remembered object on the next frame (same size as the started one until `reset`)."""
        ...

    def start_objects(self, image: np.ndarray, prompts: Sequence[tuple[Box, Sequence[Point]]]) -> list[TrackedMask]:
        """Several objects at once (one image encoding per frame, a memory per object); `start` is one of them."""
        ...

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        """Every started object on the next frame, in the order they were started."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class ObjectMemory:
    """One tracked object's memory, kept as sam2's video predictor keeps it per object id: the prompted
    frame's outputs (`cond`), the recent frames' (`non_cond`, a bounded window) and the latest low-res logits."""

    def __init__(self) -> None:
        self.cond: dict[int, dict[str, Any]] = {}
        self.non_cond: dict[int, dict[str, Any]] = {}
        self.latest: Any = None


class ObjectTrackerBase:
    """What every tracker backend shares: its name, the single-object verbs as the multi-object ones with one
    prompt, and the memory count. Subclasses set `_name` and `_objects` and implement `start_objects` /
    `track_objects`."""

    _name: str
    _objects: list[ObjectMemory]

    @property
    def name(self) -> str:
        return self._name

    @property
    def stored_frames(self) -> int:
        """Frames held in memory now (prompted + window, over all objects): bounded, however long it runs."""
        return sum(len(memory.cond) + len(memory.non_cond) for memory in self._objects)

    def start(self, image: np.ndarray, box: Box, points: Sequence[Point]) -> TrackedMask:
        return self.start_objects(image, [(box, points)])[0]

    def track(self, image: np.ndarray) -> TrackedMask:
        return self.track_objects(image)[0]

    def start_objects(self, image: np.ndarray, prompts: Sequence[tuple[Box, Sequence[Point]]]) -> list[TrackedMask]:
        raise NotImplementedError

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        raise NotImplementedError

    def low_res_logits(self, index: int = 0) -> Any:
        """Object `index`'s latest low-resolution mask logits (for exactness tests)."""
        return self._objects[index].latest if index < len(self._objects) else None


def check_frame(image: object) -> tuple[int, int]:
    """(height, width) of an RGB uint8 H×W×3 frame; ValueError saying what it is otherwise."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f"expected an RGB uint8 H×W×3 frame, got {described}")
    return int(image.shape[0]), int(image.shape[1])


def presence_probability(logit: float) -> float:
    """Sigmoid of SAM2's object-score logit, overflow-free (sam2 uses -1024 for "no object")."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exponential = math.exp(logit)
    return exponential / (1.0 + exponential)


TRACKER_BACKENDS: dict[str, str] = {
    "sam2": "segzero_ros.tracking.sam2_tracker:Sam2Tracker.from_config",
    "onnxruntime": "segzero_ros.tracking.onnx_tracker:OnnxTracker.from_config",
    "tensorrt": "segzero_ros.tracking.tensorrt_tracker:TensorRTTracker.from_config",
}
"""Segmenter backend → the tracker built from the same config."""


def build_tracker(config: SegmenterConfig, **options: Any) -> Tracker:
    """The tracker for the segmenter `config` describes (same model files, device and image size)."""
    entry = TRACKER_BACKENDS.get(config.backend)
    if entry is None:
        raise BackendUnavailableError(
            f"no tracker for segmenter backend {config.backend!r} yet (tracking backends: "
            f"{', '.join(TRACKER_BACKENDS)}); track with segmenter.backend sam2")
    module_name, _, attribute_path = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        target = getattr(target, attribute)
    tracker: Tracker = target(config, **options)
    return tracker
