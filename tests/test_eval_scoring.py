"""Per-sample scoring and the summary's aggregation, on hand-built results."""

import numpy as np
import pytest

from segzero_ros.core.result import ErrorKind, SegmentationResult, error_result
from segzero_ros.data import EvalSample
from segzero_ros.evaluation import score_sample, summarize_records


def sample(ignore: np.ndarray | None = None) -> EvalSample:
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 1:4] = True  # 6 px
    return EvalSample(id="x", image=np.zeros((4, 6, 3), dtype=np.uint8), mask=mask, text="t", ignore=ignore)


def result(mask: np.ndarray | None) -> SegmentationResult:
    return SegmentationResult(command="t", image_size=(6, 4), mask=mask)


def test_prediction_scored_against_ground_truth_with_ignored_pixels_removed():
    prediction = np.zeros((4, 6), dtype=bool)
    prediction[0:3, 0:4] = True  # 12 px, covering all 6 GT pixels
    plain = score_sample(sample(), result(prediction))
    assert (plain["intersection"], plain["union"], plain["iou"]) == (6, 12, 0.5)
    ignore = np.zeros((4, 6), dtype=bool)
    ignore[0, :] = True  # takes 4 predicted, non-GT pixels out of the union
    record = score_sample(sample(ignore), result(prediction))
    assert (record["intersection"], record["union"], record["iou"]) == (6, 8, 0.75)
    assert record["ignored_pixels"] == 6 and record["gt_pixels"] == 6 and record["ok"] is True


def test_failures_score_zero_over_the_ground_truth():
    failed = error_result("t", (6, 4), ErrorKind.UNPARSEABLE_OUTPUT, "no json")
    record = score_sample(sample(), failed)
    assert (record["intersection"], record["union"], record["iou"]) == (0, 6, 0.0)
    assert record["error_kind"] == "unparseable_output"

    wrong_size = score_sample(sample(), result(np.ones((8, 12), dtype=bool)))
    assert (wrong_size["intersection"], wrong_size["union"]) == (0, 6)
    assert wrong_size["ok"] is False and wrong_size["error_kind"] == "segmenter_failed"


def test_summary_counts_failures_and_takes_percentiles_over_stages_that_ran():
    records = []
    for index, total in enumerate([0.1, 0.2, 0.3, 0.4]):
        records.append({"id": str(index), "intersection": 1, "union": 2, "ok": True, "error_kind": None,
                        "timings": {"reason_s": total, "encode_s": 0.01, "decode_s": 0.001, "total_s": total}})
    records.append({"id": "f1", "intersection": 0, "union": 4, "ok": False, "error_kind": "unparseable_output",
                    "timings": {"reason_s": 0.5, "encode_s": 0.0, "decode_s": 0.0, "total_s": 0.5}})
    records.append({"id": "f2", "intersection": 0, "union": 0, "ok": False, "error_kind": "reasoner_failed",
                    "timings": {"reason_s": 0.0, "encode_s": 0.0, "decode_s": 0.0, "total_s": 0.0}})
    summary = summarize_records(records)
    assert summary["count"] == 6 and summary["ok"] == 4 and summary["failed"] == 2
    assert summary["failures"] == {"reasoner_failed": 1, "unparseable_output": 1}
    assert summary["gIoU"] == pytest.approx(4 * 0.5 / 6)
    assert summary["cIoU"] == pytest.approx(4 / 12)
    total = summary["latency_s"]["total_s"]
    # Five samples ran (the zero is left out): 0.1 … 0.5, linear interpolation between ranks.
    assert total["count"] == 5
    assert total["p50"] == pytest.approx(0.3) and total["p90"] == pytest.approx(0.46)
    assert total["p99"] == pytest.approx(0.496) and total["mean"] == pytest.approx(0.3)
    assert summary["latency_s"]["encode_s"]["count"] == 4


def test_summary_of_nothing_is_zero_not_nan():
    summary = summarize_records([])
    assert (summary["gIoU"], summary["cIoU"], summary["count"]) == (0.0, 0.0, 0)
    assert summary["latency_s"]["reason_s"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None}
