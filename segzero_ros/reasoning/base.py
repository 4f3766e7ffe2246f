"""The reasoner protocol: every backend (local transformers, a remote server, a scripted test double)
returns the same typed output, so the pipeline and node never care which one is running."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from segzero_ros.config import ReasonerConfig
from segzero_ros.core.answer import AnswerParseError, extract_reasoning
from segzero_ros.core.families import SEG_ZERO_FRAME, AnswerFrame, resolve_frame
from segzero_ros.core.formats import SEG_ZERO, AnswerFormat, answer_format
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.core.progress import Progress
from segzero_ros.errors import CanceledError


@dataclass(frozen=True)
class ReasonerOutput:
    raw_output: str
    """Everything the model generated (special tokens removed)."""
    reasoning: str
    objects: tuple[ObjectPrompt, ...] | None
    """Boxes and points in ORIGINAL image pixels, in the model's order; () when the model said the target is
    not in view; None when the output could not be parsed."""
    error: str | None
    """Why objects is None; None on success."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    preprocess_s: float = 0.0
    generate_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.objects is not None


def output_from_text(
    raw_output: str,
    image_size: tuple[int, int],
    *,
    format: AnswerFormat | str = SEG_ZERO,
    frame: AnswerFrame = SEG_ZERO_FRAME,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    preprocess_s: float = 0.0,
    generate_s: float = 0.0,
) -> ReasonerOutput:
    """Parse generated text in the answer `format` and the reasoner's `frame` (its coordinates); a parse failure
    becomes an explicit error, not an exception."""
    spec = answer_format(format) if isinstance(format, str) else format
    objects: tuple[ObjectPrompt, ...] | None
    try:
        answer = spec.parse(raw_output, image_size, frame.extent)
        objects, error, reasoning = answer.objects, None, answer.reasoning
    except AnswerParseError as exc:
        objects, error, reasoning = None, f"unparseable model output: {exc}", extract_reasoning(raw_output)
    return ReasonerOutput(
        raw_output=raw_output,
        reasoning=reasoning,
        objects=objects,
        error=error,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        preprocess_s=preprocess_s,
        generate_s=generate_s,
    )


def resolve_answer_frame(config: ReasonerConfig, model_type: str | None = None) -> AnswerFrame:
    """The reasoner's frame and coordinates: the configured family, or the checkpoint's `model_type` (None when
    the backend cannot see its checkpoint: Seg-Zero's family), with coordinates and frame size unless set."""
    return resolve_frame(config.family, config.coordinates, config.frame_size, model_type)


@runtime_checkable
class Reasoner(Protocol):
    """Reads RGB images (H×W×3 uint8) and commands; answers in original-image pixels."""

    @property
    def name(self) -> str:
        """Model identifier, reported with every result."""
        ...

    @property
    def answer_frame(self) -> AnswerFrame:
        """The frame the image is resized to and the coordinates the model answers in (its family's)."""
        ...

    def reason(self, image: np.ndarray, command: str) -> ReasonerOutput: ...

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        """One output per (image, command) pair, in order; backends batch them in one forward pass."""
        ...

    def reason_stream(self, image: np.ndarray, command: str, progress: Progress) -> ReasonerOutput:
        """Like `reason`, handing each chunk of generated text to `progress.text` as it is generated, and
        stopping early when `progress.cancel` is set (then it raises CanceledError)."""
        ...

    def close(self) -> None:
        """Release model memory (GPU included)."""
        ...


class BatchReasonerBase:
    """Gives backends `reason` for free on top of their `reason_batch`, and a `reason_stream` that hands the
    whole output over as one chunk (backends that generate token by token override it)."""

    answer_frame: AnswerFrame = SEG_ZERO_FRAME
    """Seg-Zero's unless the backend resolves its own (`resolve_answer_frame`)."""

    def reason(self, image: np.ndarray, command: str) -> ReasonerOutput:
        return self.reason_batch([image], [command])[0]

    def reason_stream(self, image: np.ndarray, command: str, progress: Progress) -> ReasonerOutput:
        if progress.canceled:
            raise CanceledError("canceled before reasoning started")
        output = self.reason(image, command)
        if progress.canceled:
            raise CanceledError("canceled while reasoning")
        progress.text(output.raw_output)
        return output

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""
