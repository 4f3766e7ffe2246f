"""One entry point for every dataset layout: `load_eval_dataset(path, format="auto")`."""

from __future__ import annotations

from pathlib import Path

from segzero_ros.data.dataset import DatasetFormatError, EvalDataset
from segzero_ros.data.folder import is_folder_dataset, load_folder_dataset
from segzero_ros.data.hf import is_saved_dataset, load_hf_dataset, parquet_files
from segzero_ros.data.reasonseg import is_reasonseg_folder, load_reasonseg
from segzero_ros.data.synthetic import parse_synthetic_source, synthetic_eval_dataset

FORMATS = ("auto", "reasonseg", "hf", "folder", "synthetic")


def detect_format(source: str | Path) -> str:
    """"folder" (samples.jsonl), "hf" (save_to_disk folder, parquet, or a hub id), "reasonseg" (LISA) or
    "synthetic" (``synthetic[:COUNT[:SEED[:SIZE]]]``, generated)."""
    if parse_synthetic_source(str(source)) is not None:
        return "synthetic"
    path = Path(source)
    if not path.exists():
        # Not on disk: only a hub id (resolved through the local cache) can be meant.
        return "hf"
    if is_folder_dataset(path):
        return "folder"
    if is_saved_dataset(path) or (path.is_file() and path.suffix == ".parquet"):
        return "hf"
    if is_reasonseg_folder(path):
        return "reasonseg"
    if parquet_files(path):
        return "hf"
    raise DatasetFormatError(
        f"{path}: cannot tell the dataset format (no samples.jsonl, no save_to_disk or parquet files, no "
        "LabelMe JSON beside images); pass --format"
    )


def load_eval_dataset(
    source: str | Path,
    format: str = "auto",
    *,
    split: str | None = None,
    reasonseg_texts: str = "first",
    cache_dir: str | None = None,
) -> EvalDataset:
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; choose from {', '.join(FORMATS)}")
    resolved = detect_format(source) if format == "auto" else format
    if resolved == "folder":
        return load_folder_dataset(Path(source))
    if resolved == "reasonseg":
        return load_reasonseg(Path(source), texts=reasonseg_texts)
    if resolved == "synthetic":
        generated = parse_synthetic_source(str(source))
        if generated is None:
            raise DatasetFormatError(f"{source!r}: synthetic sources are written synthetic[:COUNT[:SEED[:SIZE]]]")
        return synthetic_eval_dataset(*generated)
    return load_hf_dataset(source, split=split, cache_dir=cache_dir)
