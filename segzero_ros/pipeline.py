"""Reasoner + segmenter → one SegmentationResult per command. The one place that orchestrates the two stages.

Every object of the reasoner's answer gets its own segmenter call on one image encoding; the result holds
each object's mask and their union. An answer with no object (the model says the target is not in view) is
the explicit error `not_found`, never an empty mask passed off as success.

The pipeline is the error boundary: whatever a backend raises (parse failures, model errors, GPU out of
memory) becomes a result with an explicit ErrorKind, so callers such as the ROS node always get an answer.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.core.progress import Progress, Stage
from segzero_ros.core.result import ErrorKind, SegmentationResult, SegmentedObject, StageTimings, error_result
from segzero_ros.errors import CanceledError, ReasonerTimeoutError
from segzero_ros.reasoning.base import Reasoner, ReasonerOutput
from segzero_ros.segmentation.base import Segmenter

LOG = logging.getLogger(__name__)


class MaskShapeError(ValueError):
    """A segmenter backend broke its contract: a mask not at the image's resolution."""


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

    def run(self, image: np.ndarray, command: str, progress: Progress | None = None) -> SegmentationResult:
        """One command. With `progress`, the reasoning streams to it, its stages are reported, and setting its
        cancel flag stops the command (answered `canceled`)."""
        if progress is None:
            return self.run_batch([image], [command])[0]
        refused = self._refusal(image, command)
        if refused is not None:
            return refused
        size = image_size_of(image)
        started = time.perf_counter()
        progress.stage(Stage.REASONING)
        output: ReasonerOutput | BaseException
        try:
            output = self.reasoner.reason_stream(image, command, progress)
        except CanceledError as exc:
            return self._error(command, size, ErrorKind.CANCELED, f"canceled: {exc}")
        except Exception as exc:
            LOG.exception("reasoner failed")
            trim_gpu_cache()
            output = exc
        if progress.canceled:
            return self._error(command, size, ErrorKind.CANCELED, "canceled after reasoning",
                               reasoning=getattr(output, "reasoning", ""), raw_output=getattr(output, "raw_output", ""))
        progress.stage(Stage.SEGMENTING)
        return self._segment(image, command, output, time.perf_counter() - started)

    def run_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[SegmentationResult]:
        """Reason about all pairs in one batch, then segment each; one result per pair, in order."""
        if len(images) != len(commands):
            raise ValueError(f"{len(images)} images but {len(commands)} commands")
        started = time.perf_counter()
        results: list[SegmentationResult | None] = [None] * len(images)
        valid: list[int] = []
        for index, (image, command) in enumerate(zip(images, commands, strict=True)):
            results[index] = self._refusal(image, command)
            if results[index] is None:
                valid.append(index)

        if valid:
            outputs = self._reason([images[i] for i in valid], [commands[i] for i in valid])
            reason_s = (time.perf_counter() - started) / len(valid)
            for index, output in zip(valid, outputs, strict=True):
                results[index] = self._segment(images[index], commands[index], output, reason_s)
        return [result for result in results if result is not None]

    def _refusal(self, image: object, command: str) -> SegmentationResult | None:
        """The `invalid_input` result of an unusable image or an empty command, or None when both are fine."""
        problem = validate_image(image)
        if problem is None and not command.strip():
            problem = "command is empty"
        if problem is None:
            return None
        size = image_size_of(image) if isinstance(image, np.ndarray) else (0, 0)
        return self._error(command, size, ErrorKind.INVALID_INPUT, problem)

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
            kind = ErrorKind.TIMEOUT if isinstance(output, ReasonerTimeoutError) else ErrorKind.REASONER_FAILED
            return self._error(
                command, size, kind, describe_exception(output),
                timings=StageTimings(reason_s=reason_s, total_s=reason_s),
            )
        common = dict(
            reasoning=output.reasoning,
            raw_output=output.raw_output,
            prompt_tokens=output.prompt_tokens,
            completion_tokens=output.completion_tokens,
        )
        reasoned = StageTimings(reason_s=reason_s, total_s=reason_s)
        if output.objects is None:
            return self._error(command, size, ErrorKind.UNPARSEABLE_OUTPUT, output.error or "no answer",
                               timings=reasoned, **common)
        prompts = output.objects
        if not prompts:
            return self._error(command, size, ErrorKind.NOT_FOUND, "the model found no matching object",
                               timings=reasoned, **common)
        encode_started = time.perf_counter()
        decode_started = encode_started
        try:
            self.segmenter.set_image(image)
            decode_started = time.perf_counter()
            objects = tuple(self._segment_object(prompt, image.shape[:2]) for prompt in prompts)
        except Exception as exc:
            if isinstance(exc, MaskShapeError):
                message = str(exc)
            else:
                LOG.exception("segmenter failed")
                trim_gpu_cache()
                message = describe_exception(exc)
            elapsed = time.perf_counter() - encode_started
            return self._error(
                command, size, ErrorKind.SEGMENTER_FAILED, message,
                objects=tuple(SegmentedObject(prompt) for prompt in prompts),
                timings=StageTimings(reason_s=reason_s, encode_s=decode_started - encode_started,
                                     decode_s=elapsed - (decode_started - encode_started),
                                     total_s=reason_s + elapsed), **common,
            )
        finished = time.perf_counter()
        union = np.zeros(image.shape[:2], dtype=bool)
        for _, mask in objects:
            union |= mask
        timings = StageTimings(
            reason_s=reason_s,
            encode_s=decode_started - encode_started,
            decode_s=finished - decode_started,
            total_s=reason_s + finished - encode_started,
        )
        return SegmentationResult(
            command=command,
            image_size=size,
            objects=tuple(segmented for segmented, _ in objects),
            mask=union,
            timings=timings,
            reasoner_name=self.reasoner.name,
            segmenter_name=self.segmenter.name,
            **common,  # type: ignore[arg-type]
        )

    def _segment_object(self, prompt: ObjectPrompt, image_hw: tuple[int, ...]
                        ) -> tuple[SegmentedObject, np.ndarray]:
        """One segmenter call with the object's box and positive points (VisionReasoner's strategy: one SAM2
        call per object; Seg-Zero is the case of one object with two points); the object and its mask."""
        segment = self.segmenter.segment(prompt)
        if segment.mask.shape != image_hw:
            raise MaskShapeError(f"segmenter returned a {segment.mask.shape} mask for a {image_hw} image")
        return SegmentedObject(prompt, mask=segment.mask, score=segment.score), segment.mask

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
