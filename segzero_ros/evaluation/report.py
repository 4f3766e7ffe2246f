"""Markdown report with PNG plots: IoU histogram, IoU against object size, and the worst samples' overlays.

Plots use matplotlib's object API with the Agg renderer directly (no pyplot), so reporting works headless
and never changes the backend of a notebook or program that imports this module.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, Point
from segzero_ros.data.dataset import EvalDataset

PLOT_DIR = "plots"
REPORT_NAME = "report.md"
HISTOGRAM_NAME = "iou_histogram.png"
SIZE_PLOT_NAME = "iou_vs_size.png"
WORST_NAME = "worst_overlays.png"
GT_OUTLINE_COLOR = (0, 255, 255)
"""RGB cyan: the ground truth's outline on both panels."""
THUMBNAIL_SIDE = 320
"""Longest side of each overlay panel in the worst-samples figure, in pixels."""


def worst_records(records: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Lowest IoU first; ties broken by id so the report is stable across reruns."""
    return sorted(records, key=lambda r: (float(r["iou"]), str(r["id"])))[: max(0, count)]


def write_report(
    out_dir: Path,
    records: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    *,
    dataset: EvalDataset | None = None,
    worst: int = 8,
) -> Path:
    """Write plots under out_dir/plots and out_dir/report.md; returns the report's path."""
    plot_dir = out_dir / PLOT_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    plot_iou_histogram(records, plot_dir / HISTOGRAM_NAME)
    plot_iou_vs_size(records, plot_dir / SIZE_PLOT_NAME)
    worst_list = worst_records(records, worst)
    overlay_path = plot_dir / WORST_NAME
    overlay_path.unlink(missing_ok=True)  # never show a previous run's figure
    overlays_note = ""
    if dataset is None:
        overlays_note = "(overlays skipped: the dataset could not be reopened; pass --data to --merge)"
    elif worst_list:
        missing = plot_worst_overlays(worst_list, dataset, out_dir, overlay_path)
        if missing:
            overlays_note = f"({missing} of the worst samples are not in the dataset and are left out)"
    path = out_dir / REPORT_NAME
    markdown = render_markdown(summary, worst_list, overlays_note, has_overlays=overlay_path.is_file())
    _replace_atomically(path, lambda staging: staging.write_text(markdown, encoding="utf-8"))
    return path


def render_markdown(summary: dict[str, Any], worst_list: Sequence[dict[str, Any]], overlays_note: str = "",
                    has_overlays: bool = True) -> str:
    run = summary.get("run") or {}
    lines = ["# Segmentation evaluation", ""]
    for label, key in (("Dataset", "dataset"), ("Reasoner", "reasoner"), ("Reasoner frame", "reasoner_frame"),
                       ("Segmenter", "segmenter")):
        if run.get(key):
            lines.append(f"- {label}: `{run[key]}`")
    if not summary.get("complete", True):
        lines.append(f"- **Incomplete**: {summary.get('missing')} samples have no result yet")
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| gIoU | {summary['gIoU']:.4f} |",
        f"| cIoU | {summary['cIoU']:.4f} |",
        f"| samples | {summary['count']} |",
        f"| succeeded | {summary['ok']} |",
        f"| failed (scored I = 0, U = \\|GT\\|) | {summary['failed']} |",
        "",
    ]
    if summary["failures"]:
        lines += ["## Failures by kind", "", "| kind | count |", "|---|---|"]
        lines += [f"| {kind} | {count} |" for kind, count in summary["failures"].items()]
        lines.append("")
    lines += [
        "## Latency per sample (ms)",
        "",
        "Reasoning runs in batches; a sample's reasoning time is its batch's time divided by the batch size.",
        "",
        "| stage | p50 | p90 | p99 | mean | samples |",
        "|---|---|---|---|---|---|",
    ]
    for stage, stats in summary["latency_s"].items():
        cells = [_ms(stats.get(key)) for key in ("p50", "p90", "p99", "mean")]
        lines.append(f"| {stage.removesuffix('_s')} | {' | '.join(cells)} | {stats['count']} |")
    lines += [
        "",
        "## IoU distribution",
        "",
        f"![IoU histogram]({PLOT_DIR}/{HISTOGRAM_NAME})",
        "",
        f"![IoU against object size]({PLOT_DIR}/{SIZE_PLOT_NAME})",
        "",
        f"## Worst {len(worst_list)} samples",
        "",
    ]
    if overlays_note:
        lines += [overlays_note, ""]
    if has_overlays and worst_list:
        lines += ["Left: prediction (orange mask, green box, magenta points); right: ground truth. "
                  "Cyan: ground-truth outline.", "",
                  f"![worst samples]({PLOT_DIR}/{WORST_NAME})", ""]
    lines += ["| # | id | IoU | command | error |", "|---|---|---|---|---|"]
    for rank, record in enumerate(worst_list, start=1):
        lines.append(
            f"| {rank} | {_cell(record['id'])} | {float(record['iou']):.4f} | {_cell(record.get('command', ''))} "
            f"| {_cell(record.get('error_kind') or '')} |"
        )
    return "\n".join(lines) + "\n"


def plot_iou_histogram(records: Sequence[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    succeeded = [float(r["iou"]) for r in records if r.get("ok")]
    failed = [float(r["iou"]) for r in records if not r.get("ok")]
    bins = [step / 20 for step in range(21)]
    axes.hist([succeeded, failed], bins=bins, stacked=True, color=["tab:blue", "tab:red"],
              label=[f"segmented ({len(succeeded)})", f"failed ({len(failed)})"])
    axes.set_xlabel("IoU")
    axes.set_ylabel("samples")
    axes.set_xlim(0, 1)
    axes.set_title(f"IoU per sample (n = {len(records)})")
    axes.legend()
    figure.tight_layout()
    _replace_atomically(path, lambda staging: figure.savefig(staging, format="png"))


def plot_iou_vs_size(records: Sequence[dict[str, Any]], path: Path) -> None:
    """IoU against the GT object's share of the image: shows whether small objects are the weak spot."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    for ok, colour, marker, label in ((True, "tab:blue", "o", "segmented"), (False, "tab:red", "x", "failed")):
        points = [(_object_fraction(r), float(r["iou"])) for r in records if bool(r.get("ok")) == ok]
        points = [(fraction, iou) for fraction, iou in points if fraction > 0]
        if points:
            fractions, ious = zip(*points, strict=True)
            axes.scatter(fractions, ious, c=colour, marker=marker, s=16, label=f"{label} ({len(points)})")
    axes.set_xscale("log")
    axes.set_xlabel("object size (fraction of image area)")
    axes.set_ylabel("IoU")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("IoU against object size")
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    _replace_atomically(path, lambda staging: figure.savefig(staging, format="png"))


def plot_worst_overlays(worst_list: Sequence[dict[str, Any]], dataset: EvalDataset, out_dir: Path,
                        path: Path) -> int:
    """One row per sample: prediction overlay beside ground truth; returns how many were not in the dataset."""
    from matplotlib.figure import Figure

    from segzero_ros.visualize import overlay_image

    rows: list[tuple[dict[str, Any], np.ndarray, np.ndarray]] = []
    for record in worst_list:
        position = dataset.position_of(str(record["id"]))
        if position is None:
            continue
        sample = dataset[position]
        prediction = _load_prediction(out_dir, record, sample.mask.shape)
        box = Box(*record["box"]) if record.get("box") else None
        points = [Point(*p) for p in record["points"]] if record.get("points") else None
        predicted = _outline(overlay_image(sample.image, prediction, box, points), sample.mask)
        truth = _outline(overlay_image(sample.image, sample.mask), sample.mask)
        rows.append((record, _thumbnail(predicted), _thumbnail(truth)))
    if not rows:
        return len(worst_list)
    # Panels are 4 in wide; rows as tall as the tallest image needs, plus room for the two-line title.
    aspect = max(predicted.shape[0] / predicted.shape[1] for _, predicted, _ in rows)
    figure = Figure(figsize=(8, (4 * aspect + 0.7) * len(rows)), dpi=100)
    for row, (record, predicted, truth) in enumerate(rows):
        title = f"{record['id']}  IoU {float(record['iou']):.3f}"
        if not record.get("ok"):
            title += f"  [{record.get('error_kind')}]"
        command = textwrap.shorten(str(record.get("command", "")), width=90, placeholder="…")
        for column, (image, caption) in enumerate(((predicted, "prediction"), (truth, "ground truth"))):
            axes = figure.add_subplot(len(rows), 2, 2 * row + column + 1)
            axes.imshow(image)
            axes.set_axis_off()
            axes.set_title(f"{title}\n{command}" if column == 0 else caption, fontsize=8, loc="left")
    figure.tight_layout()
    _replace_atomically(path, lambda staging: figure.savefig(staging, format="png"))
    return len(worst_list) - len(rows)


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write beside the target and rename over it: the last two shards may both write the report at once."""
    staging = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    write(staging)
    staging.replace(path)


def _outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Draw the GT outline, so it stays visible where the tint matches the object's own colour."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    cv2.drawContours(image, contours, -1, GT_OUTLINE_COLOR, thickness)
    return image


def _load_prediction(out_dir: Path, record: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    from PIL import Image

    relative = record.get("mask_file")
    if not relative or not (out_dir / relative).is_file():
        return None
    with Image.open(out_dir / relative) as image:
        mask = np.asarray(image.convert("L")) > 0
    return mask if mask.shape == shape else None


def _thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    scale = THUMBNAIL_SIDE / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def _object_fraction(record: dict[str, Any]) -> float:
    width, height = (record.get("image_size") or [0, 0])[:2]
    area = int(width) * int(height)
    return int(record.get("gt_pixels") or 0) / area if area > 0 else 0.0


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f}"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
