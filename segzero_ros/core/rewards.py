"""Seg-Zero's GRPO rewards, reproducing the reference "strict" variant exactly, quirks included.

A policy trained against a reward learns that reward's quirks, so by default every rule below is the
reference's (``verl/utils/reward_score/seg_restrict.py`` in Seg-Zero), not what would be tidier:

* **Thinking format**: the WHOLE completion is ``<think>A</think>`` + whitespace + ``<answer>B</answer>``
  for some A and B (which may themselves contain tags): nothing before ``<think>`` or after ``</answer>``.
* **The answer object** every other reward reads is the first match of the regex ``{[^}]+}`` anywhere in the
  completion: from the first ``{`` whose next ``}`` is not immediately after it, up to that ``}``. So an
  object inside ``<think>`` shadows the one in ``<answer>``, a nested object is always cut at its first
  ``}`` (and fails to decode), and single-quoted "JSON" fails. It is decoded with :func:`json.loads`,
  which accepts ``NaN`` and ``Infinity``; duplicate keys keep the last value. This is NOT the robust
  parser of :mod:`segzero_ros.core.answer`, which is for inference.
* **Segmentation format**: the object has the exact keys ``bbox`` (a list of 4), ``points_1`` and
  ``points_2`` (lists of 2). Element types are not checked; extra keys are allowed.
* **Box IoU**: IoU of the predicted ``bbox`` (used as written, no int cast; any sized value of length 4)
  with the GT box > 0.5. Areas count inclusive pixels, ``(x2-x1+1)·(y2-y1+1)``, and the intersection counts
  only when ``ix1 < ix2`` and ``iy1 < iy2`` (so boxes overlapping in a single row or column count 0).
* **Box L1**: the mean absolute difference of the 4 coordinates < 10.
* **Point**: both points, ``int()``-cast (floats truncate, numeric strings parse), lie inside the PREDICTED
  box (inclusive; the GT box plays no part), and the mean Euclidean distance to the GT points under the
  better of the two pairings is < 100.
* Any exception while scoring (missing key, wrong type, division by zero, overflow, ...) gives 0.

Each reward parses the GT independently (see :mod:`segzero_ros.core.solution`): the box rewards need only
``<box>…</box>``, the point reward only ``<points>…</points>``.

Where ours differs from the reference, it is only on pathological input, never on a real completion:

* The reference's regexes take quadratic time on inputs like ``"{" * 10**6`` (minutes); ours find the
  same match in linear time.
* An answer object longer than :data:`MAX_ANSWER_OBJECT_CHARS` scores 0 instead of being decoded, and
  integers longer than CPython's default 4300 digits are rejected whatever the interpreter's limit, so no
  input costs more than a few milliseconds.
* A non-string completion or solution scores 0 instead of raising.

Soft variants (paper ablation; off by default): ``soft=True`` makes :func:`bbox_iou_reward` return the IoU
itself and :func:`bbox_l1_reward` return ``1 - L1 / extent``, both clamped to [0, 1], NaN counting 0. The other
three rewards have no soft form.

Coordinates other than Seg-Zero's: completion and solution are read in the reasoner's answer coordinates,
spanning ``extent`` (840 for the reference's 840-frame pixels, 1000 for Qwen3-VL's relative coordinates; see
:mod:`segzero_ros.core.families`). The pixel thresholds (10, 100) are the reference's in its 840 frame and are
scaled by ``extent / 840``, so a right answer earns the same reward in either convention; with ``extent`` 840
every rule above is the reference's, bit for bit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segzero_ros.core.geometry import REASONING_FRAME_SIZE, Box, Point
from segzero_ros.core.solution import MAX_NUMBER_DIGITS, find_solution_box, find_solution_points

MAX_ANSWER_OBJECT_CHARS = 100_000
"""Answer objects longer than this score 0 undecoded; a real answer is ~100 characters."""

IOU_THRESHOLD = 0.5
"""Box IoU must be strictly greater than this."""
BOX_L1_THRESHOLD = 10.0
"""Mean absolute corner difference must be strictly less than this (frame pixels)."""
POINT_DISTANCE_THRESHOLD = 100.0
"""Mean point distance under the better pairing must be strictly less than this (frame pixels)."""

ADVANTAGE_EPSILON = 1e-6
"""Added to the group std before dividing, as in veRL's GRPO (the reference trainer)."""

_THINK_OPEN = "<think>"
_ANSWER_CLOSE = "</answer>"
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")


@dataclass(frozen=True)
class RewardBreakdown:
    """The five reward components of one completion, for logging; ``total`` is their plain sum."""

    thinking_format: float
    segmentation_format: float
    bbox_iou: float
    bbox_l1: float
    point: float

    @property
    def total(self) -> float:
        # Same order as the reference's sum, so soft totals match to the last bit.
        return self.bbox_iou + self.thinking_format + self.segmentation_format + self.point + self.bbox_l1

    def to_dict(self) -> dict[str, float]:
        return {
            "thinking_format": self.thinking_format,
            "segmentation_format": self.segmentation_format,
            "bbox_iou": self.bbox_iou,
            "bbox_l1": self.bbox_l1,
            "point": self.point,
            "total": self.total,
        }


def thinking_format_reward(completion: str) -> float:
    """1.0 when the whole completion is ``<think>…</think>`` + whitespace + ``<answer>…</answer>``."""
    if not isinstance(completion, str):
        return 0.0
    if not (completion.startswith(_THINK_OPEN) and completion.endswith(_ANSWER_CLOSE)):
        return 0.0
    # The reference's lazy full match succeeds iff some "</think>\s*<answer>" follows the opening tag and
    # ends before the closing "</answer>". The second part always holds: "<answer>" cannot overlap the final
    # "</answer>" (no suffix of one is a prefix of the other). So one linear search decides it.
    joint = _THINK_TO_ANSWER.search(completion, len(_THINK_OPEN))
    return 0.0 if joint is None else 1.0


def segmentation_format_reward(completion: str) -> float:
    """1.0 when the answer object has ``bbox`` (list of 4), ``points_1`` and ``points_2`` (lists of 2)."""
    return _segmentation_format(_answer_object(completion))


def bbox_iou_reward(completion: str, solution: str, *, soft: bool = False) -> float:
    """1.0 when the predicted box's IoU with the GT box is > 0.5; with ``soft``, the IoU itself."""
    return _bbox_iou(_answer_object(completion), solution, soft)


def bbox_l1_reward(
    completion: str, solution: str, *, soft: bool = False, extent: int = REASONING_FRAME_SIZE
) -> float:
    """1.0 when the mean corner distance to the GT box is < 10 px (840 frame); with ``soft``, ``1 - L1/extent``."""
    return _bbox_l1(_answer_object(completion), solution, soft, extent)


def point_reward(completion: str, solution: str, *, extent: int = REASONING_FRAME_SIZE) -> float:
    """1.0 when both points lie in the predicted box and are < 100 px (mean, best pairing; 840 frame) from the
    GT's."""
    return _point(_answer_object(completion), solution, extent)


def score_completion(
    completion: str, solution: str, *, soft: bool = False, extent: int = REASONING_FRAME_SIZE
) -> RewardBreakdown:
    """All five rewards at once, decoding the answer object only once."""
    answer = _answer_object(completion)
    return RewardBreakdown(
        thinking_format=thinking_format_reward(completion),
        segmentation_format=_segmentation_format(answer),
        bbox_iou=_bbox_iou(answer, solution, soft),
        bbox_l1=_bbox_l1(answer, solution, soft, extent),
        point=_point(answer, solution, extent),
    )


def seg_zero_reward(
    completion: str, solution: str, *, soft: bool = False, extent: int = REASONING_FRAME_SIZE
) -> float:
    """The reference's total reward: the plain sum of the five components, 0..5."""
    return score_completion(completion, solution, soft=soft, extent=extent).total


def scaled_threshold(threshold: float, extent: int) -> float:
    """A threshold of the reference's 840-frame pixels in coordinates spanning `extent` (itself at 840)."""
    return threshold if extent == REASONING_FRAME_SIZE else threshold * extent / REASONING_FRAME_SIZE


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """GRPO advantages of one prompt's rollouts: ``(r - mean) / (std + 1e-6)``.

    ``std`` is the SAMPLE standard deviation (divisor n - 1), as ``torch.std`` computes it in veRL's
    ``compute_grpo_outcome_advantage`` (the reference trainer; TRL's GRPOTrainer also uses the sample std,
    though with epsilon 1e-4). A group of one gets mean 0 and std 1, as in veRL, so its advantage is
    ``r / (1 + 1e-6)``. A group with equal rewards gets all zeros: no learning signal, by design.
    Computed in float64 (veRL uses float32 tensors, so values may differ in the last float32 bits).
    """
    values = [float(reward) for reward in rewards]
    count = len(values)
    if count == 0:
        return []
    if count == 1:
        return [values[0] / (1.0 + ADVANTAGE_EPSILON)]
    mean = math.fsum(values) / count
    variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
    std = math.sqrt(variance)
    return [(value - mean) / (std + ADVANTAGE_EPSILON) for value in values]


# --- the answer object -------------------------------------------------------------------------------------


def first_brace_object(text: str) -> str | None:
    """The first match of the reference regex ``{[^}]+}`` in ``text``, found in linear time.

    A match starts at the first ``{`` whose next ``}`` is at least two characters on; it ends at that ``}``.
    """
    start = text.find("{")
    while start >= 0:
        end = text.find("}", start + 1)
        if end < 0:
            return None  # No "}" after this "{", hence none after any later "{" either.
        if end > start + 1:
            return text[start : end + 1]
        start = text.find("{", end + 1)  # "{}" is no match; the next "{" can only come after it.
    return None


def _parse_json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError("integer too long")
    return int(digits)


def _answer_object(completion: str) -> dict[str, Any] | None:
    """The decoded answer object, or None where the reference's ``json.loads`` would fail."""
    if not isinstance(completion, str):
        return None
    snippet = first_brace_object(completion)
    if snippet is None or len(snippet) > MAX_ANSWER_OBJECT_CHARS:
        return None
    try:
        decoded = json.loads(snippet, parse_int=_parse_json_int)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _reference_int(value: Any) -> int:
    """``int(value)`` as the reference casts points, but never slow on absurdly long strings."""
    if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_DIGITS:
        raise ValueError("integer too long")
    return int(value)


# --- the five components -----------------------------------------------------------------------------------


def _segmentation_format(answer: dict[str, Any] | None) -> float:
    if answer is None:
        return 0.0
    shapes = {"bbox": 4, "points_1": 2, "points_2": 2}
    for key, length in shapes.items():
        value = answer.get(key)
        if not isinstance(value, list) or len(value) != length:
            return 0.0
    return 1.0


def _predicted_box(answer: dict[str, Any] | None) -> Any:
    """``answer["bbox"]`` when it has length 4 (any sized type, as in the reference); raises otherwise."""
    if answer is None:
        raise ValueError("no answer object")
    box = answer["bbox"]
    if len(box) != 4:
        raise ValueError("bbox needs 4 values")
    return box


def _inclusive_iou(predicted: Any, truth: Box) -> float:
    left = max(predicted[0], truth.x1)
    top = max(predicted[1], truth.y1)
    right = min(predicted[2], truth.x2)
    bottom = min(predicted[3], truth.y2)
    intersection = (right - left + 1) * (bottom - top + 1) if left < right and top < bottom else 0
    predicted_area = (predicted[2] - predicted[0] + 1) * (predicted[3] - predicted[1] + 1)
    truth_area = (truth.x2 - truth.x1 + 1) * (truth.y2 - truth.y1 + 1)
    union = predicted_area + truth_area - intersection
    result: float = float(intersection) / union
    return result


def _bbox_iou(answer: dict[str, Any] | None, solution: str, soft: bool) -> float:
    truth = find_solution_box(solution)
    if truth is None:
        return 0.0
    try:
        iou = _inclusive_iou(_predicted_box(answer), truth)
        strict = iou > IOU_THRESHOLD
    except Exception:
        return 0.0
    if soft:
        return _unit_interval(iou)
    return 1.0 if strict else 0.0


def _mean_corner_distance(predicted: Any, truth: Box) -> float:
    total = (
        abs(predicted[0] - truth.x1)
        + abs(predicted[1] - truth.y1)
        + abs(predicted[2] - truth.x2)
        + abs(predicted[3] - truth.y2)
    )
    result: float = total / 4
    return result


def _bbox_l1(answer: dict[str, Any] | None, solution: str, soft: bool, extent: int) -> float:
    truth = find_solution_box(solution)
    if truth is None:
        return 0.0
    try:
        distance = _mean_corner_distance(_predicted_box(answer), truth)
        strict = distance < scaled_threshold(BOX_L1_THRESHOLD, extent)
        soft_value = 1.0 - distance / extent if soft else 0.0
    except Exception:
        return 0.0
    if soft:
        return _unit_interval(soft_value)
    return 1.0 if strict else 0.0


def _inside(point: Point, box: Any) -> bool:
    return bool(box[0] <= point.x <= box[2] and box[1] <= point.y <= box[3])


def _best_pairing_distance(predicted: tuple[Point, Point], truth: tuple[Point, Point]) -> float:
    def distance(a: Point, b: Point) -> float:
        return math.sqrt((a.x - b.x) ** 2 + (a.y - b.y) ** 2)

    first, second = predicted
    straight = distance(first, truth[0]) + distance(second, truth[1])
    crossed = distance(first, truth[1]) + distance(second, truth[0])
    return min(straight, crossed) / 2


def _point(answer: dict[str, Any] | None, solution: str, extent: int = REASONING_FRAME_SIZE) -> float:
    truth = find_solution_points(solution)
    if truth is None or answer is None:
        return 0.0
    try:
        box = _predicted_box(answer)
        raw_first, raw_second = answer["points_1"], answer["points_2"]
        first = Point(_reference_int(raw_first[0]), _reference_int(raw_first[1]))
        second = Point(_reference_int(raw_second[0]), _reference_int(raw_second[1]))
        if not (_inside(first, box) and _inside(second, box)):
            return 0.0
        close = _best_pairing_distance((first, second), truth) < scaled_threshold(POINT_DISTANCE_THRESHOLD, extent)
    except Exception:
        return 0.0
    return 1.0 if close else 0.0


def _unit_interval(value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if math.isnan(number):
        return 0.0
    return min(1.0, max(0.0, number))
