"""The ground-truth ``solution`` string of Seg-Zero's training data, in reasoning-frame (840×840) pixels.

Format: ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>``: non-negative integers, no spaces.

Reading follows the reference reward code exactly, because a reward that reads the ground truth differently
trains a different model: the ``<box>…</box>`` and ``<points>…</points>`` parts are each *searched for*
anywhere in the text (other text around them is ignored, either may come first), and a part with a space,
a sign or a decimal point in it is not found at all. Like the reference, digits are matched by ``\\d``, so
any Unicode decimal digit counts (``int()`` reads them). Numbers longer than CPython's default
``int()`` limit (4300 digits) are rejected just as the reference's ``int()`` would, independent of the
interpreter's setting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from segzero_ros.core.geometry import Box, Point

MAX_NUMBER_DIGITS = 4300
"""CPython's default ``sys.get_int_max_str_digits()``: longer digit strings make the reference's int() fail."""

_NUMBER = r"(\d+)"
_GT_BOX = re.compile(rf"<box>\({_NUMBER},{_NUMBER}\),\({_NUMBER},{_NUMBER}\)</box>")
_GT_POINTS = re.compile(rf"<points>\({_NUMBER},{_NUMBER}\),\({_NUMBER},{_NUMBER}\)</points>")


def format_solution(box: Box, points: tuple[Point, Point]) -> str:
    """The solution string for a GT box and two GT points (frame pixels); the inverse of :func:`parse_solution`.

    Raises ValueError for anything the format cannot carry (negative or non-integer coordinates), so a bad
    target fails when the dataset is built rather than silently scoring 0 during training.
    """
    if len(points) != 2:
        raise ValueError(f"a solution has exactly two points, got {len(points)}")
    values = [*box.as_list(), *points[0].as_list(), *points[1].as_list()]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"solution coordinates must be integers, got {value!r}")
        if value < 0:
            raise ValueError(f"solution coordinates must be non-negative, got {value}")
    x1, y1, x2, y2, px1, py1, px2, py2 = values
    return f"<box>({x1},{y1}),({x2},{y2})</box><points>({px1},{py1}),({px2},{py2})</points>"


def parse_solution(text: str) -> tuple[Box, tuple[Point, Point]]:
    """GT box and points from a solution string, read as the reference rewards read it.

    Raises ValueError when either part is missing or malformed.
    """
    box = find_solution_box(text)
    if box is None:
        raise ValueError(f"no '<box>(x1,y1),(x2,y2)</box>' in solution {_short(text)}")
    points = find_solution_points(text)
    if points is None:
        raise ValueError(f"no '<points>(x,y),(x,y)</points>' in solution {_short(text)}")
    return box, points


def find_solution_box(text: str) -> Box | None:
    """The GT box alone, or None; the box rewards need only this part, exactly as in the reference."""
    numbers = _search_numbers(_GT_BOX, text)
    return None if numbers is None else Box(*numbers)


def find_solution_points(text: str) -> tuple[Point, Point] | None:
    """The two GT points alone, or None; the point reward needs only this part."""
    numbers = _search_numbers(_GT_POINTS, text)
    if numbers is None:
        return None
    return Point(numbers[0], numbers[1]), Point(numbers[2], numbers[3])


def _search_numbers(pattern: re.Pattern[str], text: str) -> list[int] | None:
    if not isinstance(text, str):
        return None
    match = pattern.search(text)
    if match is None:
        return None
    groups = match.groups()
    if any(len(group) > MAX_NUMBER_DIGITS for group in groups):
        return None
    return [int(group) for group in groups]


def _short(text: object, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def rescale_solution(text: str, from_extent: int, to_extent: int) -> str:
    """A solution (Seg-Zero's ``<box>…<points>…`` or VisionReasoner's JSON list) from coordinates spanning
    `from_extent` to coordinates spanning `to_extent` (e.g. the 840 frame's pixels → Qwen3-VL's 0..1000), each
    value rounded half up as the reference data preparation rounds. Unchanged when the extents are equal."""
    if from_extent == to_extent:
        return text
    factor = to_extent / from_extent

    def scaled(values: Sequence[int]) -> list[int]:
        return [int(int(value) * factor + 0.5) for value in values]

    if text.lstrip().startswith("["):
        return object_solution([(scaled(item["bbox_2d"]), scaled(item["point_2d"])) for item in json.loads(text)])
    box, points = parse_solution(text)
    x1, y1, x2, y2 = scaled(box.as_list())
    p1, p2 = scaled(points[0].as_list()), scaled(points[1].as_list())
    return format_solution(Box(x1, y1, x2, y2), (Point(*p1), Point(*p2)))


def object_solution(objects: Sequence[tuple[Sequence[int], Sequence[int]]]) -> str:
    """The GT ``solution`` of a VisionReasoner sample: ``[{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}, …]`` in
    840-frame integers, the JSON list its accuracy reward decodes (``[]`` for a sample without a target)."""
    return json.dumps([{"bbox_2d": [int(v) for v in box], "point_2d": [int(v) for v in point]}
                       for box, point in objects])
