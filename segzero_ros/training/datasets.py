"""Training data in Seg-Zero's refCOCOg_2k_840 schema, and its conversion to what TRL's GRPOTrainer reads.

The schema (one row per referring expression):

=============  ===========================================================================================
``id``         str, unique
``problem``    str, the command (the reference schema's column name; the prompt lower-cases it and strips periods)
``solution``   str, ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>`` in 840-frame integers; for the
               vision_reasoner answer format the JSON list ``[{"bbox_2d": [...], "point_2d": [...]}, ...]``
``image``      840×840 RGB (already squashed, aspect ratio not kept)
``img_height`` int, the ORIGINAL image height (the 840 frame maps back to it)
``img_width``  int, the ORIGINAL image width
=============  ===========================================================================================

Beyond the reference schema, rows made here carry ``solution_extent`` (int): what the solution's coordinates
span, 840 for the reference's frame pixels, 1000 for Qwen3-VL's relative coordinates (`make-dataset --family`);
a dataset without the column is the reference's (840). Training converts images and solutions to the model's
own frame and coordinates as rows are read (:func:`to_trl_dataset`), so any schema dataset trains any family.

Sources: a ``save_to_disk`` folder (Dataset or DatasetDict), parquet files (a file or a downloaded hub
snapshot), a hub id resolved through the local cache, or any mask dataset (image + bool mask + expression:
the folder format, ReasonSeg, an HF mask dataset, the synthetic generator) converted on the way in with the
targets of :mod:`segzero_ros.training.targets`.

``datasets`` is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.core.families import SEG_ZERO_FRAME, AnswerFrame
from segzero_ros.core.formats import SEG_ZERO
from segzero_ros.core.formats import answer_format as answer_format_spec
from segzero_ros.core.geometry import REASONING_FRAME_SIZE, resize_to_reasoning_frame
from segzero_ros.core.solution import rescale_solution
from segzero_ros.data.dataset import DatasetFormatError
from segzero_ros.data.folder import MaskedSample
from segzero_ros.data.hf import open_hf_dataset
from segzero_ros.data.synthetic import parse_synthetic_source
from segzero_ros.reasoning.chat import trl_prompt
from segzero_ros.training.targets import EmptyMaskError, frame_targets, object_list_solution

_LOG = logging.getLogger(__name__)

REFERENCE_DATASET = "Ricky06662/refCOCOg_2k_840"
"""The 2k-sample training set of the released Seg-Zero models (a 9k variant also exists)."""
SEGZERO_COLUMNS = ("id", "problem", "solution", "image", "img_height", "img_width")
MADE_COLUMNS = (*SEGZERO_COLUMNS, "solution_extent")
"""The columns of a dataset made here: the reference schema and the coordinates' extent."""
DATASET_FORMATS = ("auto", "segzero", "masks", "synthetic")
RESAMPLING = ("area", "bilinear")


# --- mask samples → schema rows ------------------------------------------------------------------------------


def resize_frame(image: np.ndarray, resample: str = "area", frame_size: int = REASONING_FRAME_SIZE) -> Any:
    """H×W×3 uint8 → frame_size² PIL image.

    ``area`` (OpenCV INTER_AREA) is what the reference data preparation used for refCOCOg_2k_840;
    ``bilinear`` (PIL) is what inference does, for data meant to look exactly like the node's input.
    """
    from PIL import Image

    if resample not in RESAMPLING:
        raise ValueError(f"unknown resampling {resample!r}; choose from {', '.join(RESAMPLING)}")
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"images must be H×W×3 RGB, got shape {array.shape}")
    if resample == "bilinear":
        return resize_to_reasoning_frame(Image.fromarray(array, mode="RGB"), frame_size)
    import cv2

    return Image.fromarray(cv2.resize(array, (frame_size, frame_size), interpolation=cv2.INTER_AREA), mode="RGB")


def segzero_record(sample: MaskedSample, resample: str = "area", answer_format: str = SEG_ZERO,
                   frame: AnswerFrame = SEG_ZERO_FRAME) -> dict[str, Any]:
    """One schema row for a mask sample: targets from the full-resolution mask(s) in the frame's coordinates,
    the image squashed to the frame (Seg-Zero: 840², pixels).

    seg_zero: the one mask's box + two points; raises EmptyMaskError for a mask without foreground (nothing to
    train on) and MultipleObjectsError for a sample with several GT objects (Seg-Zero answers one).
    vision_reasoner: one box + point per GT object (``sample.instances`` when the sample has them, else its
    mask), ``[]`` for a sample without a target.
    """
    image = np.asarray(sample.image)
    mask = np.asarray(sample.mask, dtype=bool)
    instances = getattr(sample, "instances", None)
    objects = [np.asarray(m, dtype=bool) for m in instances] if instances is not None else (
        [mask] if mask.any() else [])
    for array in (mask, *objects):
        if array.shape != image.shape[:2]:
            raise DatasetFormatError(
                f"sample {sample.id!r}: mask is {array.shape[1]}×{array.shape[0]} but the image is "
                f"{image.shape[1]}×{image.shape[0]}"
            )
    if answer_format == SEG_ZERO:
        if len(objects) > 1:
            raise MultipleObjectsError(f"sample {sample.id!r} has {len(objects)} GT objects")
        solution = frame_targets(mask, frame.extent).solution()
    else:
        answer_format_spec(answer_format)
        solution = object_list_solution(objects, frame.extent)
    return {
        "id": str(sample.id),
        "problem": str(sample.text),
        "solution": solution,
        "image": resize_frame(image, resample, frame.frame_size),
        "img_height": int(image.shape[0]),
        "img_width": int(image.shape[1]),
        "solution_extent": frame.extent,
    }


def segzero_features() -> Any:
    """The schema as ``datasets.Features`` (the same types the reference preparation script declares)."""
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "problem": datasets.Value("string"),
            "solution": datasets.Value("string"),
            "image": datasets.Image(),
            "img_height": datasets.Value("int64"),
            "img_width": datasets.Value("int64"),
            "solution_extent": datasets.Value("int64"),
        }
    )


class MultipleObjectsError(ValueError):
    """A sample with several GT objects cannot be a Seg-Zero (one object) training row."""


def _records(samples: Iterable[MaskedSample], resample: str, answer_format: str,
             frame: AnswerFrame = SEG_ZERO_FRAME) -> Iterator[dict[str, Any]]:
    for sample in samples:
        try:
            yield segzero_record(sample, resample, answer_format, frame)
        except EmptyMaskError:
            _LOG.warning("skipping sample %r: its mask is empty", sample.id)
        except MultipleObjectsError as exc:
            _LOG.warning("skipping %s: the seg_zero format answers one object (use answer_format=vision_reasoner)",
                         exc)


def segzero_dataset_from_masks(
    samples: Iterable[MaskedSample], resample: str = "area", cache_dir: Path | None = None,
    answer_format: str = SEG_ZERO, frame: AnswerFrame = SEG_ZERO_FRAME,
) -> Any:
    """Convert mask samples to a ``datasets.Dataset`` in the schema; samples with an empty mask are skipped.

    Rows are written to Arrow files under ``cache_dir`` (a fresh temporary folder when None) as they are
    produced, so a large dataset never sits in memory; the returned dataset memory-maps them.
    """
    import datasets

    if resample not in RESAMPLING:
        raise ValueError(f"unknown resampling {resample!r}; choose from {', '.join(RESAMPLING)}")
    folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="segzero-dataset-"))
    folder.mkdir(parents=True, exist_ok=True)
    # A fresh folder and a random fingerprint per conversion: rows of other data are never reused, and the
    # samples (arrays, lazy loaders) are never hashed.
    unique = Path(tempfile.mkdtemp(prefix="rows-", dir=folder))
    no_rows = DatasetFormatError("no usable samples: every mask was empty (or there were no samples)")
    try:
        dataset = datasets.Dataset.from_generator(
            _records,
            features=segzero_features(),
            cache_dir=str(unique),
            gen_kwargs={"samples": samples, "resample": resample, "answer_format": answer_format,
                        "frame": frame},
            fingerprint=uuid.uuid4().hex,
        )
    except ValueError as exc:
        if "corresponds to no data" in str(exc):  # what datasets says when the generator yielded nothing
            raise no_rows from exc
        raise
    if len(dataset) == 0:
        raise no_rows
    return dataset


def synthetic_samples(count: int, seed: int = 0, size: int = 256, answer_format: str = SEG_ZERO) -> list[Any]:
    """Samples of the synthetic shapes generator (``segzero_ros.data.synthetic``): one target per sample for
    seg_zero; "all the <colour> shapes" with 0-3 targets for vision_reasoner."""
    from segzero_ros.data.synthetic import generate_object_list_samples, generate_samples

    if answer_format == SEG_ZERO:
        return list(generate_samples(count, seed, size))
    return list(generate_object_list_samples(count, seed, size))


# --- loading -----------------------------------------------------------------------------------------------


def load_training_dataset(
    source: str | Path,
    format: str = "auto",
    *,
    split: str = "train",
    max_samples: int | None = None,
    resample: str = "area",
    cache_dir: Path | None = None,
    answer_format: str = SEG_ZERO,
    frame: AnswerFrame = SEG_ZERO_FRAME,
) -> Any:
    """Any supported source → a ``datasets.Dataset`` in the refCOCOg_2k_840 schema, its ``solution`` in the
    answer format's layout (mask data converted in `frame`'s size and coordinates).

    ``format``: ``segzero`` (already in the schema), ``masks`` (image + mask + expression, converted here),
    ``synthetic`` (``synthetic[:COUNT[:SEED[:SIZE]]]``) or ``auto`` (decided from the source). Mask data
    conversion writes Arrow files under ``cache_dir``.
    """
    if format not in DATASET_FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; choose from {', '.join(DATASET_FORMATS)}")
    text = str(source)
    synthetic = parse_synthetic_source(text)
    if format == "synthetic" or (format == "auto" and synthetic is not None):
        if synthetic is None:
            raise DatasetFormatError(f"{text!r}: synthetic sources are written synthetic[:COUNT[:SEED[:SIZE]]]")
        count, seed, size = synthetic
        if max_samples is not None:
            count = min(count, max_samples)
        return segzero_dataset_from_masks(synthetic_samples(count, seed, size, answer_format), resample, cache_dir,
                                          answer_format, frame)
    if format == "masks" or (format == "auto" and _looks_like_mask_folder(Path(text))):
        return _masks_to_segzero(text, split, max_samples, resample, cache_dir, answer_format=answer_format,
                                 frame=frame)
    dataset = open_hf_dataset(text, split, any_single_split=True).dataset
    columns = set(dataset.column_names)
    if format == "auto" and not {"problem", "solution"} <= columns:
        from segzero_ros.data.hf import MASK_COLUMNS

        if columns & set(MASK_COLUMNS):
            return _masks_to_segzero(text, split, max_samples, resample, cache_dir, answer_format=answer_format,
                                     opened=dataset, frame=frame)
    check_segzero_schema(dataset, text)
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    return dataset


def load_segzero_dataset(source: str | Path, split: str = "train") -> Any:
    """A dataset already in the schema, from a local folder, parquet or a cached hub id."""
    dataset = open_hf_dataset(str(source), split, any_single_split=True).dataset
    check_segzero_schema(dataset, str(source))
    return dataset


def check_segzero_schema(dataset: Any, where: str) -> None:
    missing = [column for column in SEGZERO_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DatasetFormatError(
            f"{where}: not in the Seg-Zero training schema; missing column(s) {', '.join(missing)} (columns: "
            f"{', '.join(dataset.column_names)}). Convert mask data with `segzero train make-dataset`."
        )


def _looks_like_mask_folder(path: Path) -> bool:
    if not path.exists():
        return False
    from segzero_ros.data.folder import is_folder_dataset
    from segzero_ros.data.reasonseg import is_reasonseg_folder

    return is_folder_dataset(path) or is_reasonseg_folder(path)


def _masks_to_segzero(
    source: str,
    split: str,
    max_samples: int | None,
    resample: str,
    cache_dir: Path | None,
    *,
    answer_format: str,
    opened: Any = None,
    frame: AnswerFrame = SEG_ZERO_FRAME,
) -> Any:
    from segzero_ros.data import load_eval_dataset, wrap_hf_dataset

    masks = wrap_hf_dataset(opened, source) if opened is not None else load_eval_dataset(source, split=split)
    return segzero_dataset_from_masks(masks.head(max_samples), resample, cache_dir, answer_format, frame)


def save_segzero_dataset(dataset: Any, output_dir: Path, split: str = "train") -> Path:
    """Write a schema dataset as the reference does: a ``DatasetDict`` with one split, via ``save_to_disk``."""
    import datasets

    check_segzero_schema(dataset, "dataset to save")
    output_dir = Path(output_dir)
    datasets.DatasetDict({split: dataset}).save_to_disk(str(output_dir))
    return output_dir


# --- schema rows → TRL ------------------------------------------------------------------------------------


def as_reasoning_frame(image: Any, frame_size: int = REASONING_FRAME_SIZE) -> Any:
    """A PIL image as the reasoner sees it: frame_size² RGB (left alone when it already is, as in the schema)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if not isinstance(image, Image.Image):
        raise DatasetFormatError(f"expected an image, got {type(image).__name__}")
    if image.mode == "RGB" and image.size == (frame_size, frame_size):
        return image
    return resize_to_reasoning_frame(image, frame_size)


def _to_trl_batch(batch: dict[str, list[Any]], answer_format: str = SEG_ZERO,
                  frame: AnswerFrame = SEG_ZERO_FRAME) -> dict[str, list[Any]]:
    converted = dict(batch)
    converted["prompt"] = [trl_prompt(command, answer_format) for command in batch["problem"]]
    converted["image"] = [as_reasoning_frame(image, frame.frame_size) for image in batch["image"]]
    extents = batch.get("solution_extent") or [REASONING_FRAME_SIZE] * len(batch["solution"])
    converted["solution"] = [rescale_solution(solution, int(extent), frame.extent)
                             for solution, extent in zip(batch["solution"], extents, strict=True)]
    return converted


def to_trl_dataset(dataset: Any, answer_format: str = SEG_ZERO, frame: AnswerFrame = SEG_ZERO_FRAME) -> Any:
    """Schema dataset → GRPOTrainer's conversational VLM format, lazily (rows convert as they are read).

    Each row gains ``prompt`` (see :func:`trl_prompt`); its ``image`` becomes the model's frame (Seg-Zero: 840²
    RGB) and its ``solution`` the model's coordinates (from ``solution_extent``, 840 when the dataset has no such
    column, to the frame's extent); the other columns pass through, so the reward functions receive
    ``solution`` as a keyword list.
    """
    check_segzero_schema(dataset, "training dataset")
    answer_format_spec(answer_format)
    return dataset.with_transform(functools.partial(_to_trl_batch, answer_format=answer_format, frame=frame))
