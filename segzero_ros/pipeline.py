"""Reasoner + segmenter → one SegmentationResult per command. The one place that orchestrates the two stages.

The pipeline is the error boundary: whatever a backend raises (parse failures, model errors, GPU out of
memory) becomes a result with an explicit ErrorKind, so callers such as the ROS node always get an answer.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from segzero_ros.core.result import ErrorKind, SegmentationResult, StageTimings, error_result
from segzero_ros.reasoning.base import Reasoner, ReasonerOutput
from segzero_ros.segmentation.base import Segmenter

LOG = logging.getLogger(__name__)


def image_size_of(image: np.ndarray) -> tuple[int, int]:
    return (int(image.shape[1]), int(image.shape[0])) if image.ndim >= 2 else (0, 0)


def validate_image(image: object) -> str | None:
    """Why an image cannot be used, or None. The pipeline takes RGB H×W×3 uint8 only."""
    if not isinstance(image, np.ndarray):
        return f"image must be a numpy array, got {type(image).__name__}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image must be H×W×3 RGB, got shape {image.shape}"
    if image.dtype != np.uint8:
        return f"image must be uint8, got {image.dtype}"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return "image is empty"
    return None


def describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def trim_gpu_cache() -> None:
    """After a failed model call (e.g. CUDA out of memory) hand the call's cached blocks back to the driver, so
    the next command, or another process on the GPU, starts clean. Shutdown is the backends' close()."""
    torch = sys.modules.get("torch")  # never import torch just to free memory it does not hold
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class SegZeroPipeline:
    def __init__(self, reasoner: Reasoner, segmenter: Segmenter) -> None:
        self.reasoner = reasoner
        self.segmenter = segmenter

    def run(self, image: np.ndarray, command: str) -> SegmentationResult:
        return self.run_batch([image], [command])[0]

    def run_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[SegmentationResult]:
        """Reason about all pairs in one batch, then segment each; one result per pair, in order."""
        if len(images) != len(commands):
            raise ValueError(f"{len(images)} images but {len(commands)} commands")
        started = time.perf_counter()
        results: list[SegmentationResult | None] = [None] * len(images)
        valid: list[int] = []
        for index, (image, command) in enumerate(zip(images, commands, strict=True)):
            problem = validate_image(image)
            if problem is None and not command.strip():
                problem = "command is empty"
            if problem is not None:
                size = image_size_of(image) if isinstance(image, np.ndarray) else (0, 0)
                results[index] = self._error(command, size, ErrorKind.INVALID_INPUT, problem)
            else:
                valid.append(index)

        if valid:
            outputs = self._reason([images[i] for i in valid], [commands[i] for i in valid])
            reason_s = (time.perf_counter() - started) / len(valid)
            for index, output in zip(valid, outputs, strict=True):
                results[index] = self._segment(images[index], commands[index], output, reason_s)
        return [result for result in results if result is not None]

    def _reason(self, images: list[np.ndarray], commands: list[str]) -> list[ReasonerOutput | BaseException]:
        try:
            outputs: list[ReasonerOutput | BaseException] = list(self.reasoner.reason_batch(images, commands))
        except Exception as exc:
            LOG.exception("reasoner failed")
            trim_gpu_cache()
            return [exc] * len(images)
        if len(outputs) != len(images):
            error = RuntimeError(f"reasoner returned {len(outputs)} outputs for {len(images)} inputs")
            return [error] * len(images)
        return outputs

    def _segment(
        self, image: np.ndarray, command: str, output: ReasonerOutput | BaseException, reason_s: float
    ) -> SegmentationResult:
        size = image_size_of(image)
        if isinstance(output, BaseException):
            return self._error(
                command, size, ErrorKind.REASONER_FAILED, describe_exception(output),
                timings=StageTimings(reason_s=reason_s, total_s=reason_s),
            )
        common = dict(
            reasoning=output.reasoning,
            raw_output=output.raw_output,
            prompt_tokens=output.prompt_tokens,
            completion_tokens=output.completion_tokens,
        )
        if output.answer is None:
            return self._error(
                command, size, ErrorKind.UNPARSEABLE_OUTPUT, output.error or "no answer",
                timings=StageTimings(reason_s=reason_s, total_s=reason_s), **common,
            )
        answer = output.answer
        encode_started = time.perf_counter()
        try:
            self.segmenter.set_image(image)
            decode_started = time.perf_counter()
            segment = self.segmenter.segment(answer.box, answer.points)
        except Exception as exc:
            LOG.exception("segmenter failed")
            trim_gpu_cache()
            elapsed = time.perf_counter() - encode_started
            return self._error(
                command, size, ErrorKind.SEGMENTER_FAILED, describe_exception(exc),
                box=answer.box, points=answer.points,
                timings=StageTimings(reason_s=reason_s, encode_s=elapsed, total_s=reason_s + elapsed), **common,
            )
        finished = time.perf_counter()
        if segment.mask.shape != image.shape[:2]:
            return self._error(
                command, size, ErrorKind.SEGMENTER_FAILED,
                f"segmenter returned a {segment.mask.shape} mask for a {image.shape[:2]} image",
                box=answer.box, points=answer.points, **common,
            )
        timings = StageTimings(
            reason_s=reason_s,
            encode_s=decode_started - encode_started,
            decode_s=finished - decode_started,
            total_s=reason_s + finished - encode_started,
        )
        return SegmentationResult(
            command=command,
            image_size=size,
            box=answer.box,
            points=answer.points,
            mask=segment.mask,
            score=segment.score,
            timings=timings,
            reasoner_name=self.reasoner.name,
            segmenter_name=self.segmenter.name,
            **common,  # type: ignore[arg-type]
        )

    def _error(self, command: str, size: tuple[int, int], kind: ErrorKind, message: str, **extra: object
               ) -> SegmentationResult:
        return error_result(
            command, size, kind, message,
            reasoner_name=self.reasoner.name, segmenter_name=self.segmenter.name, **extra,
        )

    def close(self) -> None:
        """Release both models; the segmenter is released even when the reasoner's close fails."""
        try:
            self.reasoner.close()
        finally:
            self.segmenter.close()
