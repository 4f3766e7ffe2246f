"""Options declared once: a dataclass field with its description, range or choices, and when it applies.

Config dataclasses declare each field with :func:`option`; everything else is derived from that one place:
validation (:func:`check_options`, called from `__post_init__`), the ROS parameter declarations, the
checked-in `config/segzero.yaml` and the parameter table in docs/ros.md (`segzero_ros.ros.params`).
No ROS and no torch here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

OptionValue = bool | int | float | str
APPLIES = ("live", "configure", "start-up")
_KEY = "segzero_option"


@dataclass(frozen=True)
class Option:
    default: OptionValue | None
    description: str
    kind: type
    """bool, int, float or str."""
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

    def problem(self, name: str, value: object) -> str | None:
        """Why `value` is unacceptable for the option called `name`, or None."""
        if value is None:
            return None if self.optional else f"{name} must be set"
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            return f"{name} must be of type {self.kind.__name__}, got {type(value).__name__} {value!r}"
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


def option(default: OptionValue | None, description: str, *, kind: type | None = None,
           minimum: float | None = None, maximum: float | None = None, choices: tuple[str, ...] = (),
           pattern: str = "", pattern_hint: str = "", live: bool = False, applies: str = "") -> Any:
    """A dataclass field declaring one option. `kind` is needed only when the default is None."""
    resolved = kind if kind is not None else type(default)
    if resolved not in (bool, int, float, str):
        raise TypeError(f"option kind must be bool, int, float or str, not {resolved!r}")
    when = applies or ("live" if live else "configure")
    if when not in APPLIES:
        raise ValueError(f"applies must be one of {', '.join(APPLIES)}, not {when!r}")
    info = Option(default, description, resolved, minimum, maximum, choices, pattern, pattern_hint, when)
    return dataclasses.field(default=default, metadata={_KEY: info})


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
