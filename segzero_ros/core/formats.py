"""Answer formats: which prompt a checkpoint was trained on and how its answer is read, behind one name.

* ``seg_zero`` (Seg-Zero-7B): exactly one object, a box and two points.
* ``vision_reasoner`` (VisionReasoner-7B, the Seg-Zero authors' successor): a list of objects, each a box and
  one point, possibly empty when the target is not in view.

Both parse into the same :class:`ObjectListAnswer`, so the pipeline segments "every object of the answer"
and never asks which format produced it; ``seg_zero`` is simply the list of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from segzero_ros.core.answer import ObjectListAnswer, parse_answer, parse_object_list
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.core.prompt import build_prompt, build_vision_reasoner_prompt

SEG_ZERO = "seg_zero"
VISION_REASONER = "vision_reasoner"


@dataclass(frozen=True)
class AnswerFormat:
    name: str
    build_prompt: Callable[[str], str]
    """Command → the text of the user turn, byte-exact to the checkpoint's training prompt."""
    parse: Callable[[str, tuple[int, int]], ObjectListAnswer]
    """Generated text + (width, height) → objects in original-image pixels; raises AnswerParseError."""
    can_answer_nothing: bool
    """Whether the model can say "not in view" (an empty list) rather than always pointing somewhere."""
    description: str


def parse_seg_zero(text: str, image_size: tuple[int, int]) -> ObjectListAnswer:
    """A Seg-Zero answer as the list of its one object (box + two points)."""
    answer = parse_answer(text, image_size)
    return ObjectListAnswer(reasoning=answer.reasoning,
                            objects=(ObjectPrompt(answer.box, answer.points),))


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    SEG_ZERO: AnswerFormat(SEG_ZERO, build_prompt, parse_seg_zero, False,
                           "one box + two points (Seg-Zero-7B)"),
    VISION_REASONER: AnswerFormat(VISION_REASONER, build_vision_reasoner_prompt, parse_object_list, True,
                                  "a list of boxes + one point each, [] when not in view (VisionReasoner-7B)"),
}

ANSWER_FORMAT_NAMES = tuple(ANSWER_FORMATS)


def answer_format(name: str) -> AnswerFormat:
    """The format registered under `name`; a ValueError listing the known names otherwise."""
    try:
        return ANSWER_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown answer format {name!r}; known: {', '.join(ANSWER_FORMAT_NAMES)}") from None
