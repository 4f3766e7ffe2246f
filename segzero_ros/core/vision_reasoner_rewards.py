"""VisionReasoner's GRPO rewards (multi-object answers), reproducing the reference exactly, quirks included.

The reference is ``verl/utils/reward_score/vision_reasoner.py`` in the Seg-Zero repository (main branch).
Its total is format (0..3) + accuracy (0..3) + non-repeat (0..1), 0..7:

* **Thinking format** (0/1): the whole completion is ``<think>…</think>`` + whitespace + ``<answer>…</answer>``,
  the same rule as Seg-Zero's (:func:`segzero_ros.core.rewards.thinking_format_reward`).
* **Object format** (0..2): the answer is the text between the first ``<answer>`` and the next ``</answer>``,
  whitespace-stripped and JSON-decoded. Each of its N items earns ``1/N`` for a ``bbox_2d`` that is a list of 4
  and ``1/N`` for a ``point_2d`` that is a list of 2. Items are probed the way the reference probes them,
  ``"bbox_2d" in item``, so a string item containing that text, or a non-container item, ends the scan keeping
  what was summed before it. The reference's "format" reward is thinking + object format (0..3).
* **Accuracy** (0..3): prediction and GT lists (``json.loads`` of the solution) are cut to 120 objects; every
  (predicted, GT) pair scores 1 for box IoU > 0.5 (inclusive-pixel areas, intersection clipped at 0 per side),
  1 for a mean absolute corner difference < 10, and 1 for a point closer than 30 px to the GT point that also
  lies inside its OWN predicted box (inclusive). A Hungarian assignment maximises the matched sum, divided by
  the longer of the two lists. An empty prediction or an empty GT scores 0 (the reference's arrays cannot be
  split then): the reference never rewards a correct "nothing there".
* **Non-repeat** (0/1): the completion split on ``.``, stripped, empty pieces dropped; 0 once two pieces
  repeat an earlier one, else 1.
* Any exception while scoring gives 0 for that component.

Where ours differs from the reference, it is only on pathological input:

* Boxes other than N×4 and points other than N×2 arrays score 0 accuracy; the reference sometimes computes a
  number for them through numpy broadcasting accidents (e.g. one predicted box of 8 numbers).
* Linear-time search for the answer (the reference regex is quadratic on inputs like ``"<answer>" * 10**5``);
  answers longer than :data:`MAX_ANSWER_CHARS` and integers longer than 4300 digits score 0 undecoded.
* A non-string completion or solution scores 0 instead of raising.

Pure Python + numpy; the assignment uses scipy's ``linear_sum_assignment`` (imported when first needed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from segzero_ros.core.geometry import REASONING_FRAME_SIZE
from segzero_ros.core.rewards import _parse_json_int, scaled_threshold, thinking_format_reward

MAX_MATCHED_OBJECTS = 120
"""Both lists are cut to this many objects before matching, as in the reference."""
MAX_ANSWER_CHARS = 1_000_000
"""Answers longer than this score 0 undecoded; a real list of 120 objects is under 10 000 characters."""
IOU_THRESHOLD = 0.5
BOX_L1_THRESHOLD = 10.0
POINT_DISTANCE_THRESHOLD = 30.0
"""Strictly below, in 840-frame pixels: tighter than Seg-Zero's 100, since each object has one point."""

_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"


@dataclass(frozen=True)
class ObjectRewards:
    """The components of one completion's VisionReasoner reward; ``total`` is the reference's sum (0..7)."""

    thinking_format: float
    object_format: float
    accuracy: float
    non_repeat: float

    @property
    def format(self) -> float:
        """The reference's "format" reward: thinking + object format (0..3)."""
        return self.thinking_format + self.object_format

    @property
    def total(self) -> float:
        return self.format + self.accuracy + self.non_repeat

    def to_dict(self) -> dict[str, float]:
        return {"thinking_format": self.thinking_format, "object_format": self.object_format,
                "accuracy": self.accuracy, "non_repeat": self.non_repeat, "total": self.total}


def answer_text(completion: str) -> str | None:
    """What the reference's ``<answer>\\s*(.*?)\\s*</answer>`` (DOTALL) captures, found in linear time: the
    text between the first ``<answer>`` and the first ``</answer>`` after it, whitespace-stripped."""
    if not isinstance(completion, str):
        return None
    start = completion.find(_ANSWER_OPEN)
    if start < 0:
        return None
    end = completion.find(_ANSWER_CLOSE, start + len(_ANSWER_OPEN))
    if end < 0:
        return None
    return completion[start + len(_ANSWER_OPEN):end].strip()


def _decode(text: str | None) -> Any:
    """``json.loads`` as the reference calls it; raises on anything it would not decode (or too long)."""
    if text is None:
        raise ValueError("no answer")
    if len(text) > MAX_ANSWER_CHARS:
        raise ValueError("answer too long")
    return json.loads(text, parse_int=_parse_json_int)


def object_format_reward(completion: str) -> float:
    """Per item, 1/N for a 4-list ``bbox_2d`` and 1/N for a 2-list ``point_2d`` (0..2)."""
    total = 0.0
    try:
        items = _decode(answer_text(completion))
        count = len(items)
        for item in items:
            earned = 0.0
            for key, length in (("bbox_2d", 4), ("point_2d", 2)):
                if key in item:
                    value = item[key]
                    if isinstance(value, list) and len(value) == length:
                        earned += 1.0
            total += earned / count
    except Exception:
        pass  # the reference keeps what it summed before the failing item
    return total


def non_repeat_reward(completion: str) -> float:
    """0 when two of the completion's ``.``-separated sentences repeat an earlier one, else 1."""
    if not isinstance(completion, str):
        return 1.0  # the reference's try/except leaves its initial 1 in place
    seen: set[str] = set()
    repeats = 0
    for piece in completion.split("."):
        sentence = piece.strip()
        if not sentence:
            continue
        if sentence in seen:
            repeats += 1
            if repeats >= 2:
                return 0.0
        seen.add(sentence)
    return 1.0


def accuracy_reward(completion: str, solution: str, extent: int = REASONING_FRAME_SIZE) -> float:
    """Hungarian-matched box IoU + box L1 + point hits over the longer list (0..3); pixel thresholds in the
    reference's 840 frame, scaled to coordinates spanning `extent` (1000: Qwen3-VL's relative ones)."""
    try:
        truth = json.loads(solution, parse_int=_parse_json_int)
        truth_boxes = [item["bbox_2d"] for item in truth]
        truth_points = [item["point_2d"] for item in truth]
        text = answer_text(completion)
        if text is None:
            return 0.0
        predicted = _decode(text)
        boxes = [item["bbox_2d"] for item in predicted][:MAX_MATCHED_OBJECTS]
        points = [item["point_2d"] for item in predicted][:MAX_MATCHED_OBJECTS]
        return _matched_score(np.array(boxes), np.array(points), np.array(truth_boxes[:MAX_MATCHED_OBJECTS]),
                              np.array(truth_points[:MAX_MATCHED_OBJECTS]), extent)
    except Exception:
        return 0.0


def score_objects(completion: str, solution: str, extent: int = REASONING_FRAME_SIZE) -> ObjectRewards:
    return ObjectRewards(
        thinking_format=thinking_format_reward(completion),
        object_format=object_format_reward(completion),
        accuracy=accuracy_reward(completion, solution, extent),
        non_repeat=non_repeat_reward(completion),
    )


def vision_reasoner_reward(completion: str, solution: str, extent: int = REASONING_FRAME_SIZE) -> float:
    """The reference's total: format + accuracy + non-repeat, 0..7."""
    return score_objects(completion, solution, extent).total


# --- the matching --------------------------------------------------------------------------------------------


def _matched_score(boxes: np.ndarray, points: np.ndarray, truth_boxes: np.ndarray, truth_points: np.ndarray,
                   extent: int = REASONING_FRAME_SIZE) -> float:
    for array, width in ((boxes, 4), (points, 2), (truth_boxes, 4), (truth_points, 2)):
        if array.ndim != 2 or array.shape[1] != width or array.shape[0] == 0:
            return 0.0
    if boxes.shape[0] != points.shape[0] or truth_boxes.shape[0] != truth_points.shape[0]:
        return 0.0
    with np.errstate(all="ignore"):  # 0/0 IoU of degenerate boxes is NaN, which counts as no hit
        hits = (_pairwise_iou(boxes, truth_boxes) > IOU_THRESHOLD).astype(float)
        hits += (_pairwise_l1(boxes, truth_boxes) < scaled_threshold(BOX_L1_THRESHOLD, extent)).astype(float)
        inside = _inside_own_box(points, boxes)
        near = _pairwise_distance(points, truth_points) < scaled_threshold(POINT_DISTANCE_THRESHOLD, extent)
        hits += (near & inside[:, None]).astype(float)
    cost = 3.0 - hits
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    matched = len(rows) * 3.0 - float(cost[rows, cols].sum())
    return float(matched / max(boxes.shape[0], truth_boxes.shape[0]))


def _pairwise_iou(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """M×N IoU with inclusive-pixel areas; each side of the intersection clipped at 0."""
    p = predicted[:, None, :]
    t = truth[None, :, :]
    width = np.maximum(0, np.minimum(p[..., 2], t[..., 2]) - np.maximum(p[..., 0], t[..., 0]) + 1)
    height = np.maximum(0, np.minimum(p[..., 3], t[..., 3]) - np.maximum(p[..., 1], t[..., 1]) + 1)
    intersection = width * height
    predicted_area = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
    truth_area = (t[..., 2] - t[..., 0] + 1) * (t[..., 3] - t[..., 1] + 1)
    result: np.ndarray = intersection / (predicted_area + truth_area - intersection)
    return result


def _pairwise_l1(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.mean(np.abs(predicted[:, None, :] - truth[None, :, :]), axis=2)
    return result


def _pairwise_distance(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sqrt(np.sum((predicted[:, None, :] - truth[None, :, :]) ** 2, axis=2))
    return result


def _inside_own_box(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    result: np.ndarray = ((points[:, 0] >= boxes[:, 0]) & (points[:, 0] <= boxes[:, 2])
                          & (points[:, 1] >= boxes[:, 1]) & (points[:, 1] <= boxes[:, 3]))
    return result
