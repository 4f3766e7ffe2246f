"""VisionReasoner answers: the prompt byte for byte, and parse_object_list against a re-statement of the
reference parser (VisionReasoner's extract_bbox_points_think, as the issue and its source describe it)."""

from __future__ import annotations

import contextlib
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_ros.core.answer import MAX_OBJECTS, AnswerParseError, parse_object_list
from segzero_ros.core.geometry import Box, Point
from segzero_ros.core.prompt import build_vision_reasoner_prompt


def reference_objects(text: str, width: int, height: int) -> tuple[list[list[int]], list[list[int]]]:
    """The reference: first <answer>…</answer>, json.loads, int(v * factor + 0.5); any error → empty lists."""
    x_factor, y_factor = width / 840, height / 840
    match = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
    try:
        data = json.loads(match.group(1))  # type: ignore[union-attr]
        boxes = [[int(item["bbox_2d"][0] * x_factor + 0.5), int(item["bbox_2d"][1] * y_factor + 0.5),
                  int(item["bbox_2d"][2] * x_factor + 0.5), int(item["bbox_2d"][3] * y_factor + 0.5)]
                 for item in data]
        points = [[int(item["point_2d"][0] * x_factor + 0.5), int(item["point_2d"][1] * y_factor + 0.5)]
                  for item in data]
    except Exception:
        return [], []
    return boxes, points


def test_the_prompt_is_byte_exact():
    assert build_vision_reasoner_prompt('The Red Cups?!"') == (
        'Please find "the red cups" with bboxs and points.Compare the difference between object(s) and find the '
        "most closely matched object(s).Output the thinking process in <think> </think> and final answer in "
        "<answer> </answer> tags.Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
        'i.e., <think> thinking process here </think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
        '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>')
    assert 'find "{answer} {0}" with' in build_vision_reasoner_prompt("{Answer} {0}")  # not templated


coordinate = st.integers(0, 839)
item = st.tuples(coordinate, coordinate, coordinate, coordinate, coordinate, coordinate).map(
    lambda v: {"bbox_2d": [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])],
               "point_2d": [v[4], v[5]]})


@settings(max_examples=300, deadline=None)
@given(items=st.lists(item, min_size=1, max_size=6, unique_by=json.dumps),
       width=st.integers(1, 4000), height=st.integers(1, 4000), think=st.text(st.characters(exclude_characters="<>")))
def test_same_objects_as_the_reference_where_it_parses_a_list(items, width, height, think):
    text = f"<think>{think}</think><answer>{json.dumps(items)}</answer>"
    ref_boxes, ref_points = reference_objects(text, width, height)
    ours = parse_object_list(text, (width, height))
    clamp = lambda v, hi: min(max(v, 0), hi - 1)  # noqa: E731  # ours clamps onto the image, as parse_answer
    expected = []
    for box, point in zip(ref_boxes, ref_points, strict=True):
        entry = ([clamp(box[0], width), clamp(box[1], height), clamp(box[2], width), clamp(box[3], height)],
                 [clamp(point[0], width), clamp(point[1], height)])
        if entry not in expected:
            expected.append(entry)
    assert [(o.box.as_list(), o.points[0].as_list()) for o in ours.objects] == expected
    assert ours.reasoning == think.strip()


def test_a_literal_empty_list_means_not_in_view_and_garbage_is_an_error():
    assert parse_object_list("<think>no knife here</think><answer>[]</answer>", (640, 480)).objects == ()
    assert parse_object_list("<answer> [ ] </answer>", (640, 480)).objects == ()
    for garbage, reason in (("<think>hmm</think>", "no <answer>"), ("<answer></answer>", "empty"),
                            ("<answer>the knife</answer>", "not valid JSON"),
                            ('<answer>[{"box": [1, 2, 3, 4]}]</answer>', "no 'bbox_2d'"),
                            ('<answer>[{"bbox_2d": [1, 2, "x", 4]}]</answer>', "not a number"),
                            ('<answer>{"count": 3}</answer>', "no 'bbox_2d'"),
                            ("<answer>42</answer>", "not a JSON list")):
        assert reference_objects(garbage, 640, 480) == ([], [])  # the reference says "nothing there"
        with pytest.raises(AnswerParseError, match=reason):
            parse_object_list(garbage, (640, 480))


def test_robustness_beyond_the_reference():
    fenced = '<answer>```json\n[{"bbox_2d": [84, 84, 420, 420], "point_2d": [210, 210, 9]}]\n```</answer>'
    [obj] = parse_object_list(fenced, (840, 840)).objects
    assert obj.box == Box(84, 84, 420, 420) and obj.points == (Point(210, 210),)
    cut_off = "<think>two cups</think><answer>[{'bbox_2d': [0, 0, 100, 100], 'point_2d': [50, 50]}, {'bbox_2d': [2"
    assert len(parse_object_list(cut_off, (840, 840)).objects) == 1  # the complete leading item
    box_only = parse_object_list('<answer>[{"bbox_2d": [900, 10, 5, 20]}]</answer>', (840, 840)).objects
    assert box_only[0].box == Box(5, 10, 839, 20) and box_only[0].points == ()  # ordered and clamped
    twice = '<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]'
    assert len(parse_object_list(twice + "</answer>", (840, 840)).objects) == 1
    many = json.dumps([{"bbox_2d": [i, i, i + 1, i + 1], "point_2d": [i, i]} for i in range(100)])
    assert len(parse_object_list(f"<answer>{many}</answer>", (840, 840)).objects) == MAX_OBJECTS
    lone = parse_object_list('<answer>{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}</answer>', (840, 840))
    assert len(lone.objects) == 1
    before = parse_object_list('I see it.<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>', (840, 840))
    assert before.reasoning == "I see it."


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300) | st.builds(lambda a, b: f"<answer>{a}</answer>{b}", st.text(), st.text()),
       width=st.integers(1, 5000), height=st.integers(1, 5000))
def test_nothing_but_answer_parse_error_escapes(text, width, height):
    with contextlib.suppress(AnswerParseError):  # any other exception fails the test
        found = parse_object_list(text, (width, height))
        assert len(found.objects) <= MAX_OBJECTS


def test_a_megabyte_answer_is_linear():
    text = "<answer>[" + '{"bbox_2d": [1,2,3,4], "point_2d": [1,2]},' * 25_000 + "{}]</answer>"
    started = time.thread_time()
    parse_object_list(text, (840, 840))
    assert time.thread_time() - started < 5.0  # hang detector, CPU seconds
