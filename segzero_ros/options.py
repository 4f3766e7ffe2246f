"""Options declared once: a dataclass field with its description, range or choices, and when it applies.

Config dataclasses declare each field with :func:`option`; everything else is derived from that one place:
validation (:func:`check_options`, called from `__post_init__`), reading values written as text or YAML
(:meth:`Option.coerce`: command-line flags, `key=value` overrides, recipes), the ROS parameter declarations,
the `segzero infer` / `eval` model flags, the checked-in `config/segzero.yaml` and the parameter table in
docs/ros.md. No ROS and no torch here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

OptionValue = bool | int | float | str
APPLIES = ("live", "configure", "start-up")
SCALAR_KINDS = (bool, int, float, str)
"""What a ROS parameter or a command-line flag can hold; list and dict options exist for recipes only."""
_KEY = "segzero_option"
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_UNSET = {"", "none", "null", "~"}


@dataclass(frozen=True)
class Option:
    default: OptionValue | None
    description: str
    kind: type
    """bool, int, float or str (list and dict for options that are never ROS parameters)."""
    minimum: float | None = None
    maximum: float | None = None
    """Inclusive; ROS declares them as the parameter's range, so ROS itself refuses values outside."""
    choices: tuple[str, ...] = ()
    pattern: str = ""
    """A regular expression a string value must match in full (e.g. device names)."""
    pattern_hint: str = ""
    """What the pattern allows, in words, for error messages."""
    applies: str = "configure"
    """When a change takes effect: "live" (at once), "configure" (read at configure: reconfigure to apply) or
    "start-up" (read once when the process starts)."""
    items: type | None = None
    """The kind of a list option's items."""

    @property
    def live(self) -> bool:
        return self.applies == "live"

    @property
    def optional(self) -> bool:
        """None means "unset"; ROS has no null, so its parameter uses "" (strings) or 0 (numbers)."""
        return self.default is None

    @property
    def flat_default(self) -> OptionValue:
        """The default as a ROS parameter or YAML scalar."""
        if self.default is not None:
            return self.default
        unset: dict[type, OptionValue] = {str: "", int: 0, float: 0.0, bool: False}
        return unset[self.kind]

    def from_flat(self, value: OptionValue) -> OptionValue | None:
        """A ROS/YAML scalar back to the field value ("" or 0 → None for optional fields)."""
        if self.optional and value == self.flat_default and not isinstance(value, bool):
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def coerce(self, value: object) -> Any:
        """`value` as written in YAML or on a command line (a string), converted to this option's kind;
        ValueError saying what was expected. Range and choices are :meth:`problem`'s."""
        if value is None or (self.optional and isinstance(value, str) and value.strip().lower() in _UNSET):
            return None  # an optional option's "", none, null or ~ is unset
        return _coerce(value, self.kind, self.items)

    def problem(self, name: str, value: object) -> str | None:
        """Why `value` is unacceptable for the option called `name`, or None."""
        if value is None:
            return None if self.optional else f"{name} must be set"
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            return f"{name} must be of type {self.kind.__name__}, got {type(value).__name__} {value!r}"
        if isinstance(value, list) and self.items is not None:
            wrong = [item for item in value if not _is_kind(item, self.items)]
            if wrong:
                return f"{name} must be a list of {self.items.__name__}, got {wrong[0]!r} in it"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{name} must be >= {format_number(self.minimum)}, got {value!r}"
            if self.maximum is not None and value > self.maximum:
                return f"{name} must be <= {format_number(self.maximum)}, got {value!r}"
        if isinstance(value, str):
            if self.choices and value not in self.choices:
                return f"{name} must be one of {', '.join(self.choices)}; got {value!r}"
            if self.pattern and not re.fullmatch(self.pattern, value):
                return f"{name} must be {self.pattern_hint or self.pattern}; got {value!r}"
        return None

    def constraints(self) -> str:
        """The rule in words (types and ranges are shown by ROS itself; this adds the rest)."""
        parts = [f"type {self.kind.__name__}"]
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{format_number(self.minimum)} to {format_number(self.maximum)}")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.pattern_hint:
            parts.append(self.pattern_hint)
        if self.optional:
            parts.append(f"{self.flat_default!r} = unset")
        parts.append({"live": "changes live", "configure": "read at configure"}.get(self.applies,
                                                                                   "read at " + self.applies))
        return "; ".join(parts)


@dataclass(frozen=True)
class FlatOption:
    """An option under its flat name (`queue_depth`, `segmenter.precision`): what a ROS parameter, a
    command-line flag and a line of the generated params file and docs table are made from."""

    name: str
    option: Option
    readers: tuple[str, ...] = ()
    """The backends that read it when not every backend of its section does; empty = all (or the node)."""

    @property
    def description(self) -> str:
        """The description, and which backends read it when not all do."""
        if not self.readers:
            return self.option.description
        plural = "s" if len(self.readers) > 1 else ""
        return f"{self.option.description} Read by the {', '.join(self.readers)} backend{plural}."

    def problem(self, value: object) -> str | None:
        return self.option.problem(self.name, value)


def flat_options(cls: Any, prefix: str = "") -> list[FlatOption]:
    """The options of a config dataclass under `prefix` + field name."""
    return [FlatOption(prefix + name, info) for name, info in options_of(cls).items()]


def option(default: Any, description: str, *, kind: type | None = None,
           minimum: float | None = None, maximum: float | None = None, choices: tuple[str, ...] = (),
           pattern: str = "", pattern_hint: str = "", applies: str = "configure", items: type | None = None) -> Any:
    """A dataclass field declaring one option. `kind` is needed only when the default is None; a list option
    names its `items` kind (its default is copied for each instance)."""
    resolved = kind if kind is not None else type(default)
    if resolved not in (*SCALAR_KINDS, list, dict):
        raise TypeError(f"option kind must be bool, int, float, str, list or dict, not {resolved!r}")
    if applies not in APPLIES:
        raise ValueError(f"applies must be one of {', '.join(APPLIES)}, not {applies!r}")
    info = Option(default, description, resolved, minimum, maximum, choices, pattern, pattern_hint, applies, items)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={_KEY: info})
    return dataclasses.field(default=default, metadata={_KEY: info})


def _is_kind(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return type(value) is kind


def _coerce(value: object, kind: type, items: type | None) -> Any:
    """One value from YAML or text as `kind` (see Option.coerce)."""
    text = value.strip() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if kind in (int, float):
        number: object = None if isinstance(value, bool) else value
        if text is not None:
            try:
                number = float(text) if kind is float or any(c in text for c in ".eE") else int(text)
            except ValueError:
                number = None
        if kind is float and isinstance(number, (int, float)):
            return float(number)
        if kind is int and isinstance(number, int):
            return number
        if kind is int and isinstance(number, float) and number.is_integer():
            return int(number)
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    if kind is list:
        if text is not None:
            value = json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",")
                                                                    if part.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [item if items is None else _coerce(item, items, None) for item in value]
    if kind is dict:
        if text is not None:
            value = json.loads(text) if text else {}
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(f"expected a mapping, got {value!r}")
    raise ValueError(f"expected {kind.__name__}, got {value!r}")


def options_of(cls_or_instance: Any) -> dict[str, Option]:
    """The declared options of a config dataclass, by field name, in declaration order."""
    return {f.name: f.metadata[_KEY] for f in dataclasses.fields(cls_or_instance) if _KEY in f.metadata}


def check_options(instance: Any, prefix: str = "") -> None:
    """Raise ValueError listing every field of `instance` that breaks its declared rule."""
    problems = [problem for name, info in options_of(instance).items()
                if (problem := info.problem(prefix + name, getattr(instance, name))) is not None]
    if problems:
        raise ValueError("; ".join(problems))


def format_number(value: float) -> str:
    """1.0 → '1', 0.05 → '0.05': how ranges are written in messages, the params file and the docs."""
    return str(int(value)) if float(value).is_integer() else repr(value)


DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
DEVICE_HINT = "auto, cpu, cuda or cuda:N"
