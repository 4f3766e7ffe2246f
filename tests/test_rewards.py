import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_ros.core.rewards import (
    RewardBreakdown,
    bbox_iou_reward,
    bbox_l1_reward,
    first_brace_object,
    group_advantages,
    point_reward,
    score_completion,
    seg_zero_reward,
    segmentation_format_reward,
    thinking_format_reward,
)

# GT box 100..199 in both axes: 100 × 100 = 10 000 inclusive pixels.
SOLUTION = "<box>(100,100),(199,199)</box><points>(120,130),(180,170)</points>"


def completion(box: Any, point_1: Any, point_2: Any, think: str = "the cup on the left") -> str:
    answer = json.dumps({"bbox": box, "points_1": point_1, "points_2": point_2})
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


PERFECT = completion([100, 100, 199, 199], [120, 130], [180, 170])


# --- an oracle: the reference behaviour as SEGZERO.md states it, with the reference's own regexes --------


def oracle(text: str, solution: str) -> tuple[float, float, float, float, float]:
    """(thinking, segmentation format, IoU, L1, point) the way the reference computes them."""
    think = 1.0 if re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL) else 0.0

    def search(pattern: str, where: str) -> re.Match[str]:
        match = re.search(pattern, where)
        if match is None:
            raise ValueError("no match")  # the reference fails here with an AttributeError or NameError
        return match

    def answer() -> Any:
        return json.loads(search(r"{[^}]+}", text).group(0))

    def gt_box() -> list[int]:
        match = search(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>", solution)
        return [int(value) for value in match.groups()]

    def gt_points() -> list[list[int]]:
        match = search(r"<points>\((\d+),(\d+)\),\((\d+),(\d+)\)</points>", solution)
        a, b, c, d = (int(value) for value in match.groups())
        return [[a, b], [c, d]]

    def predicted_box(data: Any) -> Any:
        box = data["bbox"]
        assert len(box) == 4
        return box

    def fmt() -> float:
        data = answer()
        ok = all(key in data for key in ("bbox", "points_1", "points_2"))
        ok = ok and isinstance(data["bbox"], list) and len(data["bbox"]) == 4
        for key in ("points_1", "points_2"):
            ok = ok and isinstance(data[key], list) and len(data[key]) == 2
        return 1.0 if ok else 0.0

    def iou() -> float:
        g, p = gt_box(), predicted_box(answer())
        ix1, iy1, ix2, iy2 = max(p[0], g[0]), max(p[1], g[1]), min(p[2], g[2]), min(p[3], g[3])
        inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if (ix1 < ix2 and iy1 < iy2) else 0
        union = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - inter
        return 1.0 if float(inter) / union > 0.5 else 0.0

    def l1() -> float:
        g, p = gt_box(), predicted_box(answer())
        return 1.0 if sum(abs(p[i] - g[i]) for i in range(4)) / 4 < 10 else 0.0

    def point() -> float:
        g = gt_points()
        data = answer()
        p = predicted_box(data)
        q = [[int(data[k][0]), int(data[k][1])] for k in ("points_1", "points_2")]
        for x, y in q:
            if not (p[0] <= x <= p[2] and p[1] <= y <= p[3]):
                return 0.0

        def dist(a: list[int], b: list[int]) -> float:
            return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)

        best = min(dist(q[0], g[0]) + dist(q[1], g[1]), dist(q[0], g[1]) + dist(q[1], g[0]))
        return 1.0 if best / 2 < 100 else 0.0

    def guarded(reward: Callable[[], float]) -> float:
        try:
            return reward()
        except Exception:
            return 0.0

    return think, guarded(fmt), guarded(iou), guarded(l1), guarded(point)


def components(text: str, solution: str = SOLUTION) -> tuple[float, float, float, float, float]:
    result = score_completion(text, solution)
    return (result.thinking_format, result.segmentation_format, result.bbox_iou, result.bbox_l1, result.point)


# --- the perfect answer and the total ------------------------------------------------------------------


def test_perfect_completion_scores_five():
    assert components(PERFECT) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert seg_zero_reward(PERFECT, SOLUTION) == 5.0


def test_public_functions_agree_with_the_breakdown():
    text = completion([105, 100, 199, 199], [120, 130], [500, 500])
    breakdown = score_completion(text, SOLUTION)
    assert breakdown == RewardBreakdown(
        thinking_format=thinking_format_reward(text),
        segmentation_format=segmentation_format_reward(text),
        bbox_iou=bbox_iou_reward(text, SOLUTION),
        bbox_l1=bbox_l1_reward(text, SOLUTION),
        point=point_reward(text, SOLUTION),
    )
    # (500, 500) is outside the predicted box: point 0, all else 1.
    assert breakdown.total == 4.0
    assert breakdown.to_dict() == {
        "thinking_format": 1.0,
        "segmentation_format": 1.0,
        "bbox_iou": 1.0,
        "bbox_l1": 1.0,
        "point": 0.0,
        "total": 4.0,
    }


# --- thinking format -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think></think><answer></answer>", 1.0),
        ("<think>a</think> \n\t <answer>b</answer>", 1.0),
        ("<think>a</think>\u2003<answer>b</answer>", 1.0),  # \s is Unicode whitespace
        ("<think>a</think>\u200b<answer>b</answer>", 0.0),  # zero-width space is not whitespace
        (" <think>a</think><answer>b</answer>", 0.0),  # anything before <think>
        ("Sure! <think>a</think><answer>b</answer>", 0.0),
        ("<think>a</think><answer>b</answer>\n", 0.0),  # even a trailing newline
        ("<think>a</think>so<answer>b</answer>", 0.0),  # text between the blocks
        ("<think>a</think><answer>b", 0.0),  # cut off by the token limit
        ("<think>a<answer>b</answer>", 0.0),
        ("<THINK>a</THINK><answer>b</answer>", 0.0),
        # The lazy groups may swallow tags: these still match in full.
        ("<think>a</think> junk </think>\n<answer>b</answer>", 1.0),
        ("<think>a</think><answer>b</answer> more </answer>", 1.0),
        ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),
        ("<think><think>a</think><answer>b</answer>", 1.0),
        ("<think></think><answer>", 0.0),
        ("<think></think><answer></answer", 0.0),
    ],
)
def test_thinking_format(text, expected):
    assert thinking_format_reward(text) == expected
    assert oracle(text, SOLUTION)[0] == expected


def test_thinking_format_does_not_need_json():
    assert components("<think>hmm</think><answer>no idea</answer>") == (1.0, 0.0, 0.0, 0.0, 0.0)


# --- the answer object and the segmentation format -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no braces", None),
        ("{}", None),
        ("{} {a}", "{a}"),
        ("{{a}", "{{a}"),  # "{" is allowed inside: the match starts at the first "{"
        ("x{a}{b}", "{a}"),
        ('{"a": {"b": 1}}', '{"a": {"b": 1}'),  # cut at the first "}"
        ("{a", None),
        ("}{a}", "{a}"),
        ("{}{}{}", None),
        ("{\n}", "{\n}"),
    ],
)
def test_first_brace_object(text, expected):
    assert first_brace_object(text) == expected
    reference = re.search(r"{[^}]+}", text)
    assert (reference.group(0) if reference else None) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PERFECT, 1.0),
        # Extra keys are fine; element types are not checked.
        ('{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4], "label": "cup"}', 1.0),
        ('{"bbox": ["a",null,true,1.5], "points_1": [[1],2], "points_2": [3,4]}', 1.0),
        ('{"bbox": [NaN,2,3,Infinity], "points_1": [1,2], "points_2": [3,4]}', 1.0),
        # Duplicate keys: json keeps the last one.
        ('{"bbox": [1], "bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 1.0),
        ('```json\n{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}\n```', 1.0),
        # Exact keys only.
        ('{"bbox": [1,2,3,4], "points_1": [1,2]}', 0.0),
        ('{"bbox": [1,2,3,4], "point_1": [1,2], "point_2": [3,4]}', 0.0),
        ('{"bbox_2d": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 0.0),
        ('{"BBOX": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 0.0),
        # Exact lengths and list types.
        ('{"bbox": [1,2,3,4,5], "points_1": [1,2], "points_2": [3,4]}', 0.0),
        ('{"bbox": [1,2,3,4], "points_1": [1,2,3], "points_2": [3,4]}', 0.0),
        ('{"bbox": "1234", "points_1": [1,2], "points_2": [3,4]}', 0.0),
        ('{"bbox": [1,2,3,4], "points_1": [[1,2]], "points_2": [3,4]}', 0.0),
        # The prompt's own example uses single quotes: not JSON.
        ("{'bbox': [1,2,3,4], 'points_1': [1,2], 'points_2': [3,4]}", 0.0),
        # A "}" inside a string cuts the object short.
        ('{"note": "a}b", "bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 0.0),
        # Nested objects never decode.
        ('{"answer": {"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}}', 0.0),
        ('{{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 0.0),
        # "{}" is skipped, the next object is read.
        ('{} {"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', 1.0),
    ],
)
def test_segmentation_format(text, expected):
    assert segmentation_format_reward(text) == expected
    assert oracle(text, SOLUTION)[1] == expected


def test_braces_in_the_thinking_shadow_the_answer():
    good = json.dumps({"bbox": [100, 100, 199, 199], "points_1": [120, 130], "points_2": [180, 170]})
    text = f"<think>the set {{cup, mug}} has two items</think><answer>{good}</answer>"
    assert components(text) == (1.0, 0.0, 0.0, 0.0, 0.0)


def test_an_object_in_the_thinking_is_scored_instead_of_the_answer():
    decoy = json.dumps({"bbox": [0, 0, 50, 50], "points_1": [10, 10], "points_2": [20, 20]})
    good = json.dumps({"bbox": [100, 100, 199, 199], "points_1": [120, 130], "points_2": [180, 170]})
    text = f"<think>not {decoy}</think><answer>{good}</answer>"
    assert components(text) == (1.0, 1.0, 0.0, 0.0, 0.0)


def test_no_answer_tags_needed_for_the_accuracy_rewards():
    text = json.dumps({"bbox": [100, 100, 199, 199], "points_1": [120, 130], "points_2": [180, 170]})
    assert components(text) == (0.0, 1.0, 1.0, 1.0, 1.0)


# --- box IoU --------------------------------------------------------------------------------------------


def iou_of(box: Any, solution: str = SOLUTION, soft: bool = False) -> float:
    return bbox_iou_reward(completion(box, [120, 130], [180, 170]), solution, soft=soft)


def test_iou_exactly_one_half_is_not_enough():
    # Inclusive areas: pred 100 × 50 = 5000, all inside GT; union 10 000 → IoU 0.5 exactly.
    assert iou_of([100, 100, 199, 149], soft=True) == 0.5
    assert iou_of([100, 100, 199, 149]) == 0.0
    # One more row: 5100 / 10 000 = 0.51.
    assert iou_of([100, 100, 199, 150], soft=True) == pytest.approx(0.51)
    assert iou_of([100, 100, 199, 150]) == 1.0


def test_iou_counts_inclusive_pixels():
    # Exclusive areas would give 99 × 99 vs 99 × 49 = 0.4949...; inclusive gives 0.5 → shown above.
    # Shifted by 10: intersection 90 × 90 = 8100, union 10 000 + 10 000 - 8100 = 11 900.
    assert iou_of([110, 110, 209, 209], soft=True) == pytest.approx(8100 / 11900)


def test_touching_boxes_have_no_intersection():
    # They share the pixel column x = 199 (100 pixels), but ix1 == ix2 counts 0.
    assert iou_of([199, 100, 298, 199], soft=True) == 0.0


def test_a_one_pixel_wide_box_never_intersects():
    # Identical degenerate GT and prediction: IoU 0, yet L1 is perfect.
    solution = "<box>(100,100),(100,199)</box><points>(100,120),(100,150)</points>"
    text = completion([100, 100, 100, 199], [100, 120], [100, 150])
    assert bbox_iou_reward(text, solution, soft=True) == 0.0
    assert components(text, solution) == (1.0, 1.0, 0.0, 1.0, 1.0)


def test_inverted_predicted_box_scores_zero():
    # Both axes inverted: the area (-98)·(-98) is positive, but the intersection is empty.
    assert iou_of([199, 199, 100, 100], soft=True) == 0.0
    assert iou_of([199, 199, 100, 100]) == 0.0


def test_box_values_are_used_without_int_cast():
    # Floats and booleans are numbers to the IoU; strings are not.
    assert iou_of([100.9, 100.0, 199.0, 199.0]) == 1.0
    assert iou_of([100, 100, 199, 149.9], soft=True) == pytest.approx(100 * 50.9 / 10000)
    assert iou_of([100, 100, 199, 149.9]) == 1.0  # 0.509; an int cast would give exactly 0.5 → 0
    assert iou_of(["100", "100", "199", "199"]) == 0.0


def test_zero_union_is_caught():
    # Inclusive area of pred (x2 = x1 - 1) is 0; GT likewise: union 0 → ZeroDivisionError → 0.
    solution = "<box>(5,5),(4,4)</box><points>(1,1),(2,2)</points>"
    assert bbox_iou_reward(completion([5, 5, 4, 4], [1, 1], [2, 2]), solution, soft=True) == 0.0


# --- box L1 ---------------------------------------------------------------------------------------------


def l1_of(box: Any, soft: bool = False) -> float:
    return bbox_l1_reward(completion(box, [120, 130], [180, 170]), SOLUTION, soft=soft)


def test_l1_exactly_ten_is_not_enough():
    assert l1_of([110, 110, 209, 209]) == 0.0
    assert l1_of([109, 110, 209, 209]) == 1.0  # (9 + 10 + 10 + 10) / 4 = 9.75
    assert l1_of([90, 90, 189, 189]) == 0.0  # below works the same way
    assert l1_of([100, 100, 199, 239]) == 0.0  # one corner 40 off: mean 10
    assert l1_of([100, 100, 199, 238]) == 1.0


def test_soft_l1_is_one_minus_l1_over_the_frame():
    assert l1_of([110, 110, 209, 209], soft=True) == pytest.approx(1 - 10 / 840)
    assert l1_of([100, 100, 199, 199], soft=True) == 1.0
    assert l1_of([2000, 2000, 3000, 3000], soft=True) == 0.0  # clamped
    text = completion([110, 110, 209, 209], [0, 0], [0, 0])
    assert bbox_l1_reward(text, SOLUTION, soft=True, extent=1000) == pytest.approx(0.99)


def test_non_finite_boxes():
    # json.loads accepts NaN and Infinity, and the format reward does not look at element types.
    nan_box = '{"bbox": [NaN, 100, 199, 199], "points_1": [120, 130], "points_2": [180, 170]}'
    assert components(nan_box) == (0.0, 1.0, 0.0, 0.0, 0.0)
    # An infinite box has infinite area (IoU 0) and L1, but it does contain the points.
    infinite_box = '{"bbox": [-Infinity, 100, Infinity, 199], "points_1": [120, 130], "points_2": [180, 170]}'
    assert components(infinite_box) == (0.0, 1.0, 0.0, 0.0, 1.0)
    for text in (nan_box, infinite_box):
        assert components(text) == oracle(text, SOLUTION)
        assert bbox_iou_reward(text, SOLUTION, soft=True) == 0.0
        assert bbox_l1_reward(text, SOLUTION, soft=True) == 0.0


def test_booleans_are_numbers_to_the_reference():
    # True == 1: this box is (1, 1, 199, 199) against GT (1, 1, 199, 199).
    solution = "<box>(1,1),(199,199)</box><points>(120,130),(180,170)</points>"
    text = '{"bbox": [true, true, 199, 199], "points_1": [120, 130], "points_2": [180, 170]}'
    assert components(text, solution) == (0.0, 1.0, 1.0, 1.0, 1.0)


def test_box_rewards_need_only_the_gt_box():
    box_only = "<box>(100,100),(199,199)</box>"
    assert components(PERFECT, box_only) == (1.0, 1.0, 1.0, 1.0, 0.0)
    points_only = "<points>(120,130),(180,170)</points>"
    assert components(PERFECT, points_only) == (1.0, 1.0, 0.0, 0.0, 1.0)
    assert components(PERFECT, "") == (1.0, 1.0, 0.0, 0.0, 0.0)


# --- points ---------------------------------------------------------------------------------------------


def points_of(box: Any, point_1: Any, point_2: Any) -> float:
    return point_reward(completion(box, point_1, point_2), SOLUTION)


def test_points_on_target():
    assert points_of([100, 100, 199, 199], [120, 130], [180, 170]) == 1.0


def test_point_pairing_may_be_swapped():
    assert points_of([100, 100, 199, 199], [180, 170], [120, 130]) == 1.0


def test_points_must_be_inside_the_predicted_box_not_the_gt_box():
    # Exactly on the GT points, but the second lies outside the (too small) predicted box.
    assert points_of([100, 100, 150, 150], [120, 130], [180, 170]) == 0.0
    # Outside the GT box (x = 300), but inside the predicted box and 90 px away on average.
    assert points_of([0, 0, 839, 839], [300, 130], [180, 170]) == 1.0


def test_predicted_box_edges_are_inclusive():
    assert points_of([120, 130, 180, 170], [120, 130], [180, 170]) == 1.0
    assert points_of([121, 130, 180, 170], [120, 130], [180, 170]) == 0.0


def test_mean_distance_exactly_one_hundred_is_not_enough():
    # Straight pairing: 200 + 0 → mean 100; the crossed pairing is worse (≈ 121.5).
    assert points_of([100, 100, 199, 399], [120, 330], [180, 170]) == 0.0
    assert points_of([100, 100, 199, 399], [120, 328], [180, 170]) == 1.0  # mean 99


def test_distance_is_euclidean_under_the_better_pairing():
    # GT points far apart; each predicted point is offset by (60, 80): Euclidean 100 (Manhattan 140).
    solution = "<box>(0,0),(839,839)</box><points>(100,100),(500,500)</points>"
    whole_frame = [0, 0, 839, 839]
    for first, second in (([160, 180], [560, 580]), ([560, 580], [160, 180])):  # either order
        assert point_reward(completion(whole_frame, first, second), solution) == 0.0  # mean exactly 100
    # (59, 80) → sqrt(9881) ≈ 99.4: mean ≈ 99.7.
    for first, second in (([160, 180], [559, 580]), ([559, 580], [160, 180])):
        assert point_reward(completion(whole_frame, first, second), solution) == 1.0


def test_points_are_int_cast():
    # 199.9 → 199: inside a box ending at 199 (the raw value would not be).
    assert points_of([100, 100, 199, 199], [199.9, 130.5], [180, 170]) == 1.0
    assert points_of([100, 100, 199, 199], ["120", " 130 "], [180, 170]) == 1.0
    assert points_of([100, 100, 199, 199], ["120.0", "130"], [180, 170]) == 0.0  # int("120.0") fails
    assert points_of([100, 100, 199, 199], [120, None], [180, 170]) == 0.0


def test_a_point_given_as_a_string_is_indexed_character_by_character():
    # The reference takes value[0] and value[1]: "12" becomes the point (1, 2). Format still fails.
    solution = "<box>(0,0),(9,9)</box><points>(1,2),(5,5)</points>"
    text = '{"bbox": [0, 0, 9, 9], "points_1": "12", "points_2": [5, 5]}'
    assert components(text, solution) == (0.0, 0.0, 1.0, 1.0, 1.0)


def test_longer_point_lists_use_their_first_two_values():
    text = '{"bbox": [100, 100, 199, 199], "points_1": [120, 130, 999], "points_2": [180, 170]}'
    assert components(text) == (0.0, 0.0, 1.0, 1.0, 1.0)


def test_non_finite_or_huge_points_score_zero():
    for point in ("[Infinity, 130]", "[NaN, 130]", f'["{"9" * 5000}", 130]', f"[{'9' * 5000}, 130]"):
        text = '{"bbox": [100, 100, 199, 199], "points_1": ' + point + ', "points_2": [180, 170]}'
        assert point_reward(text, SOLUTION) == 0.0
        assert oracle(text, SOLUTION)[4] == 0.0


def test_points_need_a_valid_predicted_box():
    text = '{"bbox": [100, 100, 199], "points_1": [120, 130], "points_2": [180, 170]}'
    assert components(text) == (0.0, 0.0, 0.0, 0.0, 0.0)


# --- robustness -----------------------------------------------------------------------------------------


def test_non_strings_score_zero():
    for bad in (None, 42, b"<think></think><answer></answer>", ["x"]):
        assert seg_zero_reward(bad, SOLUTION) == 0.0  # type: ignore[arg-type]
        assert seg_zero_reward(PERFECT, bad) == 2.0  # type: ignore[arg-type]  # only the format rewards


def test_pathological_inputs_finish_and_score_zero():
    # The reference regexes take quadratic time on these (measured: ~0.1-0.2 s at 2 % of this size, so minutes).
    for text in (
        "{" * 1_000_000,
        "{" * 500_000 + "}",
        "<think>" + "</think><answer>" * 100_000 + "</answe",
        "<think>" + "</think>" + " " * 1_000_000 + "</answer>",
        "{" + "[" * 50_000 + "}",
    ):
        assert seg_zero_reward(text, SOLUTION) == 0.0


def test_an_oversized_answer_object_scores_zero():
    padding = "x" * 200_000
    text = f'{{"pad": "{padding}", "bbox": [100,100,199,199], "points_1": [120,130], "points_2": [180,170]}}'
    assert components(text) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_huge_but_legal_integers_are_caught_like_the_reference():
    big = "9" * 4000  # within int()'s digit limit: decodes, then overflows float → 0.
    text = '{"bbox": [0, 0, ' + big + ", " + big + '], "points_1": [1, 1], "points_2": [2, 2]}'
    assert components(text) == oracle(text, SOLUTION) == (0.0, 1.0, 0.0, 0.0, 0.0)


# --- property tests -------------------------------------------------------------------------------------

HUGE_INT = "<huge int>"
"""Replaced by a 5000-digit JSON integer after json.dumps (which cannot write one itself)."""

coordinate_values = st.one_of(
    st.integers(min_value=-50, max_value=900),
    st.integers(min_value=90, max_value=210),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["120", " 130", "1e3", "abc", "", "9" * 5000, HUGE_INT]),
    st.integers(min_value=10**300, max_value=10**305),
)


def value_lists(sizes: tuple[int, int]) -> st.SearchStrategy[list[Any]]:
    return st.lists(coordinate_values, min_size=sizes[0], max_size=sizes[1])


answer_objects = st.dictionaries(
    keys=st.sampled_from(["bbox", "points_1", "points_2", "bbox_2d", "point_1", "extra"]),
    values=st.one_of(value_lists((3, 5)), value_lists((1, 3)), coordinate_values, st.text(max_size=4)),
    max_size=5,
)


def near_gt_box() -> st.SearchStrategy[list[int]]:
    return st.tuples(st.integers(80, 120), st.integers(80, 120), st.integers(180, 220), st.integers(180, 220)).map(list)


near_gt_point = st.tuples(st.integers(60, 240), st.integers(60, 240)).map(list)


@st.composite
def near_miss_completions(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        data = {"bbox": draw(near_gt_box()), "points_1": draw(near_gt_point), "points_2": draw(near_gt_point)}
    else:
        data = draw(answer_objects)
    body = json.dumps(data, allow_nan=True).replace(f'"{HUGE_INT}"', "9" * 5000)
    body = draw(
        st.sampled_from(
            [
                body,
                body.replace('"', "'"),
                body[:-1],
                "{" + body,
                body + "}",
                f"```json\n{body}\n```",
                body.replace("[", "[[", 1),
                body.replace(", ", ",\n"),
            ]
        )
    )
    prefix = draw(st.sampled_from(["<think>", " <think>", "", "<think><think>", "{x}<think>"]))
    thought = draw(st.text(alphabet="ab {}<>/\n", max_size=12))
    middle = draw(st.sampled_from(["</think>", "</think>\n", "</think> x ", "", "</think></think>\u2003"]))
    opening = draw(st.sampled_from(["<answer>", "", "<answer><answer>"]))
    closing = draw(st.sampled_from(["</answer>", "", "</answer>\n", "</answer></answer>", "</answe"]))
    return prefix + thought + middle + opening + body + closing


solutions = st.one_of(
    st.just(SOLUTION),
    st.builds(
        lambda box, points: (
            f"<box>({box[0]},{box[1]}),({box[2]},{box[3]})</box>"
            f"<points>({points[0]},{points[1]}),({points[2]},{points[3]})</points>"
        ),
        st.lists(st.integers(0, 300), min_size=4, max_size=4),
        st.lists(st.integers(0, 300), min_size=4, max_size=4),
    ),
    st.text(alphabet="<>()/,0123456789boxpints", max_size=40),
)


def assert_in_range(text: str, solution: str) -> tuple[float, float, float, float, float]:
    breakdown = score_completion(text, solution)
    strict = (
        breakdown.thinking_format,
        breakdown.segmentation_format,
        breakdown.bbox_iou,
        breakdown.bbox_l1,
        breakdown.point,
    )
    assert all(value in (0.0, 1.0) for value in strict)
    assert 0.0 <= seg_zero_reward(text, solution) <= 5.0
    assert seg_zero_reward(text, solution) == breakdown.total
    soft = score_completion(text, solution, soft=True)
    assert 0.0 <= soft.bbox_iou <= 1.0
    assert 0.0 <= soft.bbox_l1 <= 1.0
    assert 0.0 <= soft.total <= 5.0
    return strict


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=near_miss_completions(), solution=solutions)
def test_near_miss_completions_match_the_reference(text, solution):
    assert assert_in_range(text, solution) == oracle(text, solution)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.text(alphabet='{}[]",: 0123456789.-eEaNIfinty<>/thinkanswer\n', max_size=200),
    ),
    solution=solutions,
)
def test_arbitrary_text_matches_the_reference(text, solution):
    assert assert_in_range(text, solution) == oracle(text, solution)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "a", "<", ">", "/"]),
        max_size=14,
    ).map("".join)
)
def test_thinking_format_matches_the_reference_regex(text):
    expected = re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL) is not None
    assert thinking_format_reward(text) == float(expected)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="{}ab\n", max_size=30))
def test_first_brace_object_matches_the_reference_regex(text):
    reference = re.search(r"{[^}]+}", text)
    assert first_brace_object(text) == (reference.group(0) if reference else None)


@settings(max_examples=50, deadline=None)
@given(
    unit=st.text(min_size=1, max_size=20),
    repeats=st.integers(1000, 20_000),
)
def test_long_repetitive_text_never_raises(unit, repeats):
    assert_in_range(unit * repeats, SOLUTION)


# --- GRPO advantages ------------------------------------------------------------------------------------


def test_advantages_use_the_sample_std():
    # mean 2; sample variance (4 + 4 + 4 + 4) / 3, std ≈ 2.3094 (population std would be 2 → ±1).
    std = math.sqrt(16 / 3)
    expected = [-2 / (std + 1e-6), -2 / (std + 1e-6), 2 / (std + 1e-6), 2 / (std + 1e-6)]
    assert group_advantages([0.0, 0.0, 4.0, 4.0]) == pytest.approx(expected, rel=1e-12)
    assert group_advantages([0.0, 0.0, 4.0, 4.0])[2] == pytest.approx(0.8660250, rel=1e-6)


def test_advantages_of_two():
    # mean 0.5, sample std sqrt(0.5).
    scale = math.sqrt(0.5) + 1e-6
    assert group_advantages([1.0, 0.0]) == pytest.approx([0.5 / scale, -0.5 / scale])


def test_equal_rewards_give_no_signal():
    assert group_advantages([3.0, 3.0, 3.0]) == [0.0, 0.0, 0.0]


def test_single_rollout_and_empty_group():
    # veRL: a group of one has mean 0 and std 1.
    assert group_advantages([2.0]) == [2.0 / (1.0 + 1e-6)]
    assert group_advantages([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 5), min_size=2, max_size=16))
def test_advantages_are_centred(rewards):
    advantages = group_advantages(rewards)
    assert len(advantages) == len(rewards)
    assert abs(math.fsum(advantages)) < 1e-6
    # Order is preserved: a higher reward never gets a lower advantage.
    pairs = sorted(zip(rewards, advantages, strict=True))
    assert all(a[1] <= b[1] + 1e-12 for a, b in itertools.pairwise(pairs))
