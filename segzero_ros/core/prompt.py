"""The Seg-Zero user prompt, byte-exact.

A released checkpoint only answers reliably to the exact text it was trained on, so the template below
reproduces the reference verbatim, including the missing spaces after the sentence-ending periods.
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
