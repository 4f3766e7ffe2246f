"""Hugging Face datasets in Seg-Zero's evaluation schema: ReasonSeg_val/test and the RefCOCO/+/g conversions.

Columns: ``image`` (full resolution), ``text``, ``mask`` (bool H×W, stored as nested lists or an image),
plus ``image_id``, ``ann_id``, ``img_height``, ``img_width``. Accepted sources: a folder written by
``save_to_disk`` (Dataset or DatasetDict), parquet files (a file, or a folder such as a downloaded hub
snapshot with ``data/test-00000-of-00001.parquet``), or a hub id resolved through the local cache.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

from segzero_ros.data.dataset import (
    DatasetFormatError,
    EvalDataset,
    EvalSample,
    image_to_rgb_array,
    mask_to_bool,
)
from segzero_ros.files import download_hint, looks_like_local_path

TEXT_COLUMNS = ("text", "problem", "sentence", "expression", "question", "sentences")
MASK_COLUMNS = ("mask", "gt_mask", "segmentation_mask")
PREFERRED_SPLITS = ("test", "validation", "val", "train")


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("dataset_dict.json", "state.json"))


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    return sorted(path.rglob("*.parquet")) if path.is_dir() else []


def load_hf_dataset(source: str | Path, split: str | None = None, cache_dir: str | None = None) -> EvalDataset:
    """Open a saved folder, parquet files or a cached hub id and wrap the chosen split lazily."""
    opened = open_hf_dataset(source, split, cache_dir=cache_dir)
    return wrap_hf_dataset(opened.dataset, opened.label)


def wrap_hf_dataset(dataset: Any, name: str = "hf") -> EvalDataset:
    """An in-memory or memory-mapped `datasets.Dataset` in the evaluation schema → EvalDataset."""
    columns = set(dataset.column_names)
    text_column = _first_present(TEXT_COLUMNS, columns, "text", name)
    mask_column = _first_present(MASK_COLUMNS, columns, "mask", name)
    if "image" not in columns:
        raise DatasetFormatError(f"{name}: no 'image' column (columns: {', '.join(sorted(columns))})")
    ids = _sample_ids(dataset, columns)
    # Decoding the mask column as numpy is ~50× faster than as nested Python lists for a full-size mask.
    rows = dataset.with_format("numpy", columns=[mask_column], output_all_columns=True)

    def load(index: int) -> EvalSample:
        row = rows[index]
        text = row[text_column]
        if isinstance(text, (list, tuple)):
            text = text[0] if text else ""
        return EvalSample(
            id=ids[index],
            image=image_to_rgb_array(row["image"]),
            mask=mask_to_bool(row[mask_column]),
            text=str(text),
        )

    return EvalDataset(name, ids, load)


class OpenedHFDataset(NamedTuple):
    dataset: Any
    """The chosen split as a `datasets.Dataset`."""
    label: str
    """Where it came from, for reports: ``hf:SOURCE[SPLIT]`` (``hf:SOURCE`` for a split-less saved Dataset)."""


def open_hf_dataset(
    source: str | Path,
    split: str | None = None,
    *,
    cache_dir: str | None = None,
    any_single_split: bool = False,
) -> OpenedHFDataset:
    """Open one split of a ``save_to_disk`` folder, local parquet files or a hub id (through the local cache).

    The one opener evaluation and training share. ``split=None`` picks the only split or the first of
    PREFERRED_SPLITS; a named split must exist, except that with ``any_single_split`` a local dataset with a
    single split is used whatever that split is called (training asks for "train" by default, and a
    one-split snapshot of anything should still train). Failures are DatasetFormatErrors saying what to do.
    """
    import datasets

    path = Path(source).expanduser()
    if path.exists():
        if is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            if not isinstance(loaded, datasets.DatasetDict):
                return OpenedHFDataset(loaded, f"hf:{path}")
            chosen = _split_to_open(list(loaded.keys()), split, any_single_split, str(path))
            return OpenedHFDataset(loaded[chosen], f"hf:{path}[{chosen}]")
        files = parquet_files(path)
        if not files:
            raise DatasetFormatError(f"{path}: neither a save_to_disk folder nor parquet files")
        by_split = group_parquet_by_split(files)
        chosen = _split_to_open(list(by_split), split, any_single_split, str(path))
        loaded = datasets.load_dataset(
            "parquet", data_files={chosen: [str(f) for f in by_split[chosen]]}, split=chosen, cache_dir=cache_dir
        )
        return OpenedHFDataset(loaded, f"hf:{path}[{chosen}]")
    hub_id = str(source)
    if looks_like_local_path(hub_id):
        raise DatasetFormatError(f"{hub_id}: no such file or folder")
    try:
        if split is None:
            splits = datasets.load_dataset(hub_id, cache_dir=cache_dir)
            chosen = choose_split(list(splits.keys()), None, hub_id)
            return OpenedHFDataset(splits[chosen], f"hf:{hub_id}[{chosen}]")
        return OpenedHFDataset(datasets.load_dataset(hub_id, split=split, cache_dir=cache_dir), f"hf:{hub_id}[{split}]")
    except DatasetFormatError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no detail"
        raise DatasetFormatError(
            f"{hub_id}: not a local path, and the hub dataset could not be loaded ({type(exc).__name__}: {detail}). "
            f"Offline, download it on a connected machine with {download_hint(hub_id, repo_type='dataset')} "
            "(or `datasets.load_dataset(...).save_to_disk(DIR)`) and pass DIR."
        ) from exc


def _split_to_open(available: list[str], requested: str | None, any_single_split: bool, where: str) -> str:
    if any_single_split and len(available) == 1:
        return available[0]
    return choose_split(available, requested, where)


def choose_split(available: list[str], requested: str | None, where: str) -> str:
    if requested is not None:
        if requested not in available:
            raise DatasetFormatError(f"{where}: no split {requested!r}; available: {', '.join(available)}")
        return requested
    if len(available) == 1:
        return available[0]
    for preferred in PREFERRED_SPLITS:
        if preferred in available:
            return preferred
    raise DatasetFormatError(f"{where}: several splits ({', '.join(available)}); choose one with --split")


def group_parquet_by_split(files: list[Path]) -> dict[str, list[Path]]:
    """Hub layout names files ``<split>-00000-of-00001.parquet``; anything else is one split, "train"."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for file in files:
        stem = file.stem
        prefix, separator, _ = stem.partition("-")
        groups[prefix if separator and prefix else "train"].append(file)
    return dict(groups)


def _first_present(candidates: tuple[str, ...], columns: set[str], role: str, name: str) -> str:
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise DatasetFormatError(
        f"{name}: no {role} column; expected one of {', '.join(candidates)} (columns: {', '.join(sorted(columns))})"
    )


def _sample_ids(dataset: Any, columns: set[str]) -> list[str]:
    """'id' if present, else image_id + ann_id, else image_id, else the row number; made unique by row."""
    key_columns = ["id"] if "id" in columns else [c for c in ("image_id", "ann_id") if c in columns]
    if not key_columns:
        return [str(row) for row in range(len(dataset))]
    table = dataset.select_columns(key_columns).to_dict()
    ids = ["_".join(str(table[column][row]) for column in key_columns) for row in range(len(dataset))]
    counts: dict[str, int] = defaultdict(int)
    for sample_id in ids:
        counts[sample_id] += 1
    return [f"{sample_id}#{row}" if counts[sample_id] > 1 else sample_id for row, sample_id in enumerate(ids)]
