import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_ros.core.geometry import Box, Point
from segzero_ros.core.solution import (
    MAX_NUMBER_DIGITS,
    find_solution_box,
    find_solution_points,
    format_solution,
    parse_solution,
)

SOLUTION = "<box>(10,20),(300,400)</box><points>(50,60),(200,350)</points>"


def test_format_is_the_datasets_exact_string():
    text = format_solution(Box(10, 20, 300, 400), (Point(50, 60), Point(200, 350)))
    assert text == SOLUTION


def test_parse_reads_box_and_points():
    assert parse_solution(SOLUTION) == (Box(10, 20, 300, 400), (Point(50, 60), Point(200, 350)))


def test_parts_are_searched_anywhere_like_the_reference():
    # The reference uses re.search per part: surrounding text and part order do not matter.
    text = "  gt: <points>(50,60),(200,350)</points> and <box>(10,20),(300,400)</box>\n"
    assert parse_solution(text) == (Box(10, 20, 300, 400), (Point(50, 60), Point(200, 350)))


def test_first_occurrence_wins():
    text = "<box>(1,2),(3,4)</box><box>(5,6),(7,8)</box><points>(1,1),(2,2)</points>"
    assert parse_solution(text)[0] == Box(1, 2, 3, 4)


@pytest.mark.parametrize(
    "text",
    [
        "<box>(10, 20),(300,400)</box><points>(50,60),(200,350)</points>",  # space
        "<box>(10,20),(300,400)</box><points>(50,-60),(200,350)</points>",  # sign
        "<box>(10.5,20),(300,400)</box><points>(50,60),(200,350)</points>",  # decimal point
        "<box>(10,20),(300,400)</box>",  # no points
        "<points>(50,60),(200,350)</points>",  # no box
        "<box>(10,20,300,400)</box><points>(50,60),(200,350)</points>",  # wrong grouping
        "",
    ],
)
def test_malformed_solutions_raise(text):
    with pytest.raises(ValueError):
        parse_solution(text)


def test_parts_are_found_independently():
    assert find_solution_box("<box>(1,2),(3,4)</box>") == Box(1, 2, 3, 4)
    assert find_solution_points("<box>(1,2),(3,4)</box>") is None
    assert find_solution_points("<points>(5,6),(7,8)</points>") == (Point(5, 6), Point(7, 8))
    assert find_solution_box(None) is None  # type: ignore[arg-type]


def test_unicode_digits_count_like_the_reference_regex():
    # \d and int() both accept any Unicode decimal digit: "٣" is ARABIC-INDIC DIGIT THREE.
    text = "<box>(\u0663,0),(9,9)</box><points>(1,1),(2,2)</points>"
    assert parse_solution(text)[0] == Box(3, 0, 9, 9)


def test_numbers_beyond_the_int_digit_limit_are_rejected():
    too_long = "9" * (MAX_NUMBER_DIGITS + 1)
    with pytest.raises(ValueError):
        parse_solution(f"<box>({too_long},0),(9,9)</box><points>(1,1),(2,2)</points>")
    longest = "9" * MAX_NUMBER_DIGITS
    box, _ = parse_solution(f"<box>({longest},0),(9,9)</box><points>(1,1),(2,2)</points>")
    assert box.x1 == int(longest)


@pytest.mark.parametrize(
    ("box", "points"),
    [
        (Box(-1, 0, 5, 5), (Point(1, 1), Point(2, 2))),
        (Box(0, 0, 5, 5), (Point(1, -1), Point(2, 2))),
        (Box(0, 0, 5.5, 5), (Point(1, 1), Point(2, 2))),  # type: ignore[arg-type]
        (Box(0, 0, True, 5), (Point(1, 1), Point(2, 2))),  # type: ignore[arg-type]
    ],
)
def test_format_rejects_what_the_format_cannot_carry(box, points):
    with pytest.raises(ValueError):
        format_solution(box, points)


coordinate = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(coordinate, min_size=8, max_size=8))
def test_format_and_parse_round_trip(values):
    box = Box(*values[:4])
    points = (Point(values[4], values[5]), Point(values[6], values[7]))
    assert parse_solution(format_solution(box, points)) == (box, points)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="<>()/,0123456789boxpints \u0663", max_size=80))
def test_parse_raises_only_value_error(text):
    try:
        box, (first, second) = parse_solution(text)
    except ValueError:
        return
    assert all(value >= 0 for value in (*box.as_list(), *first.as_list(), *second.as_list()))
