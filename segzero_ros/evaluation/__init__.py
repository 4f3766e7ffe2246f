"""Evaluation on ReasonSeg, RefCOCO-style and your own data: loaders, a resumable sharded runner, reports.

`segzero eval` wires these together; the pieces are importable for notebooks and scripts:

    dataset = load_eval_dataset("ReasonSeg/val")                # LISA layout, HF folder/parquet, or folder
    outcome = evaluate(pipeline, dataset, Path("out"), batch_size=8)
    summary = merge_results(Path("out"), dataset)               # summary.json + report.md + plots
"""

from segzero_ros.evaluation.dataset import DatasetFormatError, EvalDataset, EvalSample
from segzero_ros.evaluation.folder import load_folder_dataset, write_folder_dataset
from segzero_ros.evaluation.hf import load_hf_dataset, wrap_hf_dataset
from segzero_ros.evaluation.loaders import FORMATS, detect_format, load_eval_dataset
from segzero_ros.evaluation.merge import merge_results
from segzero_ros.evaluation.reasonseg import load_reasonseg, rasterize_shapes
from segzero_ros.evaluation.runner import Shard, ShardOutcome, evaluate, read_records, score_sample
from segzero_ros.evaluation.summary import summarize_records

__all__ = [
    "FORMATS",
    "DatasetFormatError",
    "EvalDataset",
    "EvalSample",
    "Shard",
    "ShardOutcome",
    "detect_format",
    "evaluate",
    "load_eval_dataset",
    "load_folder_dataset",
    "load_hf_dataset",
    "load_reasonseg",
    "merge_results",
    "rasterize_shapes",
    "read_records",
    "score_sample",
    "summarize_records",
    "wrap_hf_dataset",
    "write_folder_dataset",
]
