"""Answer formats: which prompt a checkpoint was trained on and how its answer is read, behind one name.

* ``seg_zero`` (Seg-Zero-7B): exactly one object, a box and two points — or, for checkpoints trained with
  negatives (GenSeg-R1 style), nothing: an ``<answer>`` holding only ``{}``, ``[]`` or ``null``.
* ``vision_reasoner`` (VisionReasoner-7B, the Seg-Zero authors' successor): a list of objects, each a box and
  one point, possibly empty when the target is not in view.

Both parse into the same :class:`ObjectListAnswer`, so the pipeline segments "every object of the answer"
and never asks which format produced it; ``seg_zero`` is simply the list of one (or none). Answers are in the
reasoner's coordinates, spanning ``extent`` (the frame's pixels, or 1000 for relative coordinates: see
:mod:`segzero_ros.core.families`); parsing maps them to original-image pixels with the same rules either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from segzero_ros.core.answer import ObjectListAnswer, extract_reasoning, extract_tag, parse_answer, parse_object_list
from segzero_ros.core.geometry import REASONING_FRAME_SIZE, ObjectPrompt
from segzero_ros.core.prompt import build_prompt, build_vision_reasoner_prompt

SEG_ZERO = "seg_zero"
VISION_REASONER = "vision_reasoner"


@dataclass(frozen=True)
class AnswerFormat:
    name: str
    build_prompt: Callable[[str], str]
    """Command → the text of the user turn, byte-exact to the checkpoint's training prompt."""
    parse: Callable[[str, tuple[int, int], int], ObjectListAnswer]
    """Generated text + (width, height) + the answers' coordinate extent → objects in original-image pixels;
    raises AnswerParseError."""
    can_answer_nothing: bool
    """Whether the model can say "not in view" (an empty list) rather than always pointing somewhere."""
    description: str


NO_TARGET = ("{}", "[]", "null")
"""A seg_zero ``<answer>`` holding only one of these (JSON, whitespace and code fences aside) says that nothing
in view matches: the error ``not_found``, as VisionReasoner's ``[]``."""
_FENCE = re.compile(r"```(?:json)?")


def says_no_target(text: str) -> bool:
    """The completion's ``<answer>`` is an empty object, an empty list or null."""
    region = extract_tag(text, "answer") if isinstance(text, str) else None
    if region is None:
        return False
    stripped = _FENCE.sub("", region).strip()
    try:
        return stripped in NO_TARGET or json.loads(stripped) in ({}, [], None)
    except ValueError:
        return False


def parse_seg_zero(text: str, image_size: tuple[int, int], extent: int = REASONING_FRAME_SIZE) -> ObjectListAnswer:
    """A Seg-Zero answer as the list of its one object (box + two points), or of none (:data:`NO_TARGET`)."""
    if says_no_target(text):
        return ObjectListAnswer(reasoning=extract_reasoning(text), objects=())
    answer = parse_answer(text, image_size, extent)
    return ObjectListAnswer(reasoning=answer.reasoning,
                            objects=(ObjectPrompt(answer.box, answer.points),))


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    SEG_ZERO: AnswerFormat(SEG_ZERO, build_prompt, parse_seg_zero, True,
                           "one box + two points (Seg-Zero-7B); {} when nothing matches"),
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
