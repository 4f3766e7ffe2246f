"""What one command produces: the typed result shared by the pipeline, CLI, evaluation and ROS node."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, ObjectPrompt, Point


class ErrorKind(str, enum.Enum):
    """Why a command produced no mask. Values are stable strings: they go into messages and reports."""

    INVALID_INPUT = "invalid_input"
    NO_IMAGE = "no_image"
    STALE_IMAGE = "stale_image"
    QUEUE_FULL = "queue_full"
    NOT_READY = "not_ready"
    REASONER_FAILED = "reasoner_failed"
    UNPARSEABLE_OUTPUT = "unparseable_output"
    SEGMENTER_FAILED = "segmenter_failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    """The caller canceled the command (an action goal's cancel) before it finished."""
    NOT_FOUND = "not_found"
    """The model answered that no object matches the command (an empty list); only formats that can say so."""


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock seconds per stage; 0 for stages that did not run."""

    reason_s: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "reason_s": self.reason_s,
            "encode_s": self.encode_s,
            "decode_s": self.decode_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True)
class SegmentedObject:
    """One object of an answer: the reasoner's prompt for it and, once segmented, its own mask."""

    prompt: ObjectPrompt
    mask: np.ndarray | None = field(default=None, repr=False)
    """bool H×W at the source resolution; None when segmentation did not run or failed."""
    score: float | None = None
    """The segmenter's quality estimate of `mask` (SAM2: predicted IoU)."""

    @property
    def box(self) -> Box:
        return self.prompt.box

    @property
    def points(self) -> tuple[Point, ...]:
        """Positive points: two for Seg-Zero, one (or none) for VisionReasoner."""
        return self.prompt.points

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box.as_list(),
            "points": [p.as_list() for p in self.points],
            "score": self.score,
            "mask_pixels": int(self.mask.sum()) if self.mask is not None else None,
        }


MAX_LABEL_OBJECTS = 65535
"""Objects an instance label image can tell apart (mono16)."""


def instance_labels(masks: Sequence[np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """H×W labels of the objects' masks: 0 background, object i (0-based) is i + 1 (None: an object without
    pixels); where masks overlap the earlier object (the model's order) keeps the pixel. uint8 up to 255
    objects, uint16 beyond."""
    if len(masks) > MAX_LABEL_OBJECTS:
        raise ValueError(f"{len(masks)} objects exceed the {MAX_LABEL_OBJECTS} a label image can hold")
    labels = np.zeros(shape, dtype=np.uint8 if len(masks) <= 255 else np.uint16)
    for index in range(len(masks) - 1, -1, -1):  # the earliest object is written last and wins overlaps
        mask = masks[index]
        if mask is not None:
            labels[mask] = index + 1
    return labels


@dataclass(frozen=True)
class SegmentationResult:
    command: str
    image_size: tuple[int, int]
    """(width, height) of the source image."""
    reasoning: str = ""
    raw_output: str = ""
    objects: tuple[SegmentedObject, ...] = ()
    """Every object of the answer, in the model's order (Seg-Zero: exactly one); empty when not found."""
    mask: np.ndarray | None = field(default=None, repr=False)
    """bool H×W at the source resolution, the union of the objects' masks; None on error."""
    timings: StageTimings = StageTimings()
    error: str | None = None
    error_kind: ErrorKind | None = None
    reasoner_name: str = ""
    segmenter_name: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and self.mask is not None

    @property
    def box(self) -> Box | None:
        """The first object's box: what a single-object client reads."""
        return self.objects[0].box if self.objects else None

    @property
    def points(self) -> tuple[Point, ...] | None:
        """The first object's points."""
        return self.objects[0].points if self.objects else None

    @property
    def score(self) -> float | None:
        """The first object's mask score."""
        return self.objects[0].score if self.objects else None

    def labels(self) -> np.ndarray | None:
        """Instance label image of the objects (:func:`instance_labels`); None on error."""
        if self.mask is None:
            return None
        return instance_labels([found.mask for found in self.objects], self.mask.shape[:2])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the mask is summarised by its pixel count, not embedded)."""
        return {
            "command": self.command,
            "ok": self.ok,
            "image_size": list(self.image_size),
            "reasoning": self.reasoning,
            "raw_output": self.raw_output,
            "box": self.box.as_list() if self.box else None,
            "points": [p.as_list() for p in self.points] if self.points else None,
            "score": self.score,
            "mask_pixels": int(self.mask.sum()) if self.mask is not None else None,
            "objects": [obj.to_dict() for obj in self.objects],
            "timings": self.timings.to_dict(),
            "error": self.error,
            "error_kind": self.error_kind.value if self.error_kind else None,
            "reasoner": self.reasoner_name,
            "segmenter": self.segmenter_name,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def error_result(
    command: str, image_size: tuple[int, int], kind: ErrorKind, message: str, **extra: Any
) -> SegmentationResult:
    return SegmentationResult(command=command, image_size=image_size, error=message, error_kind=kind, **extra)
