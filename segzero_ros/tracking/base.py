"""The tracker protocol, what its backends share, and `build_tracker` (trackers are registered with their
segmenter backend in `segzero_ros.registry`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segzero_ros.config import SegmenterConfig, widen
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.errors import BackendUnavailableError
from segzero_ros.registry import backend, backends, load


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

    def start(self, image: np.ndarray, prompt: ObjectPrompt) -> TrackedMask:
        """Forget any previous target; segment and remember the object the box and points prompt."""
        ...

    def track(self, image: np.ndarray) -> TrackedMask:
        """The remembered object on the next frame (same size as the started one until `reset`)."""
        ...

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
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

    def start(self, image: np.ndarray, prompt: ObjectPrompt) -> TrackedMask:
        return self.start_objects(image, [prompt])[0]

    def track(self, image: np.ndarray) -> TrackedMask:
        return self.track_objects(image)[0]

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
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


def build_tracker(config: SegmenterConfig, **options: Any) -> Tracker:
    """The tracker of the segmenter `config` describes (same model files, device and image size), as its
    backend's registration names it (`segzero_ros.registry`)."""
    record = backend("segmenter", config.backend)
    if record.tracker is None:
        trackers = [name for name, entry in backends("segmenter").items() if entry.tracker is not None]
        raise BackendUnavailableError(
            f"segmenter backend {config.backend!r} has no tracker (backends that track: {', '.join(trackers)})")
    tracker: Tracker = load(record.tracker)(widen(config, record.config), **options)
    return tracker
