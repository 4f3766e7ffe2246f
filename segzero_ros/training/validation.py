"""Validation while training: the model being trained answers a held-out split greedily, the configured segmenter
turns the answers into masks, and the project's own evaluator scores them (gIoU, cIoU, failures, not-found
accuracy) — the numbers `segzero eval` reports for a finished checkpoint, every `eval_steps` steps.

Every process scores its share of the samples (`Shard(rank, world)`) into ``OUTPUT_DIR/validation/step-N``; the
shards meet on the file system (the one checkpoints are written to) and every process reads the same summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.core.families import AnswerFrame
from segzero_ros.errors import SegZeroError

VALIDATION_DIRNAME = "validation"
CHECKPOINT_FILENAME = "validation.json"
"""The validation summary of the step a checkpoint was saved at, written into that checkpoint folder."""
TINY = "tiny"
METRICS = ("gIoU", "cIoU", "not_found_accuracy")
"""What `best_metric` may name; all three: higher is better."""


@dataclass(frozen=True)
class ValidationResult:
    step: int
    summary: dict[str, Any]
    seconds: float
    folder: Path

    def metrics(self) -> dict[str, float]:
        """Flat numbers for the trainer's log (prefixed ``eval_`` by the trainer)."""
        not_found = self.summary.get("not_found") or {}
        values: dict[str, float] = {
            "gIoU": float(self.summary["gIoU"]),
            "cIoU": float(self.summary["cIoU"]),
            "samples": float(self.summary["count"]),
            "failed": float(self.summary["failed"]),
            "seconds": round(self.seconds, 3),
        }
        accuracy = not_found.get("accuracy")
        if accuracy is not None:
            values["not_found_accuracy"] = float(accuracy)
        for kind, count in sorted((self.summary.get("failures") or {}).items()):
            values[f"failed_{kind}"] = float(count)
        return values


def segmenter_config(options: Mapping[str, Any], device: str) -> Any:
    """The validation segmenter's config from `eval_segmenter` (segmenter options by name; ``model: tiny`` for the
    offline tiny model of the backend); ValueError for options the backend refuses."""
    from segzero_ros.registry import backend

    values = dict(options)
    name = str(values.pop("backend", "sam2"))
    values.setdefault("device", device)
    if values.get("model") == TINY:
        from segzero_ros.tiny import tiny_segmenter_config

        values.pop("model")
        return tiny_segmenter_config(name, device=str(values.pop("device")), **values)
    try:
        return backend("segmenter", name).make_config(**values)
    except TypeError as exc:
        raise ValueError(f"eval_segmenter: {exc}") from None


def check_segmenter_options(options: Mapping[str, Any]) -> None:
    """eval_segmenter names a registered segmenter backend and only options it has (nothing is loaded)."""
    import dataclasses

    from segzero_ros.registry import backend

    name = str(options.get("backend", "sam2"))
    try:
        record = backend("segmenter", name)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"eval_segmenter: {exc}") from None
    known = {field.name for field in dataclasses.fields(record.config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"eval_segmenter: the {name} segmenter has no option(s) {', '.join(unknown)}; it has "
                         f"{', '.join(sorted(known))}")


class Validator:
    """Loads the held-out data and the segmenter once (first use), then scores the live model on demand."""

    def __init__(self, source: str, *, split: str, samples: int | None, segmenter_options: Mapping[str, Any],
                 frame: AnswerFrame, answer_format: str, max_new_tokens: int, output_dir: Path) -> None:
        self._source, self._split, self._samples = source, split, samples
        self._segmenter_options = dict(segmenter_options)
        self._frame, self._answer_format, self._max_new_tokens = frame, answer_format, max_new_tokens
        self._output_dir = output_dir
        self._dataset: Any = None
        self._segmenter: Any = None

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            from segzero_ros.data.loaders import load_eval_dataset

            try:
                dataset = load_eval_dataset(self._source, split=self._split)
            except (OSError, ValueError) as exc:
                raise SegZeroError(f"eval_dataset {self._source!r}: {exc}") from exc
            self._dataset = dataset.head(self._samples)
            if len(self._dataset) == 0:
                raise SegZeroError(f"eval_dataset {self._source!r} has no samples")
        return self._dataset

    def _segmenter_for(self, device: str) -> Any:
        if self._segmenter is None:
            from segzero_ros.backends import build_segmenter

            self._segmenter = build_segmenter(segmenter_config(self._segmenter_options, device))
        return self._segmenter

    def run(self, model: Any, processor: Any, step: int, *, rank: int = 0, world: int = 1,
            barrier: Any = None) -> ValidationResult:
        """Score `model` (a transformers Qwen-VL model in memory, in eval mode) at training step `step`.
        `barrier`: called after this process's shard is written, so every process sees all shards."""
        from segzero_ros.config import TransformersReasonerConfig
        from segzero_ros.evaluation.runner import Shard, clear_results, evaluate, read_records
        from segzero_ros.evaluation.summary import summarize_records
        from segzero_ros.pipeline import SegZeroPipeline
        from segzero_ros.reasoning.transformers_backend import TransformersReasoner

        started = time.perf_counter()
        folder = self._output_dir / VALIDATION_DIRNAME / f"step-{step}"
        if rank == 0 and folder.exists():
            clear_results(folder)  # a resumed run validates this step anew
        if barrier is not None:
            barrier()
        config = TransformersReasonerConfig(
            model=str(getattr(model.config, "_name_or_path", "") or "training model"),
            answer_format=self._answer_format, family=self._frame.family,
            coordinates=self._frame.coordinates, frame_size=self._frame.frame_size,
            max_new_tokens=self._max_new_tokens)
        reasoner = TransformersReasoner(model, processor, config)  # the live model: never closed here
        pipeline = SegZeroPipeline(reasoner, self._segmenter_for(str(model.device)))
        evaluate(pipeline, self.dataset, folder, shard=Shard(rank, world), save_masks=False, progress_bar=False)
        if barrier is not None:
            barrier()
        records = list(read_records(folder).values())
        summary = summarize_records(records)
        elapsed = time.perf_counter() - started
        if rank == 0:
            payload = {"step": step, "seconds": round(elapsed, 3), **summary}
            (folder / "summary.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return ValidationResult(step, summary, elapsed, folder)

    def close(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None
