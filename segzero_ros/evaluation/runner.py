"""Run a pipeline over a dataset: per-sample scoring, resumable JSONL results, sharding across processes.

Output folder layout::

    OUT/run.json                         what was evaluated (a rerun with other models or data is refused)
    OUT/results.jsonl                    one JSON record per sample, appended and flushed as each finishes
    OUT/results-shard-I-of-N.jsonl       the same, per shard, when the data is split across processes
    OUT/shard-I-of-N.done                written when shard I has no samples left
    OUT/masks/<id>.png                   predicted masks (1-bit PNG), for the report's overlays

A rerun reads every results file in OUT and skips the ids already there, so an interrupted run (crash,
preemption, Ctrl-C) continues where it stopped; a line cut short by a crash is dropped and redone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from segzero_ros.core.metrics import failed_sample, intersection_union
from segzero_ros.core.result import ErrorKind, SegmentationResult
from segzero_ros.data.dataset import EvalDataset, EvalSample, safe_filename
from segzero_ros.errors import SegZeroError
from segzero_ros.files import write_atomically
from segzero_ros.pipeline import SegZeroPipeline

RUN_FILE = "run.json"
MASK_DIR = "masks"
RESULTS_GLOB = "results*.jsonl"


class RunMismatchError(SegZeroError):
    """The output folder already holds results of a different evaluation."""


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count` takes every count-th sample starting at `index`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"invalid shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """"I/N" as given to --shard."""
        index, separator, count = text.partition("/")
        try:
            if not separator:
                raise ValueError
            return cls(int(index), int(count))
        except ValueError as exc:
            raise ValueError(f"--shard expects I/N with 0 <= I < N, got {text!r}") from exc

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Shard | None:
        """The process's place under torchrun or `accelerate launch` (RANK / WORLD_SIZE), if launched so."""
        env = os.environ if environ is None else environ
        try:
            world_size = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
        except ValueError:
            return None
        return cls(rank, world_size) if world_size > 1 else None

    @property
    def results_name(self) -> str:
        return "results.jsonl" if self.count == 1 else f"results-shard-{self.index}-of-{self.count}.jsonl"

    @property
    def done_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}.done"

    def select(self, dataset: EvalDataset) -> EvalDataset:
        return dataset.subset(range(self.index, len(dataset), self.count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class ShardOutcome:
    shard: Shard
    total: int
    """Samples in this shard."""
    already_done: int
    """Skipped because an earlier run had finished them."""
    processed: int
    results_path: Path


def ensure_run_file(out_dir: Path, identity: Mapping[str, Any], details: Mapping[str, Any],
                    overwrite: bool = False) -> None:
    """Record what this folder evaluates; refuse to mix results of another model or dataset into it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_FILE
    identity = json.loads(json.dumps(identity))
    if path.is_file() and not overwrite:
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("identity")
        except ValueError:
            previous = None
        if previous is not None and previous != identity:
            changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
            raise RunMismatchError(
                f"{out_dir} holds results of a different evaluation (changed: {', '.join(changed)}); "
                "use another --out, or --overwrite to discard them"
            )
    if overwrite:
        clear_results(out_dir)
    write_json_atomic(path, {"identity": identity, **details})


def add_summary_info(out_dir: Path, **values: str) -> None:
    """Facts learnt once the models are loaded (e.g. the reasoner's family and coordinates) for the report."""
    run = read_run_file(out_dir) or {}
    run["summary_info"] = {**run.get("summary_info", {}), **values}
    write_json_atomic(out_dir / RUN_FILE, run)


def read_run_file(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def clear_results(out_dir: Path) -> None:
    for path in [*out_dir.glob(RESULTS_GLOB), *out_dir.glob("shard-*-of-*.done")]:
        path.unlink()


def results_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(RESULTS_GLOB))


def read_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every finished record in the folder by id (first one wins); malformed or cut-off lines are skipped."""
    records: dict[str, dict[str, Any]] = {}
    for path in results_files(out_dir):
        for record in _iter_records(path):
            records.setdefault(str(record["id"]), record)
    return records


def _iter_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # cut off by a crash mid-write: not finished
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "id" in record and "intersection" in record:
                yield record


def evaluate(
    pipeline: SegZeroPipeline,
    dataset: EvalDataset,
    out_dir: Path,
    *,
    shard: Shard = Shard(),
    batch_size: int = 1,
    save_masks: bool = True,
    progress_bar: bool = True,
) -> ShardOutcome:
    """Score this shard's unfinished samples, appending one flushed JSONL record per sample."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_data = shard.select(dataset)
    done = set(read_records(out_dir))
    pending = [position for position, sample_id in enumerate(shard_data.ids) if sample_id not in done]
    already_done = len(shard_data) - len(pending)
    results_path = out_dir / shard.results_name
    if save_masks:
        (out_dir / MASK_DIR).mkdir(exist_ok=True)

    from tqdm import tqdm

    bar = tqdm(total=len(shard_data), initial=already_done, disable=not progress_bar, unit="sample",
               desc=f"eval {shard}" if shard.count > 1 else "eval", dynamic_ncols=True)
    processed = 0
    with _open_for_append(results_path) as handle, bar:
        for batch in _chunks(pending, batch_size):
            samples = [shard_data[position] for position in batch]
            results = pipeline.run_batch([s.image for s in samples], [s.text for s in samples])
            for sample, result in zip(samples, results, strict=True):
                record = score_sample(sample, result)
                if save_masks and result.mask is not None:
                    record["mask_file"] = save_mask(out_dir, sample.id, result.mask)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                processed += 1
                bar.update(1)
    (out_dir / shard.done_name).write_text(json.dumps({"samples": len(shard_data)}) + "\n", encoding="utf-8")
    return ShardOutcome(shard, len(shard_data), already_done, processed, results_path)


def score_sample(sample: EvalSample, result: SegmentationResult) -> dict[str, Any]:
    """One JSONL record: the pipeline's result plus I, U and IoU against the ground truth.

    Failures score I = 0, U = |GT|. Pixels the dataset marks "ignore" are taken out of the prediction, so
    they count in neither I nor U (they are never ground truth). The prediction is the union of the answer's
    objects, the GT the union of the sample's. A sample without a target answered `not_found` is correct:
    I = U = 0 and IoU 1 (``no_target_correct``).
    """
    record: dict[str, Any] = {"id": sample.id, **result.to_dict()}
    no_target = not sample.has_target
    correct_empty = no_target and result.error_kind is ErrorKind.NOT_FOUND
    if result.ok and result.mask is not None:
        try:
            prediction = result.mask if sample.ignore is None else result.mask & ~sample.ignore
            intersection, union = intersection_union(prediction, sample.mask)
        except ValueError as exc:  # a segmenter answering at the wrong resolution is a failed segmentation
            record.update(ok=False, error=f"mask does not fit the image: {exc}",
                          error_kind=ErrorKind.SEGMENTER_FAILED.value)
            intersection, union = failed_sample(sample.mask)
    else:
        intersection, union = failed_sample(sample.mask)
    record.update(
        intersection=intersection,
        union=union,
        iou=1.0 if correct_empty else intersection / union if union > 0 else 0.0,
        gt_pixels=int(np.count_nonzero(sample.mask)),
        gt_objects=len(sample.objects),
        no_target=no_target,
        no_target_correct=correct_empty,
        ignored_pixels=int(np.count_nonzero(sample.ignore)) if sample.ignore is not None else 0,
        mask_file=None,
    )
    return record


def save_mask(out_dir: Path, sample_id: str, mask: np.ndarray) -> str:
    """1-bit PNG under masks/; returns the path relative to out_dir."""
    from PIL import Image

    relative = f"{MASK_DIR}/{safe_filename(sample_id)}.png"
    Image.fromarray(np.asarray(mask, dtype=bool)).save(out_dir / relative)
    return relative


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write to a private temporary name, then rename: readers (other shards) never see half a file."""
    write_atomically(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _open_for_append(path: Path) -> TextIO:
    """Append mode, after cutting off a trailing partial line left by a crash so the next record starts clean."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
    return path.open("a", encoding="utf-8")


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
