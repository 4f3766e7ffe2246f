import numpy as np
import pytest

from segzero_ros.core.metrics import failed_sample, intersection_union, summarize


def square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_identical_masks():
    mask = square((8, 10), 2, 3, 4)
    assert intersection_union(mask, mask) == (16, 16)


def test_partial_overlap_is_counted_in_pixels():
    # 4×4 squares offset by 2 columns: 8 shared pixels, 16 + 16 - 8 = 24 in the union.
    assert intersection_union(square((8, 10), 2, 3, 4), square((8, 10), 2, 5, 4)) == (8, 24)


def test_disjoint_masks():
    assert intersection_union(square((8, 10), 0, 0, 2), square((8, 10), 5, 5, 3)) == (0, 4 + 9)


def test_empty_masks():
    empty = np.zeros((4, 4), dtype=bool)
    assert intersection_union(empty, empty) == (0, 0)
    assert intersection_union(empty, square((4, 4), 0, 0, 2)) == (0, 4)


def test_zero_one_integer_masks_equal_bool_masks():
    pred, gt = square((6, 6), 1, 1, 3), square((6, 6), 2, 2, 3)
    assert intersection_union(pred.astype(np.uint8), gt.astype(np.int64)) == intersection_union(pred, gt)
    assert all(type(value) is int for value in intersection_union(pred, gt))


def test_shape_mismatch_raises_instead_of_broadcasting():
    with pytest.raises(ValueError, match="shapes differ"):
        intersection_union(np.zeros((4, 4), bool), np.zeros((1, 4), bool))


def test_a_missing_prediction_is_not_a_mask():
    with pytest.raises(TypeError):
        intersection_union(None, np.zeros((4, 4), bool))  # type: ignore[arg-type]


def test_failed_sample_counts_the_whole_ground_truth():
    assert failed_sample(square((10, 10), 1, 1, 5)) == (0, 25)
    assert failed_sample(np.zeros((3, 3), bool)) == (0, 0)


def test_summarize_hand_computed():
    # Per-sample IoU 0.5, 0 (U = 0 counts 0), 1 → gIoU 0.5; cIoU = 80 / 130.
    result = summarize([50, 0, 30], [100, 0, 30])
    assert result["gIoU"] == pytest.approx(0.5)
    assert result["cIoU"] == pytest.approx(80 / 130)
    assert result["count"] == 3


def test_giou_and_ciou_weigh_samples_differently():
    # A small perfect object and a large missed one: gIoU averages samples, cIoU pools pixels.
    result = summarize([10, 0], [10, 990])
    assert result["gIoU"] == pytest.approx(0.5)
    assert result["cIoU"] == pytest.approx(0.01)


def test_failures_pull_both_metrics_down():
    gt = square((10, 10), 0, 0, 4)
    good = intersection_union(gt, gt)
    failed = failed_sample(gt)
    result = summarize([good[0], failed[0]], [good[1], failed[1]])
    assert result == {"gIoU": 0.5, "cIoU": 0.5, "count": 2}


def test_empty_input_gives_zeros_not_nan():
    assert summarize([], []) == {"gIoU": 0.0, "cIoU": 0.0, "count": 0}


def test_all_unions_zero():
    assert summarize([0, 0], [0, 0]) == {"gIoU": 0.0, "cIoU": 0.0, "count": 2}


@pytest.mark.parametrize(
    ("intersections", "unions"),
    [([1, 2], [3]), ([5], [4]), ([-1], [4]), ([0], [-4])],
)
def test_impossible_counts_raise(intersections, unions):
    with pytest.raises(ValueError):
        summarize(intersections, unions)


def test_summarize_accepts_numpy_integers():
    result = summarize(list(np.array([3, 4])), list(np.array([6, 8])))
    assert result["gIoU"] == pytest.approx(0.5)
    assert result["cIoU"] == pytest.approx(0.5)


def test_a_correct_not_found_counts_one_in_giou_and_nothing_in_ciou():
    # Samples: IoU 0.5, a no-target sample answered not_found (1), a no-target sample given 40 px (0).
    result = summarize([50, 0, 0], [100, 0, 40], correct_empty=[False, True, False])
    assert result["gIoU"] == pytest.approx(0.5)
    assert result["cIoU"] == pytest.approx(50 / 140)
    with pytest.raises(ValueError, match="U = 0"):
        summarize([0], [5], correct_empty=[True])
    with pytest.raises(ValueError, match="correct_empty"):
        summarize([0], [0], correct_empty=[True, False])
