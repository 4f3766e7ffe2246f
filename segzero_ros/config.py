"""Typed configuration for reasoners, segmenters and the pipeline.

One dataclass per concern; the CLI, the YAML files under config/ and the ROS node's parameters all fill
these same objects, and `segzero_ros.backends` turns them into running models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

DEFAULT_REASONER_MODEL = "Ricky06662/Seg-Zero-7B"
DEFAULT_SAM2_MODEL = "facebook/sam2-hiera-large"


@dataclass
class ReasonerConfig:
    backend: str = "transformers"
    """Registered reasoner backend (see segzero_ros.backends.REASONER_BACKENDS)."""
    model: str = DEFAULT_REASONER_MODEL
    """Hugging Face model id or local folder."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N"."""
    dtype: str = "auto"
    """"auto" = bfloat16 on CUDA, float32 on CPU; or "bfloat16", "float16", "float32"."""
    max_new_tokens: int = 1024
    attn_implementation: str | None = None
    """e.g. "sdpa" or "flash_attention_2"; None lets transformers choose."""
    trust_remote_code: bool = False
    """Never needed for Qwen2.5-VL; kept off so a model folder cannot run its own code."""


@dataclass
class SegmenterConfig:
    backend: str = "sam2"
    """Registered segmenter backend (see segzero_ros.backends.SEGMENTER_BACKENDS)."""
    model: str = DEFAULT_SAM2_MODEL
    """Hugging Face model id of a SAM2 checkpoint; ignored when `checkpoint` is set."""
    config: str | None = None
    """sam2 package config name (e.g. configs/sam2.1/sam2.1_hiera_l.yaml); required with `checkpoint`."""
    checkpoint: str | None = None
    """Local SAM2 .pt checkpoint; None with a `model` id resolves through the hub cache."""
    image_size: int | None = None
    """Encoder input side; None keeps the config's (1024). Smaller sizes are for fast tests only."""
    device: str = "auto"
    multimask_output: bool = True
    onnx_dir: str | None = None
    """onnxruntime/tensorrt backends: folder from `segzero export-sam2` (graphs + sam2_onnx.json). None exports
    the SAM2 model named above once into the cache (needs torch + sam2 on that machine)."""
    precision: str = "auto"
    """onnxruntime/tensorrt backends: "fp32" or "fp16" graphs/engines; "auto" = fp16 for tensorrt, fp32 for
    onnxruntime (fp16 is slower on onnxruntime's CPU provider). "int8" (onnxruntime, CPU provider only): the
    fp32 encoder with int8 weights, derived into the cache on first use; ~2x faster on CPUs with VNNI/AMX
    but not parity-exact, so `auto` never picks it."""
    providers: str = ""
    """onnxruntime backend: comma-separated execution providers in priority order (e.g.
    "CUDAExecutionProvider,CPUExecutionProvider"); empty = chosen from `device`."""
    cpu_threads: int = 0
    """onnxruntime backend: intra-op threads on the CPU provider; 0 = onnxruntime's default (all cores)."""
    engine_cache_dir: str | None = None
    """tensorrt backend: folder for built engines and the timing cache; None = <cache root>/tensorrt
    ($SEGZERO_CACHE, else ~/.cache/segzero_ros)."""


@dataclass
class PipelineConfig:
    reasoner: ReasonerConfig = field(default_factory=ReasonerConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)


T = TypeVar("T")


def from_mapping(cls: type[T], values: dict[str, Any]) -> T:
    """Build a config dataclass from a plain mapping (YAML, ROS parameters), rejecting unknown keys."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a config dataclass")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        nested = known[name].default_factory  # type: ignore[misc]
        if isinstance(value, dict) and nested is not dataclasses.MISSING and dataclasses.is_dataclass(nested):
            kwargs[name] = from_mapping(nested, value)  # type: ignore[arg-type]
        else:
            kwargs[name] = value
    return cls(**kwargs)
