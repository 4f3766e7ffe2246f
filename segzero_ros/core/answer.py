"""Parsing the reasoner's answer into a box and two points in original-image pixels.

Reference behaviour (Seg-Zero's inference script): the first ``{...}`` without nested braces anywhere in
the output is JSON-decoded; the box is the first key containing "bbox", the points the first two keys
containing "points"; each value is ``int()``-cast, multiplied by W/840 (x) or H/840 (y) and rounded.
Where that succeeds, :func:`parse_answer` gives the same box and points.

Where the reference crashes or silently misreads, we go further, but only where the intent is unambiguous:

1. A ``{...}`` inside ``<answer>...</answer>`` is preferred over one elsewhere (e.g. inside ``<think>``);
   an ``<answer>`` cut off by the token limit still counts. If no object there is usable, the whole text
   is searched.
2. Markdown code fences (```` ```json ... ``` ````) around the object are ignored.
3. Every candidate object is tried in order, not just the first; the first usable one wins.
4. Python-style single quotes (as in the prompt's own example) are accepted when strict JSON fails.
5. Points may also come as one key holding two pairs (``"points": [[x, y], [x, y]]``); keys containing
   "point" (singular) count as point keys; a point with more than two numbers gives its first two, as the
   reference reads it.
6. Box corners are ordered (x1 > x2 or y1 > y2 are swapped) and every coordinate is clamped onto the
   image's pixels (0..W-1, 0..H-1), so downstream code never sees a point outside the image.
7. NaN, Infinity, booleans, non-numeric strings and absurd magnitudes (|v| > 1e6) are rejected with a
   reason instead of crashing.

Anything unusable raises :class:`AnswerParseError` (a ``ValueError``) saying why; no other exception
escapes for any input string. Nothing from the text is ever evaluated.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from segzero_ros.core.geometry import (
    REASONING_FRAME_SIZE,
    Box,
    FrameScale,
    ObjectPrompt,
    Point,
    box_to_image,
    clamp_point,
    normalize_box,
    point_to_image,
)

MAX_ABS_COORDINATE = 1_000_000
"""Anything beyond this is not a coordinate; it would only risk overflow when scaled."""

MAX_CANDIDATES = 256
"""Upper bound on ``{...}`` objects tried per region, so adversarial text cannot cost unbounded time."""

_FLAT_OBJECT = re.compile(r"\{[^{}]+\}")
_CODE_FENCE = re.compile(r"```[A-Za-z0-9_-]*")


class AnswerParseError(ValueError):
    """The model's output holds no usable box and two points; the message says why."""


@dataclass(frozen=True)
class SegZeroAnswer:
    reasoning: str
    """Text between <think> and </think> (stripped); empty when the model wrote none."""
    box: Box
    """Box in original-image pixels, ordered and clamped."""
    points: tuple[Point, Point]
    """Two positive points in original-image pixels, clamped."""
    frame_box: Box
    """The box exactly as the model wrote it (int-cast), in the reasoning frame."""
    frame_points: tuple[Point, Point]
    """The points exactly as the model wrote them (int-cast), in the reasoning frame."""
    from_answer_tag: bool
    """True when the object came from inside <answer>…</answer> (the expected place)."""


def extract_tag(text: str, tag: str, allow_unterminated: bool = False) -> str | None:
    """Content of the first <tag>…</tag>; with allow_unterminated, an open tag runs to the end.

    Uses str.find rather than a lazy regex so that adversarial text stays linear-time.
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(closing, start)
    if end < 0:
        return text[start:] if allow_unterminated else None
    return text[start:end]


def extract_reasoning(text: str) -> str:
    content = extract_tag(text, "think")
    return content.strip() if content is not None else ""


def parse_answer(
    text: str, image_size: tuple[int, int], frame_size: int = REASONING_FRAME_SIZE
) -> SegZeroAnswer:
    """Box and two points from a Seg-Zero completion, in pixels of the original ``(width, height)`` image.

    Raises AnswerParseError when the text holds nothing usable. An invalid ``image_size`` is a caller bug
    and raises a plain ValueError.
    """
    scale = FrameScale.for_image(image_size, frame_size)
    if not isinstance(text, str):
        raise AnswerParseError(f"model output must be a string, got {type(text).__name__}")

    answer_region = extract_tag(text, "answer", allow_unterminated=True)
    regions: list[tuple[str, bool]] = []
    if answer_region is not None:
        regions.append((answer_region, True))
    regions.append((text, False))

    first_error: str | None = None
    for region, in_answer in regions:
        for candidate in _candidate_objects(region):
            try:
                frame_box, frame_points = _read_box_and_points(candidate)
            except AnswerParseError as error:
                first_error = first_error or str(error)
                continue
            return SegZeroAnswer(
                reasoning=extract_reasoning(text),
                box=normalize_box(box_to_image(frame_box, scale), image_size),
                points=(
                    clamp_point(point_to_image(frame_points[0], scale), image_size),
                    clamp_point(point_to_image(frame_points[1], scale), image_size),
                ),
                frame_box=frame_box,
                frame_points=frame_points,
                from_answer_tag=in_answer,
            )
    if first_error is not None:
        raise AnswerParseError(first_error)
    raise AnswerParseError("no JSON object with a bbox and two points found in the model output")


def _candidate_objects(region: str) -> list[dict[str, Any]]:
    """Decodable flat ``{...}`` objects in order of appearance."""
    region = _CODE_FENCE.sub("", region)
    objects: list[dict[str, Any]] = []
    for count, match in enumerate(_FLAT_OBJECT.finditer(region)):
        if count >= MAX_CANDIDATES:
            break
        decoded = _decode_object(match.group(0))
        if decoded is not None:
            objects.append(decoded)
    return objects


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a coordinate")


def _decode_object(snippet: str) -> dict[str, Any] | None:
    for attempt in (snippet, snippet.replace("'", '"')):
        try:
            value = json.loads(attempt, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            continue
        return value if isinstance(value, dict) else None
    return None


def _read_box_and_points(data: dict[str, Any]) -> tuple[Box, tuple[Point, Point]]:
    box_key = next((key for key in data if "bbox" in key.lower()), None)
    if box_key is None:
        raise AnswerParseError(f"answer object has no 'bbox' key (keys: {_short_keys(data)})")
    box_values = _coordinates(data[box_key], 4, box_key)
    box = Box(*box_values)

    point_keys = [key for key in data if "point" in key.lower()]
    if len(point_keys) >= 2:
        first = Point(*_coordinates(data[point_keys[0]], 2, point_keys[0], at_least=True))
        second = Point(*_coordinates(data[point_keys[1]], 2, point_keys[1], at_least=True))
    elif len(point_keys) == 1 and _is_pair_of_pairs(data[point_keys[0]]):
        pairs = data[point_keys[0]]
        first = Point(*_coordinates(pairs[0], 2, point_keys[0]))
        second = Point(*_coordinates(pairs[1], 2, point_keys[0]))
    else:
        raise AnswerParseError(
            f"answer needs two points (e.g. 'points_1', 'points_2'), found {len(point_keys)} point key(s)"
        )
    return box, (first, second)


def _is_pair_of_pairs(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(item, list) for item in value)


def _coordinates(value: Any, count: int, key: str, *, at_least: bool = False) -> list[int]:
    """`count` numbers; with `at_least`, longer lists give their first `count` (the reference indexes [0], [1]
    of a point, so "points_1": [619, 78, 5] is the point (619, 78) there too)."""
    usable = isinstance(value, list) and (len(value) >= count if at_least else len(value) == count)
    if not usable:
        raise AnswerParseError(f"'{key}' must be a list of {count} numbers, got {_short(value)}")
    return [_coordinate(item, key) for item in value[:count]]


def _coordinate(value: Any, key: str) -> int:
    """int() like the reference (floats truncate, integer strings parse), minus the crashes."""
    if isinstance(value, bool):
        raise AnswerParseError(f"'{key}' holds a boolean, not a coordinate")
    if isinstance(value, float) and not math.isfinite(value):
        raise AnswerParseError(f"'{key}' holds a non-finite number")
    if isinstance(value, (int, float)):
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise AnswerParseError(f"'{key}' holds a non-numeric value {_short(value)}") from None
    else:
        raise AnswerParseError(f"'{key}' holds {_short(value)}, not a number")
    if abs(number) > MAX_ABS_COORDINATE:
        raise AnswerParseError(f"'{key}' holds an out-of-range coordinate")
    return number


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_keys(data: dict[str, Any]) -> str:
    return _short(list(data)[:8])


# ---------------------------------------------------------------------------------------------------------
# VisionReasoner answers: a JSON list of objects, possibly empty

MAX_OBJECTS = 32
"""More objects than this in one answer are cut off (a degenerate, repeating generation)."""


@dataclass(frozen=True)
class ObjectListAnswer:
    reasoning: str
    objects: tuple[ObjectPrompt, ...]
    """Empty when the model answered a literal empty list: the target is not in view."""


def parse_object_list(text: str, image_size: tuple[int, int],
                      frame_size: int = REASONING_FRAME_SIZE) -> ObjectListAnswer:
    """The objects of a VisionReasoner answer (``[{"bbox_2d": [...], "point_2d": [...]}, ...]``) in pixels of
    the original ``(width, height)`` image.

    Where the reference parses a non-empty list, the same boxes and points (it scales each value v by
    ``int(v * factor + 0.5)``). Unlike the reference, garbage is never mistaken for "nothing there": only a
    literal ``[]`` gives no objects, anything unusable raises AnswerParseError with the reason. Beyond the
    reference: code fences, an ``<answer>`` cut off by the token limit, single quotes, a lone object
    without the list, points with more than two numbers (first two), items without a point (box only),
    duplicates removed, at most MAX_OBJECTS objects. No other exception escapes; linear time.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {image_size}")
    if not isinstance(text, str):
        raise AnswerParseError(f"model output must be a string, got {type(text).__name__}")
    region = extract_tag(text, "answer", allow_unterminated=True)
    if region is None:
        raise AnswerParseError("no <answer> in the model output")
    value = _decode_list(_CODE_FENCE.sub("", region).strip())
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise AnswerParseError(f"the answer is not a JSON list of objects: {_short(region.strip())}")
    fx, fy = width / frame_size, height / frame_size
    objects: list[ObjectPrompt] = []
    problems: list[str] = []
    for item in value[:MAX_OBJECTS]:
        try:
            found = _read_object(item, fx, fy, image_size)
        except AnswerParseError as error:
            problems.append(str(error))
            continue
        if found not in objects:
            objects.append(found)
    if value and not objects:
        raise AnswerParseError(f"no usable object in the answer list: {problems[0]}")
    think = extract_tag(text, "think")
    reasoning = think.strip() if think is not None else text[: max(0, text.find("<answer>"))].strip()
    return ObjectListAnswer(reasoning=reasoning, objects=tuple(objects))


def _decode_list(snippet: str) -> Any:
    """The JSON value of the answer: strict, then with single quotes, then the outermost [...] inside."""
    if not snippet:
        raise AnswerParseError("the answer is empty")
    candidates = [snippet, snippet.replace("'", '"')]
    start, end = snippet.find("["), snippet.rfind("]")
    if 0 <= start < end:
        inner = snippet[start:end + 1]
        candidates += [inner, inner.replace("'", '"')]
    for attempt in candidates:
        try:
            return json.loads(attempt, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            continue
    if start >= 0:  # a list cut off by the token limit: its complete leading items
        for attempt in (snippet[start:], snippet[start:].replace("'", '"')):
            items = _leading_items(attempt)
            if items:
                return items
    raise AnswerParseError(f"the answer is not valid JSON: {_short(snippet)}")


def _leading_items(text: str) -> list[Any]:
    """The complete values at the start of an unterminated JSON list ``[a, b, c…``, in one linear pass."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    items: list[Any] = []
    index = 1  # past "["
    while len(items) < MAX_OBJECTS:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        try:
            value, index = decoder.raw_decode(text, index)
        except (ValueError, RecursionError):
            break
        items.append(value)
    return items


def _read_object(item: Any, fx: float, fy: float, image_size: tuple[int, int]) -> ObjectPrompt:
    if not isinstance(item, dict):
        raise AnswerParseError(f"answer items must be objects, got {_short(item)}")
    box_key = next((key for key in item if "bbox" in str(key).lower()), None)
    if box_key is None:
        raise AnswerParseError(f"answer item has no 'bbox_2d' (keys: {_short_keys(item)})")
    x1, y1, x2, y2 = _scaled(item[box_key], 4, str(box_key), (fx, fy, fx, fy))
    box = normalize_box(Box(x1, y1, x2, y2), image_size)
    point_key = next((key for key in item if "point" in str(key).lower()), None)
    points: tuple[Point, ...] = ()
    if point_key is not None and item[point_key] is not None:
        x, y = _scaled(item[point_key], 2, str(point_key), (fx, fy))
        points = (clamp_point(Point(x, y), image_size),)
    return ObjectPrompt(box=box, points=points)


def _scaled(value: Any, count: int, key: str, factors: tuple[float, ...]) -> list[int]:
    """The first `count` numbers of `value`, each as the reference scales it: int(v * factor + 0.5)."""
    if not isinstance(value, list) or len(value) < count:
        raise AnswerParseError(f"'{key}' must be a list of {count} numbers, got {_short(value)}")
    scaled = []
    for number, factor in zip(value[:count], factors, strict=True):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise AnswerParseError(f"'{key}' holds {_short(number)}, not a number")
        if not math.isfinite(number) or abs(number) > MAX_ABS_COORDINATE:
            raise AnswerParseError(f"'{key}' holds an out-of-range coordinate")
        scaled.append(int(number * factor + 0.5))
    return scaled
