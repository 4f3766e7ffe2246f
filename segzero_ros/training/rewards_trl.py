"""TRL-shaped adapters around the Seg-Zero rewards of :mod:`segzero_ros.core.rewards` and the VisionReasoner
ones of :mod:`segzero_ros.core.vision_reasoner_rewards`.

TRL's GRPOTrainer calls each reward function with ``completions`` (for conversational data a list of
``[{"role": "assistant", "content": text}]``) and every other dataset column as a keyword list (here
``solution``), and logs each function under its ``__name__`` (``rewards/bbox_iou/mean``, …). So there is one
function per reward component, named after it; their plain sum is the reference's total reward, which is
what GRPOTrainer sums when every weight is 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segzero_ros.core.formats import SEG_ZERO, VISION_REASONER, answer_format
from segzero_ros.core.geometry import REASONING_FRAME_SIZE
from segzero_ros.core.rewards import (
    bbox_iou_reward,
    bbox_l1_reward,
    point_reward,
    segmentation_format_reward,
    thinking_format_reward,
)
from segzero_ros.core.vision_reasoner_rewards import accuracy_reward, non_repeat_reward, object_format_reward

RewardFunction = Callable[..., list[float]]

STRICT_REWARD_NAMES = ("thinking_format", "segmentation_format", "bbox_iou", "bbox_l1", "point")
"""Names TRL logs the components under (``rewards/<name>/mean``), in the reference's order."""


def completion_text(completion: Any) -> str:
    """The generated text of one completion, whether TRL passes a string or chat messages.

    Chat completions are a list of messages; the assistant turns' contents are joined (there is one turn
    unless tools are involved). Content given as typed parts keeps only the text parts.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        return "".join(
            _content_text(message.get("content"))
            for message in completion
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant"
        )
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return ""


def _solutions(solution: Sequence[str] | None, count: int) -> Sequence[str]:
    if solution is None:
        raise ValueError("the dataset has no 'solution' column; Seg-Zero's accuracy rewards need one")
    if len(solution) != count:
        raise ValueError(f"{count} completions but {len(solution)} solutions")
    return solution


def thinking_format(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 when the whole completion is ``<think>…</think><answer>…</answer>``."""
    return [thinking_format_reward(completion_text(c)) for c in completions]


def segmentation_format(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 when the answer object has ``bbox`` (4 values), ``points_1`` and ``points_2`` (2 values each)."""
    return [segmentation_format_reward(completion_text(c)) for c in completions]


def bbox_iou(completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """1 when the predicted box's inclusive-pixel IoU with the GT box is > 0.5."""
    truths = _solutions(solution, len(completions))
    return [bbox_iou_reward(completion_text(c), s) for c, s in zip(completions, truths, strict=True)]


def bbox_l1(completions: Sequence[Any], solution: Sequence[str] | None = None, extent: int = REASONING_FRAME_SIZE,
            **kwargs: Any) -> list[float]:
    """1 when the mean corner distance to the GT box is < 10 px (840 frame)."""
    truths = _solutions(solution, len(completions))
    return [bbox_l1_reward(completion_text(c), s, extent=extent) for c, s in zip(completions, truths, strict=True)]


def point(completions: Sequence[Any], solution: Sequence[str] | None = None, extent: int = REASONING_FRAME_SIZE,
          **kwargs: Any) -> list[float]:
    """1 when both points lie in the predicted box and are < 100 px (mean, best pairing) from the GT points."""
    truths = _solutions(solution, len(completions))
    return [point_reward(completion_text(c), s, extent=extent) for c, s in zip(completions, truths, strict=True)]


def bbox_iou_soft(completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """The IoU itself (paper ablation), in [0, 1]."""
    truths = _solutions(solution, len(completions))
    return [bbox_iou_reward(completion_text(c), s, soft=True) for c, s in zip(completions, truths, strict=True)]


def bbox_l1_soft(completions: Sequence[Any], solution: Sequence[str] | None = None,
                 extent: int = REASONING_FRAME_SIZE, **kwargs: Any) -> list[float]:
    """``1 - L1 / 840`` (paper ablation; 840: the coordinates' extent), in [0, 1]."""
    truths = _solutions(solution, len(completions))
    return [bbox_l1_reward(completion_text(c), s, soft=True, extent=extent)
            for c, s in zip(completions, truths, strict=True)]


def object_format(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """VisionReasoner: per answer item, 1/N for a 4-number ``bbox_2d`` and 1/N for a 2-number ``point_2d``."""
    return [object_format_reward(completion_text(c)) for c in completions]


def object_accuracy(completions: Sequence[Any], solution: Sequence[str] | None = None,
                    extent: int = REASONING_FRAME_SIZE, **kwargs: Any) -> list[float]:
    """VisionReasoner: Hungarian-matched box IoU + box L1 + point hits over the longer list (0..3)."""
    truths = _solutions(solution, len(completions))
    return [accuracy_reward(completion_text(c), s, extent) for c, s in zip(completions, truths, strict=True)]


def non_repeat(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """VisionReasoner: 0 when two sentences of the completion repeat earlier ones."""
    return [non_repeat_reward(completion_text(c)) for c in completions]


REWARD_SETS: dict[str, tuple[RewardFunction, ...]] = {
    SEG_ZERO: (thinking_format, segmentation_format, bbox_iou, bbox_l1, point),
    VISION_REASONER: (thinking_format, object_format, object_accuracy, non_repeat),
}
"""The reward functions of each answer format, in the reference's order; their plain sum is its total."""


def reward_functions(soft: bool = False, format: str = SEG_ZERO, extent: int = REASONING_FRAME_SIZE
                     ) -> list[RewardFunction]:
    """The rewards of the answer `format` for GRPOTrainer; ``soft`` (Seg-Zero only) swaps in the soft box rewards;
    ``extent``: the model's answer coordinates (840: Seg-Zero's frame pixels, 1000: Qwen3-VL's relative ones),
    in which the dataset's solutions must be too."""
    answer_format(format)  # a clear error for an unknown name
    if soft and format != SEG_ZERO:
        raise ValueError(f"soft rewards exist for the seg_zero format only, not {format}")
    functions = ([thinking_format, segmentation_format, bbox_iou_soft, bbox_l1_soft, point] if soft
                 else list(REWARD_SETS[format]))
    return [_in_extent(function, extent) for function in functions]


def _in_extent(function: RewardFunction, extent: int) -> RewardFunction:
    """`function` scoring in coordinates spanning `extent`, under the same name (TRL logs rewards by name)."""
    if extent == REASONING_FRAME_SIZE:
        return function

    def scored(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return function(completions, **{**kwargs, "extent": extent})

    scored.__name__, scored.__doc__ = function.__name__, function.__doc__
    return scored


def reward_names(soft: bool = False, format: str = SEG_ZERO) -> list[str]:
    """The names GRPOTrainer will log the rewards under."""
    return [function.__name__ for function in reward_functions(soft, format)]


def load_extra_rewards(entries: Mapping[str, float], probe: Mapping[str, Any] | None = None) -> list[RewardFunction]:
    """The functions ``extra_rewards`` names, each checked now rather than at the first training step: it imports,
    is callable, and, given `probe` (one training row's columns: solution, …), answers two completions with two
    numbers. Every call during training is checked the same way. ValueError naming the function otherwise."""
    from segzero_ros.registry import load

    functions = []
    for entry in entries:
        try:
            function = load(entry)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"extra_rewards: cannot load {entry!r}: {exc}") from None
        if not callable(function):
            raise ValueError(f"extra_rewards: {entry!r} is not callable")
        checked = _checked_reward(function, entry)
        if probe is not None:
            completions = [[{"role": "assistant", "content": text}] for text in _PROBE_COMPLETIONS]
            columns = {name: [value] * len(completions) for name, value in probe.items()}
            try:
                checked(completions=completions, prompts=[None] * len(completions), **columns)
            except Exception as exc:
                if str(exc).startswith("extra_rewards:"):
                    raise
                raise ValueError(f"extra_rewards: {entry} failed on a probe batch: {type(exc).__name__}: {exc}"
                                 ) from None
        functions.append(checked)
    return functions


def extra_reward_name(entry: str) -> str:
    """What TRL logs an extra reward under: its function's name (``pkg.rewards:mask_area`` → mask_area)."""
    return entry.rpartition(":")[2].rpartition(".")[2]


_PROBE_COMPLETIONS = ("<think>probe</think><answer>{}</answer>", "")


def _checked_reward(function: Callable[..., Any], entry: str) -> RewardFunction:
    """`function` under its own name, its answer checked: one float (or None) per completion."""

    def checked(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        values = function(completions=completions, **kwargs)
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)) or len(values) != len(completions):
            size = len(values) if isinstance(values, Sequence) else type(values).__name__
            raise ValueError(f"extra_rewards: {entry} returned {size} for {len(completions)} completions; it must "
                             "return one number (or None) per completion")
        wrong = [value for value in values
                 if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)))]
        if wrong:
            raise ValueError(f"extra_rewards: {entry} returned {wrong[0]!r}; rewards are numbers (or None)")
        return list(values)

    checked.__name__ = extra_reward_name(entry)
    checked.__doc__ = function.__doc__
    return checked
