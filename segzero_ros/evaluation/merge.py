"""Results files of one or many shards → summary.json and the report.

Runs after the last shard finishes (any process may be last, so each checks) or on demand with
`segzero eval --merge OUT`. Merging only reads files, so it is safe to repeat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segzero_ros.data.dataset import EvalDataset
from segzero_ros.evaluation.report import write_report
from segzero_ros.evaluation.runner import read_records, read_run_file, write_json_atomic
from segzero_ros.evaluation.summary import summarize_records

SUMMARY_NAME = "summary.json"


def missing_ids(out_dir: Path, dataset: EvalDataset) -> list[str]:
    done = read_records(out_dir)
    return [sample_id for sample_id in dataset.ids if sample_id not in done]


def merge_results(out_dir: Path, dataset: EvalDataset | None = None, *, worst: int = 8,
                  report: bool = True) -> dict[str, Any]:
    """Summarise every finished record (only the dataset's ids when it is given) and write the report.

    With the dataset known, `complete` says whether every one of its samples has a record; without it the
    records are taken as they are.
    """
    all_records = read_records(out_dir)
    if dataset is not None:
        records = [all_records[sample_id] for sample_id in dataset.ids if sample_id in all_records]
        missing = len(dataset) - len(records)
    else:
        records = sorted(all_records.values(), key=lambda r: str(r["id"]))
        missing = 0
    summary = summarize_records(records)
    run_file = read_run_file(out_dir) or {}
    summary["complete"] = missing == 0
    summary["missing"] = missing
    summary["run"] = run_file.get("summary_info", {})
    write_json_atomic(out_dir / SUMMARY_NAME, summary)
    if report:
        write_report(out_dir, records, summary, dataset=dataset, worst=worst)
    return summary
