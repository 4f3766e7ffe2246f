"""Per-sample records → summary.json: gIoU, cIoU, not-found accuracy, failures by kind, latency per stage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from segzero_ros.core.metrics import summarize

STAGES = ("reason_s", "encode_s", "decode_s", "total_s")
PERCENTILES = (50, 90, 99)


def summarize_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers a run is judged and compared by; every failure still counts in gIoU and cIoU."""
    metrics = summarize([int(r["intersection"]) for r in records], [int(r["union"]) for r in records],
                        [bool(r.get("no_target_correct")) for r in records])
    failures = Counter(str(r.get("error_kind") or "unknown") for r in records if not r.get("ok"))
    completion_tokens = [int(r.get("completion_tokens") or 0) for r in records]
    return {
        "gIoU": metrics["gIoU"],
        "cIoU": metrics["cIoU"],
        "count": int(metrics["count"]),
        "ok": sum(1 for r in records if r.get("ok")),
        "failed": sum(failures.values()),
        "failures": dict(sorted(failures.items())),
        "latency_s": {stage: latency_stats(_stage_times(records, stage)) for stage in STAGES},
        "completion_tokens_mean": float(np.mean(completion_tokens)) if completion_tokens else 0.0,
        "not_found": not_found_summary(records),
    }


def not_found_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the model handles "not in view": accuracy on samples without a target (VisionReasoner's N-Acc:
    answered not_found / samples without a target; None when the data has none), and how often it said
    not_found where there was a target."""
    empty = [r for r in records if r.get("no_target")]
    correct = sum(1 for r in empty if r.get("no_target_correct"))
    missed = sum(1 for r in records if not r.get("no_target") and r.get("error_kind") == "not_found")
    return {"no_target_samples": len(empty), "correct": correct,
            "accuracy": correct / len(empty) if empty else None, "said_not_found_with_target": missed}


def latency_stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99 and mean in seconds over the samples where the stage ran (None when none did)."""
    if not values:
        return {"count": 0, "mean": None, **{f"p{q}": None for q in PERCENTILES}}
    array = np.asarray(values, dtype=np.float64)
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        **{f"p{q}": float(np.percentile(array, q)) for q in PERCENTILES},
    }


def _stage_times(records: Iterable[dict[str, Any]], stage: str) -> list[float]:
    # StageTimings reports 0 for a stage that did not run (e.g. no segmentation after a parse failure);
    # including those zeros would make a failing model look fast.
    times = [float((r.get("timings") or {}).get(stage) or 0.0) for r in records]
    return [t for t in times if t > 0.0]
