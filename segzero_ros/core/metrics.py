"""Reasoning-segmentation metrics as Seg-Zero reports them: gIoU and cIoU over per-sample I and U.

Per sample, the intersection I and union U of the predicted and GT masks are counted at full resolution.
A sample whose answer could not be parsed or segmented still counts, as I = 0 and U = |GT|
(:func:`failed_sample`), so failures pull both metrics down instead of vanishing from the average.

* gIoU: mean over samples of I/U; a sample with U = 0 (both masks empty) counts 0, as in the reference
  aggregator. (The reference evaluation script instead drops a successfully segmented sample whose U is 0;
  callers wanting that skip such samples before calling :func:`summarize`.) Exception: a sample without a
  target that the model correctly answered "not found" counts 1 (``correct_empty``), as VisionReasoner's
  evaluation and gRefCOCO (arXiv:2306.00968) count no-target samples.
* cIoU: ΣI / ΣU, dominated by large objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Pixel counts (I, U) of two masks of the same shape; nonzero means foreground.

    A failed prediction is not a mask: pass it through :func:`failed_sample` instead. Masks of different
    shapes raise ValueError rather than broadcast, since that always means a resolution mix-up.
    """
    if pred is None or gt is None:
        raise TypeError("masks must be arrays; score a failed sample with failed_sample(gt)")
    pred_mask = np.asarray(pred).astype(bool, copy=False)
    gt_mask = np.asarray(gt).astype(bool, copy=False)
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"mask shapes differ: predicted {pred_mask.shape}, ground truth {gt_mask.shape}")
    intersection = int(np.count_nonzero(pred_mask & gt_mask))
    union = int(np.count_nonzero(pred_mask | gt_mask))
    return intersection, union


def failed_sample(gt: np.ndarray) -> tuple[int, int]:
    """(I, U) for a sample with no prediction: (0, |GT|), the reference's penalty."""
    if gt is None:
        raise TypeError("the ground-truth mask is required")
    return 0, int(np.count_nonzero(np.asarray(gt)))


def summarize(intersections: Sequence[int], unions: Sequence[int],
              correct_empty: Sequence[bool] | None = None) -> dict[str, float]:
    """``{"gIoU", "cIoU", "count"}`` over samples; empty input gives 0, 0, 0 rather than NaN.

    ``correct_empty[i]``: sample i has no target and the model said so; it must have U = 0 and counts 1 in gIoU
    (it adds nothing to cIoU's sums). Raises ValueError for sequences of different lengths, negative counts or
    I > U, which no pair of masks can produce.
    """
    if len(intersections) != len(unions):
        raise ValueError(f"{len(intersections)} intersections but {len(unions)} unions")
    flags = [False] * len(unions) if correct_empty is None else list(correct_empty)
    if len(flags) != len(unions):
        raise ValueError(f"{len(unions)} samples but {len(flags)} correct_empty flags")
    per_sample: list[float] = []
    for intersection, union, empty in zip(intersections, unions, flags, strict=True):
        if intersection < 0 or union < 0:
            raise ValueError(f"pixel counts must be non-negative, got I={intersection}, U={union}")
        if intersection > union:
            raise ValueError(f"intersection exceeds union: I={intersection}, U={union}")
        if empty and union != 0:
            raise ValueError(f"a correct no-target sample has U = 0, got U={union}")
        per_sample.append(1.0 if empty else intersection / union if union > 0 else 0.0)
    count = len(per_sample)
    if count == 0:
        return {"gIoU": 0.0, "cIoU": 0.0, "count": 0}
    total_intersection = sum(int(value) for value in intersections)
    total_union = sum(int(value) for value in unions)
    return {
        "gIoU": float(np.mean(per_sample)),
        "cIoU": total_intersection / total_union if total_union > 0 else 0.0,
        "count": count,
    }
