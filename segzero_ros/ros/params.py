"""The node's parameters: one typed table, validated into NodeSettings before anything is loaded.

Kept free of rclpy so the table, its defaults and the validation are testable (and importable by docs
tooling) without ROS. The node declares every entry with its type, description and range; the names of
the model parameters mirror segzero_ros.config (`reasoner.model` ↔ ReasonerConfig.model).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segzero_ros.config import PipelineConfig, ReasonerConfig, SegmenterConfig

ParamValue = bool | int | float | str


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: ParamValue
    description: str
    minimum: float | None = None
    """Inclusive; declared as the parameter's range so ROS itself rejects values outside it."""
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    """Allowed values for a string parameter; empty = any string."""
    runtime: bool = False
    """True: may change while the node runs; False: read at configure (reconfigure to apply)."""

    @property
    def type(self) -> type:
        return type(self.default)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_DTYPES = ("auto", "bfloat16", "float16", "float32")
_REASONER = ReasonerConfig()
_SEGMENTER = SegmenterConfig()

NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True,
              "Configure and activate on start-up; false leaves the node unconfigured for a lifecycle manager."),
    ParamSpec("queue_depth", 4,
              "Commands that may wait behind the running one; more fail at once with queue_full.",
              minimum=0, maximum=1000, runtime=True),
    ParamSpec("max_image_age_s", 2.0,
              "Newest camera image must have arrived at most this many seconds before the command "
              "(else stale_image); 0 = any age.", minimum=0.0, maximum=3600.0, runtime=True),
    ParamSpec("compressed_input", False,
              "Subscribe to sensor_msgs/CompressedImage on 'image/compressed' instead of raw 'image'."),
    ParamSpec("publish_overlay", True,
              "Draw ~/overlay (mask tint, box, points) when someone subscribes to it.", runtime=True),
    ParamSpec("max_image_pixels", 33_554_432,
              "Camera images with more pixels (width × height) are refused and counted as unusable, so one huge "
              "frame cannot exhaust memory; the default admits 8K UHD (7680×4320).",
              minimum=1, maximum=2**31 - 1, runtime=True),
    ParamSpec("inference_timeout_s", 60.0,
              "A command whose inference runs longer is answered with error_kind timeout; until the stuck model "
              "call returns, the node reports `stuck` and refuses commands (not_ready). 0 = no limit.",
              minimum=0.0, maximum=86400.0, runtime=True),
    ParamSpec("status_period_s", 1.0,
              "Period of ~/status and /diagnostics updates (they are also sent on every change).",
              minimum=0.05, maximum=3600.0),
    ParamSpec("reasoner.backend", _REASONER.backend,
              "Reasoner backend registered in segzero_ros.backends (transformers, scripted, …)."),
    ParamSpec("reasoner.model", _REASONER.model, "Hugging Face model id or local model folder."),
    ParamSpec("reasoner.device", _REASONER.device, "auto, cpu, cuda or cuda:N."),
    ParamSpec("reasoner.dtype", _REASONER.dtype,
              "auto (bfloat16 on CUDA, float32 on CPU), bfloat16, float16 or float32.", choices=_DTYPES),
    ParamSpec("reasoner.max_new_tokens", _REASONER.max_new_tokens,
              "Generation limit; Seg-Zero answers usually take 100-200 tokens.", minimum=1, maximum=32768),
    ParamSpec("reasoner.attn_implementation", "",
              "Attention kernel, e.g. sdpa or flash_attention_2; empty lets transformers choose."),
    ParamSpec("reasoner.trust_remote_code", _REASONER.trust_remote_code,
              "Allow a model folder to run its own Python code (never needed for Qwen2.5-VL)."),
    ParamSpec("segmenter.backend", _SEGMENTER.backend,
              "Segmenter backend registered in segzero_ros.backends (sam2, onnxruntime, tensorrt, box, …)."),
    ParamSpec("segmenter.model", _SEGMENTER.model,
              "Hugging Face id of a SAM2 checkpoint; ignored when segmenter.checkpoint is set."),
    ParamSpec("segmenter.config", "",
              "sam2 config name (e.g. configs/sam2.1/sam2.1_hiera_l.yaml), needed with a checkpoint file."),
    ParamSpec("segmenter.checkpoint", "", "Local SAM2 .pt checkpoint; empty resolves segmenter.model."),
    ParamSpec("segmenter.image_size", 0,
              "Encoder input side in pixels; 0 keeps the model's own (1024).", minimum=0, maximum=4096),
    ParamSpec("segmenter.device", _SEGMENTER.device, "auto, cpu, cuda or cuda:N."),
    ParamSpec("segmenter.multimask_output", _SEGMENTER.multimask_output,
              "Let SAM2 propose three masks and keep the best-scoring one (Seg-Zero's setting)."),
    ParamSpec("segmenter.onnx_dir", "",
              "onnxruntime/tensorrt backends: folder from `segzero export-sam2`; empty exports segmenter.model "
              "once into the cache."),
    ParamSpec("segmenter.precision", _SEGMENTER.precision,
              "onnxruntime/tensorrt backends: fp32 or fp16; auto = fp16 for tensorrt, fp32 for onnxruntime; "
              "int8 = onnxruntime CPU only, int8 encoder weights (faster, not parity-exact).",
              choices=("auto", "fp32", "fp16", "int8")),
    ParamSpec("segmenter.providers", _SEGMENTER.providers,
              "onnxruntime backend: comma-separated execution providers in priority order; empty = from device."),
    ParamSpec("segmenter.cpu_threads", _SEGMENTER.cpu_threads,
              "onnxruntime backend: CPU intra-op threads; 0 = onnxruntime's default.", minimum=0, maximum=1024),
    ParamSpec("segmenter.engine_cache_dir", "",
              "tensorrt backend: folder for built engines; empty = <cache root>/tensorrt."),
)
"""Every parameter the node declares, in declaration order."""

SPECS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in NODE_PARAMETERS}

_OPTIONAL_STRINGS = {
    "reasoner.attn_implementation", "segmenter.config", "segmenter.checkpoint", "segmenter.onnx_dir",
    "segmenter.engine_cache_dir",
}
"""Config fields that are None when unset; as ROS parameters they are "" (ROS has no null)."""
_OPTIONAL_ZERO_INTS = {"segmenter.image_size"}


@dataclass(frozen=True)
class NodeSettings:
    pipeline: PipelineConfig
    autostart: bool
    queue_depth: int
    max_image_age_s: float
    compressed_input: bool
    publish_overlay: bool
    status_period_s: float
    max_image_pixels: int
    inference_timeout_s: float


def validate_value(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `name`, or None. Mirrors what the ROS declaration
    enforces (type, range) and adds what it cannot express (choices, device syntax)."""
    spec = SPECS_BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not spec.type:
        return f"{name} must be of type {spec.type.__name__}, got {type(value).__name__} {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            return f"{name} must be >= {spec.minimum}, got {value!r}"
        if spec.maximum is not None and value > spec.maximum:
            return f"{name} must be <= {spec.maximum}, got {value!r}"
    if isinstance(value, str):
        if spec.choices and value not in spec.choices:
            return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
        if name.endswith(".device") and not _DEVICE.match(value):
            return f"{name} must be auto, cpu, mps, cuda or cuda:N; got {value!r}"
        if name.endswith(".backend") and not value.strip():
            return f"{name} must name a backend"
    return None


def parameter_problems(values: Mapping[str, Any]) -> list[str]:
    """Every reason the given parameter values are unacceptable (empty when all are fine)."""
    return [problem for name, value in values.items() if (problem := validate_value(name, value))]


def settings_from_parameters(values: Mapping[str, Any]) -> NodeSettings:
    """NodeSettings from parameter values (missing names take their defaults); ValueError lists every problem."""
    merged = {spec.name: spec.default for spec in NODE_PARAMETERS}
    merged.update(values)
    problems = parameter_problems(merged)
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))

    sections: dict[str, dict[str, Any]] = {"reasoner": {}, "segmenter": {}}
    for name, value in merged.items():
        section, _, field_name = name.partition(".")
        if section not in sections:
            continue
        unset = (name in _OPTIONAL_STRINGS and value == "") or (name in _OPTIONAL_ZERO_INTS and value == 0)
        sections[section][field_name] = None if unset else value
    return NodeSettings(
        pipeline=PipelineConfig(
            reasoner=ReasonerConfig(**sections["reasoner"]),
            segmenter=SegmenterConfig(**sections["segmenter"]),
        ),
        autostart=bool(merged["autostart"]),
        queue_depth=int(merged["queue_depth"]),
        max_image_age_s=float(merged["max_image_age_s"]),
        compressed_input=bool(merged["compressed_input"]),
        publish_overlay=bool(merged["publish_overlay"]),
        status_period_s=float(merged["status_period_s"]),
        max_image_pixels=int(merged["max_image_pixels"]),
        inference_timeout_s=float(merged["inference_timeout_s"]),
    )


def config_fields_without_parameter() -> list[str]:
    """Pipeline config fields the node cannot set; kept empty by a test so new fields get a parameter."""
    missing = []
    for section, cls in (("reasoner", ReasonerConfig), ("segmenter", SegmenterConfig)):
        for config_field in dataclasses.fields(cls):
            if f"{section}.{config_field.name}" not in SPECS_BY_NAME:
                missing.append(f"{section}.{config_field.name}")
    return missing
