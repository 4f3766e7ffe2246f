"""VisionReasoner's rewards: hand-computed cases, the reference's quirks, and a differential test against an
oracle written here from the reference's description with plain loops (the implementation is vectorised)."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_ros.core.solution import object_solution
from segzero_ros.core.vision_reasoner_rewards import (
    ObjectRewards,
    accuracy_reward,
    answer_text,
    non_repeat_reward,
    object_format_reward,
    score_objects,
    vision_reasoner_reward,
)

pytest.importorskip("scipy")  # the train extra installs it; scripts/setup installs every extra

CUP = ([100, 100, 199, 199], [150, 150])
PLATE = ([400, 300, 599, 499], [500, 400])
SOLUTION = object_solution([CUP, PLATE])


def answer(items: Any, think: str = "two things") -> str:
    return f"<think>{think}</think>\n<answer>{json.dumps(items)}</answer>"


def item(box: list[int], point: list[int]) -> dict[str, Any]:
    return {"bbox_2d": box, "point_2d": point}


def test_a_perfect_two_object_answer_scores_seven() -> None:
    perfect = answer([item(*PLATE), item(*CUP)])  # order does not matter: the matching finds the pairs
    scores = score_objects(perfect, SOLUTION)
    assert scores == ObjectRewards(thinking_format=1.0, object_format=2.0, accuracy=3.0, non_repeat=1.0)
    assert scores.format == 3.0 and scores.total == vision_reasoner_reward(perfect, SOLUTION) == 7.0


def test_accuracy_by_hand() -> None:
    # One object found exactly, the plate missed: 3 for the cup, over max(1, 2) = 2 objects.
    assert accuracy_reward(answer([item(*CUP)]), SOLUTION) == 1.5
    # Box shifted by 12 px right: IoU (188-112+1)·100 / (2·10000 − 8800) = 8800/11200 ≈ 0.79 > 0.5 → 1;
    # mean L1 = 12·2/4 = 6 < 10 → 1; point (150,150) inside its box (112..211) and 0 px off → 1.
    shifted = answer([item([112, 100, 211, 199], [150, 150])])
    assert accuracy_reward(shifted, object_solution([CUP])) == 3.0
    # Shifted by 24: L1 = 12 → 0; IoU 7600/12400 ≈ 0.61 → 1; the point (122,150) is 28 px from the GT point
    # but outside its own box (x 124..223) → 0.
    far = answer([item([124, 100, 223, 199], [122, 150])])
    assert accuracy_reward(far, object_solution([CUP])) == 1.0
    # Point 29.9 px away counts, 30 px does not (strictly below 30).
    near = answer([item([100, 100, 199, 199], [150, 179.9])])
    off = answer([item([100, 100, 199, 199], [150, 180])])
    assert accuracy_reward(near, object_solution([CUP])) == 3.0
    assert accuracy_reward(off, object_solution([CUP])) == 2.0
    # Three predictions for two objects: the extra one divides by 3.
    extra = answer([item(*CUP), item(*PLATE), item([0, 0, 10, 10], [5, 5])])
    assert accuracy_reward(extra, SOLUTION) == pytest.approx(6.0 / 3.0)


def test_reference_quirks_are_kept() -> None:
    # An empty answer scores 0 accuracy even against an empty GT: the reference never rewards "nothing".
    assert accuracy_reward(answer([]), "[]") == 0.0
    assert accuracy_reward(answer([]), SOLUTION) == 0.0
    # Format: a string item containing "bbox_2d" stops the scan; what was summed before stays.
    assert object_format_reward(answer([item(*CUP), "bbox_2d"])) == 1.0
    # A box of 3 numbers: half the item's format; accuracy 0 (the arrays cannot be split).
    assert object_format_reward(answer([item([1, 2, 3], [1, 1])])) == 1.0
    assert accuracy_reward(answer([item([1, 2, 3], [1, 1])]), SOLUTION) == 0.0
    # Only the first <answer> … first </answer> counts; whitespace around the JSON is stripped.
    assert answer_text("x <answer> \n[1]\t</answer> <answer>[2]</answer>") == "[1]"
    assert answer_text("<answer>[1]") is None and answer_text("no tags") is None
    # Single quotes are not JSON: format and accuracy 0.
    single_quoted = answer([item(*CUP)]).replace('"', "'")
    assert object_format_reward(single_quoted) == 0.0 and accuracy_reward(single_quoted, SOLUTION) == 0.0


def test_non_repeat_by_hand() -> None:
    assert non_repeat_reward("a. b. c.") == 1.0
    assert non_repeat_reward("a. b. a. c.") == 1.0  # one repeat is allowed
    assert non_repeat_reward("a. b. a. b.") == 0.0
    assert non_repeat_reward("a. a. a") == 0.0
    assert non_repeat_reward(" . . a") == 1.0  # empty pieces do not count


def test_non_strings_and_hostile_inputs_score_zero_quickly() -> None:
    assert score_objects(None, SOLUTION).total == 1.0  # type: ignore[arg-type]  # non-repeat keeps its 1
    assert accuracy_reward(answer([item(*CUP)]), "not json") == 0.0
    started = time.perf_counter()
    assert object_format_reward("<answer>" * 100_000) == 0.0
    assert accuracy_reward("<answer>" + "[" * 100_000 + "</answer>", SOLUTION) == 0.0
    assert accuracy_reward("<answer>[" + "9" * 5000 + "]</answer>", SOLUTION) == 0.0
    assert time.perf_counter() - started < 5.0


# --- differential: an oracle from the description, with loops and the reference's own regexes -------------


def oracle(text: str, solution: str) -> tuple[float, float, float]:
    """(format, accuracy, non-repeat) computed pair by pair, as the reference describes them."""
    from scipy.optimize import linear_sum_assignment

    thinking = 1.0 if re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL) else 0.0
    found = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
    shape = 0.0
    try:
        data = json.loads(found.group(1)) if found else None
        if data is not None:
            for entry in data:
                part = 0.0
                if "bbox_2d" in entry and isinstance(entry["bbox_2d"], list) and len(entry["bbox_2d"]) == 4:
                    part += 1.0
                if "point_2d" in entry and isinstance(entry["point_2d"], list) and len(entry["point_2d"]) == 2:
                    part += 1.0
                shape += part / len(data)
    except Exception:
        pass

    accuracy = 0.0
    try:
        truth = json.loads(solution)
        predicted = json.loads(found.group(1)) if found else None
        if predicted:
            pairs = [[0.0] * len(truth) for _ in predicted]
            for i, guess in enumerate(predicted):
                box, point = guess["bbox_2d"], guess["point_2d"]
                assert len(box) == 4 and len(point) == 2
                inside = box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]
                for j, gt in enumerate(truth):
                    gbox, gpoint = gt["bbox_2d"], gt["point_2d"]
                    w = max(0, min(box[2], gbox[2]) - max(box[0], gbox[0]) + 1)
                    h = max(0, min(box[3], gbox[3]) - max(box[1], gbox[1]) + 1)
                    union = ((box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                             + (gbox[2] - gbox[0] + 1) * (gbox[3] - gbox[1] + 1) - w * h)
                    iou = w * h / union if union else math.nan
                    l1 = sum(abs(a - b) for a, b in zip(box, gbox, strict=True)) / 4
                    distance = math.dist(point, gpoint)
                    pairs[i][j] = float(iou > 0.5) + float(l1 < 10) + float(distance < 30 and inside)
            if truth:
                rows, cols = linear_sum_assignment([[3.0 - v for v in row] for row in pairs])
                accuracy = sum(pairs[r][c] for r, c in zip(rows, cols, strict=True)) / max(len(predicted), len(truth))
    except Exception:
        accuracy = 0.0

    sentences = [piece.strip() for piece in text.split(".") if piece.strip()]
    repeats = sum(1 for index, s in enumerate(sentences) if s in sentences[:index])
    return thinking + shape, accuracy, 0.0 if repeats >= 2 else 1.0


coordinate = st.integers(min_value=0, max_value=840)


@st.composite
def truth_objects(draw: Any) -> list[tuple[list[int], list[int]]]:
    objects = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        x1, y1 = draw(st.integers(0, 700)), draw(st.integers(0, 700))
        x2, y2 = x1 + draw(st.integers(0, 139)), y1 + draw(st.integers(0, 139))
        objects.append(([x1, y1, x2, y2], [draw(st.integers(x1, x2)), draw(st.integers(y1, y2))]))
    return objects


@st.composite
def completions(draw: Any, truth: list[tuple[list[int], list[int]]]) -> str:
    items: list[Any] = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        if truth and draw(st.booleans()):
            box, point = draw(st.sampled_from(truth))
            jitter = st.integers(-15, 15)
            entry: Any = item([v + draw(jitter) for v in box], [v + draw(jitter) for v in point])
        else:
            entry = item([draw(coordinate) for _ in range(draw(st.sampled_from([4, 4, 4, 3, 5])))],
                         [draw(coordinate) for _ in range(draw(st.sampled_from([2, 2, 2, 1, 3])))])
        if draw(st.integers(0, 20)) == 0:
            entry.pop(draw(st.sampled_from(["bbox_2d", "point_2d"])))
        items.append(entry)
    think = draw(st.sampled_from(["the cup", "a. b. a. b", "x. x", "looking. looking. left. left"]))
    body = json.dumps(items)
    layout = draw(st.sampled_from(["<think>{t}</think>\n<answer>\n{b}\n</answer>", "<think>{t}</think><answer>{b}",
                                   "pre <think>{t}</think> <answer>{b}</answer> post", "<answer> {b} </answer>"]))
    return layout.replace("{t}", think).replace("{b}", body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_the_oracle_on_generated_answers(data: Any) -> None:
    truth = data.draw(truth_objects())
    text = data.draw(completions(truth))
    solution = object_solution(truth)
    scores = score_objects(text, solution)
    expected = oracle(text, solution)
    assert (scores.format, scores.non_repeat) == (expected[0], expected[2])
    assert scores.accuracy == pytest.approx(expected[1], abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('<>/answerthink[]{}",:.0123456789 _bboxpoint2d')), max_size=200))
def test_no_exception_escapes_for_any_text(text: str) -> None:
    scores = score_objects(text, SOLUTION)
    assert 0.0 <= scores.total <= 7.0
