"""The user prompts, byte-exact: Seg-Zero's (one box + two points) and VisionReasoner's (a list of objects).

A released checkpoint only answers reliably to the exact text it was trained on, so the templates below
reproduce the references verbatim, including the missing spaces after the sentence-ending periods.
"""

from __future__ import annotations

EXAMPLE_ANSWER = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"

PROMPT_TEMPLATE = (
    "Please find '{Question}' with bbox and points."
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
    "i.e., <think> thinking process here </think><answer>{Answer}</answer>"
)


def normalize_command(command: str) -> str:
    """Lower-case and strip trailing periods, as the reference does before templating."""
    return command.lower().strip(".")


def build_prompt(command: str) -> str:
    """The text part of the single user turn sent with the image."""
    # str.replace, not str.format: the example answer and user text contain braces.
    return PROMPT_TEMPLATE.replace("{Question}", normalize_command(command)).replace(
        "{Answer}", EXAMPLE_ANSWER
    )


VISION_REASONER_EXAMPLE_ANSWER = (
    '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
)

VISION_REASONER_TEMPLATE = (
    'Please find "{Question}" with bboxs and points.'
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)


def normalize_vision_reasoner_command(command: str) -> str:
    """VisionReasoner lower-cases and strips periods, double quotes, question and exclamation marks."""
    return command.lower().strip('."?!')


def build_vision_reasoner_prompt(command: str) -> str:
    """The text part of VisionReasoner's user turn (multi-object answers, possibly an empty list)."""
    return VISION_REASONER_TEMPLATE.replace("{Question}", normalize_vision_reasoner_command(command)).replace(
        "{Answer}", VISION_REASONER_EXAMPLE_ANSWER
    )
