"""The launch arguments that set node parameters (`tiny:=true`, `reasoner_model:=…`), for both launch files.

Only the short names are chosen here; each argument's type, check and help come from the option it sets
(`segzero_ros.ros.params`), so a launch argument cannot drift from the parameter. Free of rclpy and launch.
"""

from __future__ import annotations

from typing import Any

from segzero_ros.ros.params import parameters_by_name

PARAMETER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "autostart": ("autostart",),
    "reasoner_backend": ("reasoner.backend",),
    "reasoner_model": ("reasoner.model",),
    "answer_format": ("reasoner.answer_format",),
    "reasoner_base_url": ("reasoner.base_url",),
    "segmenter_backend": ("segmenter.backend",),
    "segmenter_model": ("segmenter.model",),
    "segmenter_config": ("segmenter.config",),
    "segmenter_checkpoint": ("segmenter.checkpoint",),
    "device": ("reasoner.device", "segmenter.device"),
    "reasoner_generation": ("reasoner.generation",),
    "reasoner_quantization": ("reasoner.quantization",),
    "max_reasoning_tokens": ("reasoner.max_reasoning_tokens",),
    "segmenter_compile": ("segmenter.compile",),
    "compressed_input": ("compressed_input",),
    "max_image_age_s": ("max_image_age_s",),
    "spatial": ("spatial.enabled",),
    "tracking": ("tracking.enabled",),
    "moveit": ("moveit.enabled",),
    "compressed_depth": ("spatial.compressed_depth",),
    "tiny": ("tiny",),
}
"""Launch argument → the node parameter(s) it sets when not empty."""


def argument_help(argument: str) -> str:
    """The parameter's own description, naming it; empty keeps the params file's value."""
    names = PARAMETER_ARGUMENTS[argument]
    parameter = parameters_by_name()[names[0]]
    return (f"{', '.join(names)}: {parameter.description} [{parameter.option.kind.__name__}; empty keeps the "
            "params file's value]")


def parameter_overrides(arguments: dict[str, str]) -> dict[str, Any]:
    """Node parameters from the non-empty launch arguments, typed and checked as the node declares them;
    ValueError naming the argument otherwise."""
    declared = parameters_by_name()
    overrides: dict[str, Any] = {}
    for argument, names in PARAMETER_ARGUMENTS.items():
        text = arguments.get(argument, "").strip()
        if not text:
            continue
        for name in names:
            option = declared[name].option
            try:
                value = option.coerce(text)
            except ValueError as exc:
                raise ValueError(f"launch argument {argument}: {exc}") from None
            problem = option.problem(name, value)
            if problem is not None:
                raise ValueError(f"launch argument {argument}: {problem}")
            overrides[name] = value
    return overrides
