"""Side-by-side table of evaluation runs (backends, precisions, checkpoints) from their output folders.

Besides each run's own summary, the table scores all runs again on the samples every one of them finished,
so a run that is still going or was limited differently does not distort the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.errors import SegZeroError
from segzero_ros.evaluation.merge import SUMMARY_NAME
from segzero_ros.evaluation.runner import read_records, read_run_file
from segzero_ros.evaluation.summary import STAGES, summarize_records

TIE_TOLERANCE = 0.01
"""|ΔIoU| at or below this counts as the same result for a sample."""


@dataclass(frozen=True)
class RunResults:
    label: str
    summary: dict[str, Any]
    records: dict[str, dict[str, Any]]


def load_run(path: Path, label: str | None = None) -> RunResults:
    """summary.json when present (else computed from the records) plus every per-sample record."""
    path = Path(path)
    records = read_records(path) if path.is_dir() else {}
    summary_path = path / SUMMARY_NAME
    if summary_path.is_file():
        import json

        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    elif records:
        summary = summarize_records(list(records.values()))
        summary["run"] = (read_run_file(path) or {}).get("summary_info", {})
    else:
        raise SegZeroError(f"{path}: no {SUMMARY_NAME} and no results*.jsonl: not an evaluation output folder")
    return RunResults(label or str(path).rstrip("/") or str(path), summary, records)


def format_comparison(runs: Sequence[RunResults]) -> str:
    """A plain-text table, one column per run; with two runs a last column gives B − A."""
    if len(runs) < 2:
        raise ValueError("comparing needs at least two runs")
    names = [chr(ord("A") + i) if i < 26 else f"R{i}" for i in range(len(runs))]
    header_lines = []
    for name, run in zip(names, runs, strict=True):
        info = run.summary.get("run") or {}
        described = ", ".join(f"{key} {info[key]}" for key in ("reasoner", "segmenter") if info.get(key))
        header_lines.append(f"{name} = {run.label}" + (f" ({described})" if described else ""))

    rows: list[tuple[str, list[float | int | None], str]] = []
    summaries = [run.summary for run in runs]
    rows.append(("samples", [s["count"] for s in summaries], "d"))
    rows.append(("gIoU", [s["gIoU"] for s in summaries], ".4f"))
    rows.append(("cIoU", [s["cIoU"] for s in summaries], ".4f"))
    rows.append(("failed", [s["failed"] for s in summaries], "d"))
    kinds = sorted({kind for s in summaries for kind in s.get("failures", {})})
    rows += [(f"  {kind}", [s.get("failures", {}).get(kind, 0) for s in summaries], "d") for kind in kinds]
    for stage in STAGES:
        for quantile in ("p50", "p90"):
            values = [_milliseconds(s.get("latency_s", {}).get(stage, {}).get(quantile)) for s in summaries]
            rows.append((f"{stage.removesuffix('_s')} {quantile} (ms)", values, ".1f"))

    common = set.intersection(*(set(run.records) for run in runs))
    if common:
        common_summaries = [summarize_records([run.records[i] for i in sorted(common)]) for run in runs]
        rows.append((f"gIoU on the {len(common)} common samples", [s["gIoU"] for s in common_summaries], ".4f"))
        rows.append((f"cIoU on the {len(common)} common samples", [s["cIoU"] for s in common_summaries], ".4f"))

    with_delta = len(runs) == 2
    table = [["metric", *names, *(["B − A"] if with_delta else [])]]
    for label, values, spec in rows:
        cells = [_format(value, spec) for value in values]
        if with_delta:
            first, second = values
            cells.append("" if first is None or second is None else _format(second - first, "+" + spec))
        table.append([label, *cells])
    lines = [*header_lines, "", *_align(table)]
    if with_delta and common:
        better = worse = same = 0
        for sample_id in common:
            delta = float(runs[1].records[sample_id]["iou"]) - float(runs[0].records[sample_id]["iou"])
            if delta > TIE_TOLERANCE:
                better += 1
            elif delta < -TIE_TOLERANCE:
                worse += 1
            else:
                same += 1
        lines += ["", f"per sample (|ΔIoU| <= {TIE_TOLERANCE} counts as same): B better on {better}, "
                      f"worse on {worse}, same on {same}"]
    return "\n".join(lines) + "\n"


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _format(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _align(table: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines = []
    for number, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines
