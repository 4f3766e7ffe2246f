"""The reasoner protocol: every backend (local transformers, a remote server, a scripted test double)
returns the same typed output, so the pipeline and node never care which one is running."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from segzero_ros.core.answer import AnswerParseError, SegZeroAnswer, extract_reasoning, parse_answer


@dataclass(frozen=True)
class ReasonerOutput:
    raw_output: str
    """Everything the model generated (special tokens removed)."""
    reasoning: str
    answer: SegZeroAnswer | None
    """Box and points in ORIGINAL image pixels; None when the output could not be parsed."""
    error: str | None
    """Why answer is None; None on success."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    preprocess_s: float = 0.0
    generate_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.answer is not None


def output_from_text(
    raw_output: str,
    image_size: tuple[int, int],
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    preprocess_s: float = 0.0,
    generate_s: float = 0.0,
) -> ReasonerOutput:
    """Parse generated text into a ReasonerOutput; a parse failure becomes an explicit error, not an exception."""
    try:
        answer: SegZeroAnswer | None = parse_answer(raw_output, image_size)
        error = None
        reasoning = answer.reasoning if answer else ""
    except AnswerParseError as exc:
        answer, error, reasoning = None, f"unparseable model output: {exc}", extract_reasoning(raw_output)
    return ReasonerOutput(
        raw_output=raw_output,
        reasoning=reasoning,
        answer=answer,
        error=error,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        preprocess_s=preprocess_s,
        generate_s=generate_s,
    )


@runtime_checkable
class Reasoner(Protocol):
    """Reads RGB images (H×W×3 uint8) and commands; answers in original-image pixels."""

    @property
    def name(self) -> str:
        """Model identifier, reported with every result."""
        ...

    def reason(self, image: np.ndarray, command: str) -> ReasonerOutput: ...

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        """One output per (image, command) pair, in order; backends batch them in one forward pass."""
        ...

    def close(self) -> None:
        """Release model memory (GPU included)."""
        ...


class BatchReasonerBase:
    """Gives backends `reason` for free on top of their `reason_batch`."""

    def reason(self, image: np.ndarray, command: str) -> ReasonerOutput:
        return self.reason_batch([image], [command])[0]

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""
