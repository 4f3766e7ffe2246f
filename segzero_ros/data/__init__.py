"""Every dataset format in one place, read by evaluation and training alike: ReasonSeg (LISA layout),
Hugging Face conversions (save_to_disk, parquet, cached hub ids), RefCOCO-style and plain folders
(`load_eval_dataset` detects which), the folder writer, and the synthetic referring-segmentation scenes the
toolkit generates itself for smoke tests, training warm-ups and evaluation demos."""

from segzero_ros.data.dataset import DatasetFormatError, EvalDataset, EvalSample
from segzero_ros.data.folder import load_folder_dataset, write_folder_dataset
from segzero_ros.data.hf import load_hf_dataset, wrap_hf_dataset
from segzero_ros.data.loaders import FORMATS, detect_format, load_eval_dataset
from segzero_ros.data.reasonseg import load_reasonseg, rasterize_shapes
from segzero_ros.data.synthetic import (
    COLORS,
    SHAPE_KINDS,
    Shape,
    SyntheticSample,
    generate_sample,
    generate_samples,
    iter_samples,
    resolve_expression,
)

__all__ = [
    "COLORS",
    "FORMATS",
    "SHAPE_KINDS",
    "DatasetFormatError",
    "EvalDataset",
    "EvalSample",
    "Shape",
    "SyntheticSample",
    "detect_format",
    "generate_sample",
    "generate_samples",
    "iter_samples",
    "load_eval_dataset",
    "load_folder_dataset",
    "load_hf_dataset",
    "load_reasonseg",
    "rasterize_shapes",
    "resolve_expression",
    "wrap_hf_dataset",
    "write_folder_dataset",
]
