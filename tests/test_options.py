"""Options declared once: values read from text or YAML by their declaration, checked by their rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from segzero_ros.options import FlatOption, Option, check_options, flat_options, option


@pytest.mark.parametrize(("kind", "text", "value"), [
    (int, "3", 3), (int, " 1e3 ", 1000), (float, "1e-6", 1e-6), (float, "2", 2.0), (bool, "off", False),
    (bool, "True", True), (str, "  keep spaces ", "  keep spaces "),
])
def test_text_is_read_as_the_option_kind(kind, text, value):
    read = Option(None if kind is not str else "", "d", kind).coerce(text)
    assert read == value and type(read) is kind


@pytest.mark.parametrize(("kind", "value", "message"), [
    (int, "ten", "expected an integer, got 'ten'"), (int, 2.5, "expected an integer, got 2.5"),
    (int, True, "expected an integer, got True"), (float, "soon", "expected a number, got 'soon'"),
    (bool, "maybe", "expected true or false, got 'maybe'"), (str, ["a"], "expected a string"),
    (dict, "[1]", "expected a mapping"),
])
def test_unreadable_values_say_what_was_expected(kind, value, message):
    with pytest.raises(ValueError, match=message):
        Option(0, "d", kind).coerce(value)


def test_unset_applies_to_optional_options_only():
    optional = Option(None, "d", int)
    assert [optional.coerce(text) for text in ("", "none", "null", "~", None)] == [None] * 5
    with pytest.raises(ValueError):
        Option(1, "d", int).coerce("none")
    assert Option("x", "d", str).coerce("none") == "none"  # a required string keeps the word


def test_lists_read_their_items_and_are_checked_item_by_item():
    weights = Option(None, "d", list, items=float)
    assert weights.coerce("1, 2") == [1.0, 2.0] and weights.coerce("[1, 2.5]") == [1.0, 2.5]
    assert weights.coerce([3]) == [3.0] and weights.coerce("none") is None
    assert weights.problem("w", [1.0, "x"]) == "w must be a list of float, got 'x' in it"
    assert Option({}, "d", dict).coerce('{"top_k": 5}') == {"top_k": 5}


@dataclass(frozen=True)
class Example:
    count: int = option(2, "How many.", minimum=1, maximum=3)
    mode: str = option("a", "Which.", choices=("a", "b"), applies="live")
    names: list = option(["x"], "Names.", items=str)

    def __post_init__(self) -> None:
        check_options(self, "example.")


def test_rules_are_checked_where_the_config_is_made_and_list_defaults_are_not_shared():
    with pytest.raises(ValueError, match=r"example.count must be <= 3, got 4; example.mode must be one of a, b"):
        Example(count=4, mode="c")
    first, second = Example(), Example()
    assert first.names == ["x"] and first.names is not second.names
    flat = flat_options(Example, "example.")
    assert [entry.name for entry in flat] == ["example.count", "example.mode", "example.names"]
    assert flat[1].option.live and not flat[0].option.live


def test_a_flat_option_names_its_readers_in_its_description():
    info = Option(0, "Threads.", int)
    assert FlatOption("segmenter.cpu_threads", info).description == "Threads."
    assert FlatOption("segmenter.cpu_threads", info, ("onnxruntime",)).description == \
        "Threads. Read by the onnxruntime backend."
    assert FlatOption("x", info, ("a", "b")).description.endswith("Read by the a, b backends.")
