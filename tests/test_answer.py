import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_ros.core.answer import AnswerParseError, parse_answer
from segzero_ros.core.geometry import Box, Point


def reference_extract(output_text: str, width: int, height: int):
    """Seg-Zero's reference extraction, as SEGZERO.md describes it: the oracle for equivalence tests."""
    x_factor, y_factor = width / 840, height / 840
    data = json.loads(re.search(r"{[^}]+}", output_text).group(0))
    bbox_key = next(key for key in data if "bbox" in key.lower())
    raw_box = data[bbox_key]
    assert len(raw_box) == 4
    box = [
        round(int(raw_box[0]) * x_factor),
        round(int(raw_box[1]) * y_factor),
        round(int(raw_box[2]) * x_factor),
        round(int(raw_box[3]) * y_factor),
    ]
    point_keys = [key for key in data if "points" in key.lower()][:2]
    points = [[round(int(data[k][0]) * x_factor), round(int(data[k][1]) * y_factor)] for k in point_keys]
    return box, points


GOOD = (
    "<think>The mug is on the left, red, with a handle.</think>"
    '<answer>{"bbox": [100,200,300,400], "points_1": [150,250], "points_2": [250,350]}</answer>'
)


def test_typical_output_is_scaled_to_the_original_image():
    answer = parse_answer(GOOD, (1680, 420))
    # x factor 2, y factor 0.5.
    assert answer.box == Box(200, 100, 600, 200)
    assert answer.points == (Point(300, 125), Point(500, 175))
    assert answer.frame_box == Box(100, 200, 300, 400)
    assert answer.reasoning == "The mug is on the left, red, with a handle."
    assert answer.from_answer_tag


def test_answer_tag_is_preferred_over_braces_in_the_thinking():
    text = (
        '<think>maybe {"bbox": [0,0,10,10], "points_1": [1,1], "points_2": [2,2]} but no</think>'
        '<answer>{"bbox": [100,200,300,400], "points_1": [150,250], "points_2": [250,350]}</answer>'
    )
    assert parse_answer(text, (840, 840)).box == Box(100, 200, 300, 400)


def test_falls_back_to_whole_text_without_answer_tags():
    text = 'Sure: {"bbox": [10,20,30,40], "points_1": [15,25], "points_2": [20,30]}'
    answer = parse_answer(text, (840, 840))
    assert answer.box == Box(10, 20, 30, 40)
    assert not answer.from_answer_tag
    assert answer.reasoning == ""


def test_code_fences_and_single_quotes_are_accepted():
    text = "<answer>```json\n{'bbox': [10,20,30,40], 'points_1': [15,25], 'points_2': [20,30]}\n```</answer>"
    assert parse_answer(text, (840, 840)).points == (Point(15, 25), Point(20, 30))


def test_truncated_answer_tag_still_counts():
    text = '<think>x</think><answer>{"bbox": [10,20,30,40], "points_1": [15,25], "points_2": [20,30]}'
    assert parse_answer(text, (840, 840)).box == Box(10, 20, 30, 40)


def test_swapped_corners_are_ordered_and_out_of_image_values_clamped():
    text = '<answer>{"bbox": [900,400,100,-20], "points_1": [-5,10], "points_2": [850,900]}</answer>'
    answer = parse_answer(text, (840, 840))
    assert answer.box == Box(100, 0, 839, 400)
    assert answer.points == (Point(0, 10), Point(839, 839))
    assert answer.frame_box == Box(900, 400, 100, -20)  # as written, for debugging


def test_floats_truncate_and_integer_strings_parse_like_int():
    text = '<answer>{"bbox": [10.9,"20",30.2,40], "points_1": [15,25], "points_2": [20.99,30]}</answer>'
    answer = parse_answer(text, (840, 840))
    assert answer.box == Box(10, 20, 30, 40)
    assert answer.points[1] == Point(20, 30)


def test_points_as_one_key_with_two_pairs():
    text = '<answer>{"bbox": [10,20,30,40], "points": [[15,25],[20,30]]}</answer>'
    assert parse_answer(text, (840, 840)).points == (Point(15, 25), Point(20, 30))


def test_later_usable_object_wins_over_an_unusable_first_one():
    text = '<answer>{"note": "first"} {"bbox_2d": [10,20,30,40], "point_1": [15,25], "point_2": [20,30]}</answer>'
    assert parse_answer(text, (840, 840)).box == Box(10, 20, 30, 40)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no JSON object"),
        ("<think>hmm</think><answer>I cannot see it</answer>", "no JSON object"),
        ('<answer>{"points_1": [1,2], "points_2": [3,4]}</answer>', "no 'bbox'"),
        ('<answer>{"bbox": [1,2,3], "points_1": [1,2], "points_2": [3,4]}</answer>', "list of 4"),
        ('<answer>{"bbox": [1,2,3,4], "points_1": [1,2]}</answer>', "two points"),
        ('<answer>{"bbox": [1,2,3,NaN], "points_1": [1,2], "points_2": [3,4]}</answer>', "no JSON object"),
        ('<answer>{"bbox": [1,2,3,1e400], "points_1": [1,2], "points_2": [3,4]}</answer>', "non-finite"),
        ('<answer>{"bbox": [1,2,3,99999999], "points_1": [1,2], "points_2": [3,4]}</answer>', "out-of-range"),
        ('<answer>{"bbox": [1,2,3,true], "points_1": [1,2], "points_2": [3,4]}</answer>', "boolean"),
        ('<answer>{"bbox": [1,2,3,"x"], "points_1": [1,2], "points_2": [3,4]}</answer>', "non-numeric"),
        ('<answer>{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": 5}</answer>', "list of 2"),
        ('<answer>{"bbox": {"x": 1}}</answer>', "no 'bbox'"),  # only the inner flat object is a candidate
    ],
)
def test_unusable_outputs_raise_with_a_reason(text, reason):
    with pytest.raises(AnswerParseError, match=re.escape(reason)):
        parse_answer(text, (640, 480))


def test_parse_error_is_a_value_error():
    assert issubclass(AnswerParseError, ValueError)


def test_invalid_image_size_is_a_caller_error_not_a_parse_error():
    with pytest.raises(ValueError) as info:
        parse_answer(GOOD, (0, 10))
    assert not isinstance(info.value, AnswerParseError)


coordinate = st.integers(0, 840)
key_style = st.sampled_from([("bbox", "points_1", "points_2"), ("bbox_2d", "points_a", "points_b")])


@settings(max_examples=300, deadline=None)
@given(
    box=st.tuples(coordinate, coordinate, coordinate, coordinate),
    p1=st.tuples(coordinate, coordinate),
    p2=st.tuples(coordinate, coordinate),
    keys=key_style,
    width=st.integers(1, 4000),
    height=st.integers(1, 4000),
    think=st.text(alphabet=st.characters(blacklist_characters="<>{}"), max_size=80),
)
def test_equivalent_to_the_reference_where_it_succeeds(box, p1, p2, keys, width, height, think):
    # Ordered corners: the reference does not swap, we do; for ordered boxes both must agree.
    x1, x2 = sorted(box[::2])
    y1, y2 = sorted(box[1::2])
    payload = json.dumps({keys[0]: [x1, y1, x2, y2], keys[1]: list(p1), keys[2]: list(p2)})
    text = f"<think>{think}</think><answer>{payload}</answer>"
    ref_box, ref_points = reference_extract(text, width, height)
    ours = parse_answer(text, (width, height))
    clamped_ref_box = [min(max(v, 0), (width if i % 2 == 0 else height) - 1) for i, v in enumerate(ref_box)]
    assert all(abs(a - b) <= 1 for a, b in zip(ours.box.as_list(), clamped_ref_box, strict=True))
    for our_point, ref_point in zip(ours.points, ref_points, strict=True):
        assert abs(our_point.x - min(ref_point[0], width - 1)) <= 1
        assert abs(our_point.y - min(ref_point[1], height - 1)) <= 1


JSONISH = st.text(alphabet='{}[]<>/",:0123456789.-eE+ abinptxhkoNaIfy_\'`\n', max_size=200)
TAGGED = st.builds(
    lambda a, b, c: f"<think>{a}</think><answer>{b}</answer>{c}", JSONISH, JSONISH, st.text(max_size=20)
)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(st.text(max_size=300), JSONISH, TAGGED), width=st.integers(1, 5000),
       height=st.integers(1, 5000))
def test_no_exception_but_answer_parse_error_escapes(text, width, height):
    try:
        answer = parse_answer(text, (width, height))
    except AnswerParseError:
        return
    assert 0 <= answer.box.x1 <= answer.box.x2 <= width - 1
    assert 0 <= answer.box.y1 <= answer.box.y2 <= height - 1
    for point in answer.points:
        assert 0 <= point.x <= width - 1 and 0 <= point.y <= height - 1


@pytest.mark.parametrize(
    "text",
    [
        "{" * 200_000,
        "<think>" * 100_000,
        "<answer>" + "{a" * 100_000,
        '{"bbox": [' + "1," * 200_000 + "1]}",
        '{"bbox": ' + "[" * 50_000 + "]" * 50_000 + "}",
        '{"bbox": [' + "9" * 5000 + ",1,1,1]}",
    ],
)
def test_adversarial_inputs_fail_cleanly(text):
    with pytest.raises(AnswerParseError):
        parse_answer(text, (640, 480))


def test_a_point_with_more_than_two_numbers_gives_its_first_two_as_the_reference_does():
    text = '<answer>{"bbox": [100, 60, 700, 500], "points_1": [619, 78, 5], "points_2": [300, 200, 1, 2]}</answer>'
    answer = parse_answer(text, (840, 840))
    assert answer.frame_points == (Point(619, 78), Point(300, 200))
    ref_box, ref_points = reference_extract(text, 1680, 420)
    scaled = parse_answer(text, (1680, 420))
    assert [p.as_list() for p in scaled.points] == ref_points and scaled.box.as_list() == ref_box
    with pytest.raises(AnswerParseError, match="list of 2"):
        parse_answer('<answer>{"bbox": [1, 2, 3, 4], "points_1": [5], "points_2": [3, 4]}</answer>', (840, 840))
