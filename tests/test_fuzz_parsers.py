"""Fuzz campaign over what reads model output: parse_answer (inference) and the GRPO rewards (training).

Both read untrusted text from a language model, so for ANY string they must: raise nothing but
AnswerParseError (parse_answer) or nothing at all (rewards); return coordinates inside the image and rewards
inside their ranges; and finish quickly (the reference's regexes took minutes on some inputs).

The inputs are generated model outputs, from plausible to hostile: think/answer tags present, missing,
repeated or cut off; answer objects with the right, wrong, extra and nested keys; numbers that are huge,
negative, fractional, NaN/Infinity, strings, booleans or thousands of digits long; single quotes and code
fences; several answers; arbitrary unicode (lone surrogates included); random truncation and corruption; and
1 MB outputs. At least CAMPAIGN_SIZE outputs are checked per run (profile "fuzz-ci", the default); set
SEGZERO_FUZZ_PROFILE=fuzz-long for a campaign 20× larger.

The time per input is measured and bounded generously: that bound is a hang detector, not a benchmark.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_ros.core.answer import MAX_ABS_COORDINATE, AnswerParseError, parse_answer
from segzero_ros.core.rewards import (
    bbox_iou_reward,
    bbox_l1_reward,
    point_reward,
    score_completion,
    seg_zero_reward,
    segmentation_format_reward,
    thinking_format_reward,
)

settings.register_profile(
    "fuzz-ci", max_examples=1_000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("fuzz-long", parent=settings.get_profile("fuzz-ci"), max_examples=20_000)
PROFILE = settings.get_profile(os.environ.get("SEGZERO_FUZZ_PROFILE", "fuzz-ci"))
SCALE = PROFILE.max_examples / 1_000
"""The campaign's size relative to fuzz-ci."""

PARSE_EXAMPLES = int(700 * SCALE)
REWARD_EXAMPLES = int(600 * SCALE)
MEGABYTE_EXAMPLES = int(40 * SCALE)
OUTPUTS_PER_EXAMPLE = 8
"""A generated output and 7 truncations of it (see output_families)."""
CAMPAIGN_SIZE = 10_000
"""Model outputs checked per fuzz-ci run, over the tests below."""

T = TypeVar("T")
MAX_SECONDS_PER_INPUT = 5.0
"""Hang detector only (CPU seconds for one input's whole check, up to ten parser and reward calls): a normal
input takes about a millisecond, a 1 MB one up to ~1.5 s (measured: "{}" repeated, ~0.2 s per reward call);
a quadratic scan of 1 MB would take hours."""


@dataclass
class Campaign:
    """How many inputs a test checked and the slowest one."""

    inputs: int = 0
    slowest_s: float = 0.0
    slowest_length: int = 0

    def timed(self, text: str, check: Callable[[], T]) -> T:
        """check()'s result, timed as the check of one input: in this thread's CPU time, so a busy machine
        (other processes on the two cores) cannot pass for a parser that hangs, nor hide one."""
        started = time.thread_time()
        result = check()
        elapsed = time.thread_time() - started
        self.inputs += 1
        if elapsed > self.slowest_s:
            self.slowest_s, self.slowest_length = elapsed, len(text)
        return result

    def assert_complete(self, expected_inputs: int) -> None:
        assert self.inputs >= expected_inputs, f"only {self.inputs} of {expected_inputs} inputs ran"
        assert self.slowest_s < MAX_SECONDS_PER_INPUT, (
            f"an input of {self.slowest_length} characters took {self.slowest_s:.2f} s")


# --- strategies: pieces of model output ------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # every code point, lone surrogates included
UNICODE = st.text(ANY_CHARACTER, max_size=40)
TRICKY_SNIPPETS = st.sampled_from([
    "{", "}", "{{", "}}", "[", "]", ",", ":", '"', "'", "<think>", "</think>", "<answer>", "</answer>",
    "```", "```json\n", "\n```", "\\", '\\"', "\\u00", "\ud800", "\udfff", "\x00", "\u202e", "\ufeff", "🦾",
    "<answer><answer>", "</answer></answer>", "{}", "[]", "NaN", "-Infinity",
])
NUMBER_TEXT = st.one_of(
    st.integers(-2_000, 2_000).map(str),
    st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([
        "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "5e-324", "-0", "0.0", "839.999", "1E3",
        "1" * 4_300, "9" * 4_301, "-" + "9" * 5_000, "1000001", "-1000001", "0x10", "1_000", "+5", "01",
        '"42"', '" 7 "', '"-3"', '"4.5"', '"x"', '""', "true", "false", "null", "[]", "{}", "[1, 2]", "[[1, 2]]",
    ]),
)
KEYS = st.one_of(
    st.sampled_from(["bbox", "points_1", "points_2", "bbox_2d", "point_2d", "points", "point", "BBOX",
                     "Points_A", "pointsX", "my_bbox_here", "label", "", "bbox ", "\u0432box"]),
    st.text(ANY_CHARACTER, max_size=8),
)


def json_list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


VALUES = st.recursive(
    NUMBER_TEXT,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6).map(json_list),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}"),
    ),
    max_leaves=10,
)


PLAIN_COORDINATE = st.integers(-20, 900).map(str)


@st.composite
def coordinate_list(draw: st.DrawFn, length: int) -> str:
    """Usually the expected length and plain numbers, so that many outputs get far into the parsers."""
    if draw(st.sampled_from([True] * 4 + [False])):  # plausible
        items = [draw(PLAIN_COORDINATE) for _ in range(length)]
        if draw(st.sampled_from([False] * 5 + [True])):
            items[draw(st.integers(0, length - 1))] = draw(NUMBER_TEXT)
        return json_list(items)
    count = draw(st.sampled_from([length, length - 1, length + 1, 0]))
    return json_list(draw(st.lists(NUMBER_TEXT, min_size=count, max_size=count)))


@st.composite
def answer_objects(draw: st.DrawFn) -> str:
    """One answer object in any of the shapes a model has been seen (or could be imagined) to write."""
    shape = draw(st.sampled_from(["reference"] * 4 + ["pair_of_pairs", "multi_object", "random"]))
    if shape == "reference":
        pairs = [(draw(st.sampled_from(["bbox"] * 4 + ["bbox_2d", "BBox"])), draw(coordinate_list(4))),
                 (draw(st.sampled_from(["points_1"] * 4 + ["point_1", "points_a"])), draw(coordinate_list(2))),
                 (draw(st.sampled_from(["points_2"] * 4 + ["point_2", "points_b"])), draw(coordinate_list(2)))]
    elif shape == "pair_of_pairs":
        pairs = [("bbox", draw(coordinate_list(4))),
                 ("points", json_list([draw(coordinate_list(2)), draw(coordinate_list(2))]))]
    elif shape == "multi_object":  # the later VisionReasoner format, a list of objects
        objects = draw(st.lists(st.tuples(coordinate_list(4), coordinate_list(2)), min_size=1, max_size=3))
        return json_list([f'{{"bbox_2d": {box}, "point_2d": {point}}}' for box, point in objects])
    else:
        pairs = draw(st.lists(st.tuples(KEYS, VALUES), max_size=5))
    extra = draw(st.lists(st.tuples(KEYS, st.one_of(NUMBER_TEXT, VALUES)), max_size=1)) if draw(st.booleans()) else []
    order = draw(st.permutations(pairs + extra))
    quote = draw(st.sampled_from(['"', '"', "'"]))
    separator = draw(st.sampled_from([", ", ",", ",\n  ", " , "]))
    body = separator.join(f"{quote}{key}{quote}: {value}" for key, value in order)
    return "{" + body + "}" if draw(st.integers(0, 19)) else "{" + body  # sometimes never closed


@st.composite
def well_formed_outputs(draw: st.DrawFn) -> str:
    """What a trained model writes: so that a good share of the campaign gets through every stage."""
    think = draw(st.text(st.characters(exclude_characters="{}<>"), max_size=60))
    box = [draw(PLAIN_COORDINATE) for _ in range(4)]
    first, second = ([draw(PLAIN_COORDINATE) for _ in range(2)] for _ in range(2))
    spacing = draw(st.sampled_from(["", " ", "\n"]))
    answer = (f'{{"bbox": {json_list(box)},{spacing}"points_1": {json_list(first)},{spacing}'
              f'"points_2": {json_list(second)}}}')
    return f"<think>{think}</think>{spacing}<answer>{answer}</answer>"


@st.composite
def model_outputs(draw: st.DrawFn) -> str:
    """A whole completion: well formed, or reasoning and answers in any wrapping; then maybe corrupted."""
    if draw(st.sampled_from([True, False, False])):
        return draw(corrupted(draw(well_formed_outputs())))
    think = draw(st.one_of(UNICODE, st.lists(st.one_of(UNICODE, TRICKY_SNIPPETS), max_size=6).map("".join)))
    answers = draw(st.lists(answer_objects(), max_size=3))
    wrapping = draw(st.sampled_from(["tagged", "tagged", "fenced", "bare", "unterminated", "each_tagged",
                                     "nested", "in_think"]))
    joined = draw(st.sampled_from(["", " ", "\n", " and "])).join(answers)
    if wrapping == "tagged":
        text = f"<think>{think}</think><answer>{joined}</answer>"
    elif wrapping == "fenced":
        text = f"<think>{think}</think>\n<answer>```json\n{joined}\n```</answer>"
    elif wrapping == "bare":
        text = f"{think} {joined}"
    elif wrapping == "unterminated":  # generation stopped by the token limit
        text = f"<think>{think}</think><answer>{joined}"
    elif wrapping == "each_tagged":
        text = f"<think>{think}</think>" + "".join(f"<answer>{answer}</answer>" for answer in answers)
    elif wrapping == "nested":
        text = f'<think>{think}</think><answer>{{"answer": {joined or "{}"}, "note": {{"x": 1}}}}</answer>'
    else:
        text = f"<think>{think} {joined}</think><answer>{draw(answer_objects())}</answer>"
    return draw(corrupted(text))


@st.composite
def corrupted(draw: st.DrawFn, text: str) -> str:
    """Truncate, splice in noise, or drop characters, as a sampling accident or a broken stream would."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        action = draw(st.sampled_from(["truncate", "insert", "delete", "keep", "keep"]))
        position = draw(st.integers(0, len(text)))
        if action == "truncate":
            text = text[:position]
        elif action == "insert":
            text = text[:position] + draw(st.one_of(TRICKY_SNIPPETS, UNICODE)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 5)):]
    return text


TRUNCATIONS = 7
"""Each generated output is also checked cut off at this many drawn points (truncated JSON, broken tags)."""


@st.composite
def output_families(draw: st.DrawFn) -> list[str]:
    """A generated output followed by TRUNCATIONS of its prefixes, as a stopped generation leaves them."""
    text = draw(model_outputs())
    cuts = draw(st.lists(st.integers(0, len(text)), min_size=TRUNCATIONS, max_size=TRUNCATIONS))
    return [text] + [text[:cut] for cut in cuts]


@st.composite
def megabyte_outputs(draw: st.DrawFn) -> str:
    """About 1 MB: a pathological repetition, or a plausible answer drowned in padding."""
    size = 1_000_000
    kind = draw(st.sampled_from(["repeat", "padded_think", "padded_answer", "many_objects", "long_number"]))
    if kind == "repeat":
        unit = draw(st.one_of(TRICKY_SNIPPETS, st.text(ANY_CHARACTER, min_size=1, max_size=12), answer_objects()))
        return unit * (size // len(unit) + 1)
    answer = draw(model_outputs())
    padding_unit = draw(st.one_of(TRICKY_SNIPPETS, st.text(ANY_CHARACTER, min_size=1, max_size=8)))
    padding = padding_unit * (size // len(padding_unit) + 1)
    if kind == "padded_think":
        return f"<think>{padding}</think>{answer}"
    if kind == "padded_answer":
        return f"{answer}<answer>{padding}</answer>"
    if kind == "many_objects":
        unit = draw(answer_objects()) + " "
        return unit * (size // len(unit) + 1)
    return '<answer>{"bbox": [' + "7" * size + ', 1, 2, 3], "points_1": [1, 2], "points_2": [3, 4]}</answer>'


IMAGE_SIDE = st.one_of(st.integers(1, 16), st.integers(1, 10_000), st.sampled_from([840, 640, 480, 1, 8192]))
SOLUTIONS = st.one_of(
    st.builds(
        lambda x1, y1, x2, y2, px1, py1, px2, py2:
            f"<box>({x1},{y1}),({x2},{y2})</box><points>({px1},{py1}),({px2},{py2})</points>",
        *[st.integers(0, 900)] * 8,
    ),
    st.sampled_from(["", "<box>(1,2),(3,4)</box>", "<points>(1,2),(3,4)</points>", "<box>(a,b),(c,d)</box>",
                     "<box>(" + "9" * 5_000 + ",0),(1,1)</box><points>(0,0),(1,1)</points>"]),
    st.text(max_size=60),
)


# --- checks ------------------------------------------------------------------------------------------------


def check_parse(text: str, width: int, height: int) -> str:
    """Any exception but AnswerParseError fails the test; a parsed answer must lie inside the image.
    Returns "parsed" or "refused"."""
    try:
        answer = parse_answer(text, (width, height))
    except AnswerParseError as error:
        assert str(error)  # says why
        return "refused"
    box = answer.box
    assert 0 <= box.x1 <= box.x2 <= width - 1 and 0 <= box.y1 <= box.y2 <= height - 1, (box, width, height)
    for point in answer.points:
        assert 0 <= point.x <= width - 1 and 0 <= point.y <= height - 1, (point, width, height)
    frame_values = [*answer.frame_box.as_list(), *answer.frame_points[0].as_list(), *answer.frame_points[1].as_list()]
    assert all(type(value) is int and abs(value) <= MAX_ABS_COORDINATE for value in frame_values)
    return "parsed"


def check_rewards(text: str, solution: str) -> None:
    """No exception at all; strict components 0 or 1, soft ones in [0, 1]; totals their sums."""
    strict = score_completion(text, solution)
    individually = (
        thinking_format_reward(text), segmentation_format_reward(text), bbox_iou_reward(text, solution),
        bbox_l1_reward(text, solution), point_reward(text, solution),
    )
    assert (strict.thinking_format, strict.segmentation_format, strict.bbox_iou, strict.bbox_l1,
            strict.point) == individually
    assert all(value in (0.0, 1.0) for value in individually)
    assert seg_zero_reward(text, solution) == strict.total
    soft = score_completion(text, solution, soft=True)
    assert 0.0 <= soft.bbox_iou <= 1.0 and 0.0 <= soft.bbox_l1 <= 1.0
    assert 0.0 <= soft.total <= 5.0
    assert soft.bbox_iou == bbox_iou_reward(text, solution, soft=True)
    assert soft.bbox_l1 == bbox_l1_reward(text, solution, soft=True)


# --- the campaign ------------------------------------------------------------------------------------------


def test_campaign_checks_at_least_ten_thousand_outputs():
    checked = (PARSE_EXAMPLES + REWARD_EXAMPLES) * OUTPUTS_PER_EXAMPLE + 2 * MEGABYTE_EXAMPLES
    assert checked >= CAMPAIGN_SIZE * min(SCALE, 1.0)


def test_parse_answer_on_generated_model_outputs():
    campaign = Campaign()
    untruncated = {"parsed": 0, "refused": 0}

    @settings(PROFILE, max_examples=PARSE_EXAMPLES)
    @given(family=output_families(), width=IMAGE_SIDE, height=IMAGE_SIDE)
    def run(family: list[str], width: int, height: int) -> None:
        untruncated[campaign.timed(family[0], partial(check_parse, family[0], width, height))] += 1
        for text in family[1:]:
            campaign.timed(text, partial(check_parse, text, width, height))

    run()
    campaign.assert_complete(PARSE_EXAMPLES * OUTPUTS_PER_EXAMPLE)
    # The campaign is only as good as its inputs: many must get all the way through, many must be refused.
    assert min(untruncated.values()) >= PARSE_EXAMPLES // 10, untruncated


def test_rewards_on_generated_model_outputs():
    campaign = Campaign()
    well_formed = 0

    @settings(PROFILE, max_examples=REWARD_EXAMPLES)
    @given(family=output_families(), solution=SOLUTIONS)
    def run(family: list[str], solution: str) -> None:
        nonlocal well_formed
        for text in family:
            campaign.timed(text, partial(check_rewards, text, solution))
        well_formed += segmentation_format_reward(family[0]) == 1.0

    run()
    campaign.assert_complete(REWARD_EXAMPLES * OUTPUTS_PER_EXAMPLE)
    assert well_formed >= REWARD_EXAMPLES // 10, well_formed  # many outputs reach every reward's scoring


def test_megabyte_outputs_in_both_parsers():
    campaign = Campaign()

    @settings(PROFILE, max_examples=MEGABYTE_EXAMPLES)
    @given(text=megabyte_outputs(), width=IMAGE_SIDE, height=IMAGE_SIDE, solution=SOLUTIONS)
    def run(text: str, width: int, height: int, solution: str) -> None:
        assert len(text) >= 1_000_000  # the strategy really makes 1 MB outputs
        campaign.timed(text, partial(check_parse, text, width, height))
        campaign.timed(text, partial(check_rewards, text, solution))

    run()
    campaign.assert_complete(2 * MEGABYTE_EXAMPLES)
