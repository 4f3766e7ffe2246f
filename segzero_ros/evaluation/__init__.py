"""Evaluation on ReasonSeg, RefCOCO-style and your own data: a resumable sharded runner, scores, reports.

`segzero eval` wires these together; the pieces are importable for notebooks and scripts (the datasets
themselves come from `segzero_ros.data`):

    dataset = load_eval_dataset("ReasonSeg/val")                # LISA layout, HF folder/parquet, or folder
    outcome = evaluate(pipeline, dataset, Path("out"), batch_size=8)
    summary = merge_results(Path("out"), dataset)               # summary.json + report.md + plots
"""

from segzero_ros.evaluation.merge import merge_results
from segzero_ros.evaluation.runner import Shard, ShardOutcome, evaluate, read_records, score_sample
from segzero_ros.evaluation.summary import summarize_records

__all__ = ["Shard", "ShardOutcome", "evaluate", "merge_results", "read_records", "score_sample", "summarize_records"]
