"""What one command produces: the typed result shared by the pipeline, CLI, evaluation and ROS node."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, Point


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


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock seconds per stage; 0 for stages that did not run."""

    reason_s: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "reason_s": self.reason_s,
            "encode_s": self.encode_s,
            "decode_s": self.decode_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True)
class SegmentationResult:
    command: str
    image_size: tuple[int, int]
    """(width, height) of the source image."""
    reasoning: str = ""
    raw_output: str = ""
    box: Box | None = None
    points: tuple[Point, Point] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    """bool H×W at the source resolution; None on error."""
    score: float | None = None
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
            "timings": self.timings.as_dict(),
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
