"""Backend registry: a config's `backend` string → its config class and the factory that builds it.

The composition root of the library: the one module that may import any backend (lazily). Factories and
preparation steps are "module:attribute" strings imported only when used, so choosing the onnxruntime
segmenter never imports torch-heavy modules it does not need. Tests and plug-ins add their own backends with
`register_reasoner` / `register_segmenter`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from segzero_ros.config import (
    OnnxRuntimeSegmenterConfig,
    OpenAIReasonerConfig,
    PipelineConfig,
    ReasonerConfig,
    SegmenterConfig,
    TensorRTSegmenterConfig,
    TransformersReasonerConfig,
    widen,
)
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.base import Reasoner
from segzero_ros.segmentation.base import Segmenter

C = TypeVar("C")


@dataclass(frozen=True)
class Backend(Generic[C]):
    factory: str | Callable[[Any], Any]
    """Builds the model from its config: a callable or "module:attribute.path"."""
    config: type[C]
    """The config class this backend reads; a base-class config naming the backend is widened to it."""
    prepare: str | Callable[[Any], Any] | None = None
    """Optional config → config step run before the factory (e.g. export graphs the backend needs)."""


REASONER_BACKENDS: dict[str, Backend[ReasonerConfig]] = {
    "transformers": Backend("segzero_ros.reasoning.transformers_backend:TransformersReasoner.from_config",
                            TransformersReasonerConfig),
    "scripted": Backend("segzero_ros.reasoning.scripted:ScriptedReasoner.from_config", ReasonerConfig),
    "openai": Backend("segzero_ros.reasoning.openai_backend:OpenAIReasoner.from_config", OpenAIReasonerConfig),
}
SEGMENTER_BACKENDS: dict[str, Backend[SegmenterConfig]] = {
    "sam2": Backend("segzero_ros.segmentation.sam2_backend:Sam2Segmenter.from_config", SegmenterConfig),
    "box": Backend("segzero_ros.segmentation.box:BoxSegmenter.from_config", SegmenterConfig),
    "onnxruntime": Backend("segzero_ros.segmentation.onnx_backend:OnnxRuntimeSegmenter.from_config",
                           OnnxRuntimeSegmenterConfig, prepare="segzero_ros.export.onnx_export:with_exported_graphs"),
    "tensorrt": Backend("segzero_ros.segmentation.tensorrt_backend:TensorRTSegmenter.from_config",
                        TensorRTSegmenterConfig, prepare="segzero_ros.export.onnx_export:with_exported_graphs"),
}


def register_reasoner(name: str, factory: str | Callable[[Any], Reasoner],
                      config: type[ReasonerConfig] = ReasonerConfig) -> None:
    REASONER_BACKENDS[name] = Backend(factory, config)


def register_segmenter(name: str, factory: str | Callable[[Any], Segmenter],
                       config: type[SegmenterConfig] = SegmenterConfig) -> None:
    SEGMENTER_BACKENDS[name] = Backend(factory, config)


def backend_entry(registry: dict[str, Backend[C]], name: str, kind: str) -> Backend[C]:
    if name not in registry:
        raise ValueError(f"unknown {kind} backend {name!r}; available: {', '.join(sorted(registry))}")
    return registry[name]


def reasoner_config(config: ReasonerConfig) -> ReasonerConfig:
    """`config` as its backend's own config class (validated)."""
    return widen(config, backend_entry(REASONER_BACKENDS, config.backend, "reasoner").config)


def segmenter_config(config: SegmenterConfig) -> SegmenterConfig:
    return widen(config, backend_entry(SEGMENTER_BACKENDS, config.backend, "segmenter").config)


def _config_for(registry: dict[str, Backend[C]], backend: str, kind: str, values: dict[str, Any]) -> C:
    cls = backend_entry(registry, backend, kind).config
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in values.items() if k in names and v is not None}
    config: C = cls(backend=backend, **kwargs)  # type: ignore[call-arg]
    return config


def reasoner_config_for(backend: str, **values: Any) -> ReasonerConfig:
    """The config of reasoner `backend` from option values by field name; None and the fields this backend
    does not read are left out (so a command line can offer every backend's flags)."""
    return _config_for(REASONER_BACKENDS, backend, "reasoner", values)


def segmenter_config_for(backend: str, **values: Any) -> SegmenterConfig:
    """Like reasoner_config_for, for segmenters."""
    return _config_for(SEGMENTER_BACKENDS, backend, "segmenter", values)


def _load(entry: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    if callable(entry):
        return entry
    module_name, _, attribute_path = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        target = getattr(target, attribute)
    return target  # type: ignore[no-any-return]


def _build(registry: dict[str, Backend[Any]], config: Any, kind: str) -> Any:
    entry = backend_entry(registry, config.backend, kind)
    config = widen(config, entry.config)
    if entry.prepare is not None:
        config = _load(entry.prepare)(config)
    return _load(entry.factory)(config)


def build_reasoner(config: ReasonerConfig) -> Reasoner:
    reasoner: Reasoner = _build(REASONER_BACKENDS, config, "reasoner")
    return reasoner


def build_segmenter(config: SegmenterConfig) -> Segmenter:
    segmenter: Segmenter = _build(SEGMENTER_BACKENDS, config, "segmenter")
    return segmenter


def build_pipeline(config: PipelineConfig) -> SegZeroPipeline:
    """A SegZeroPipeline from config; a segmenter that fails to load releases the loaded reasoner."""
    reasoner = build_reasoner(config.reasoner)
    try:
        segmenter = build_segmenter(config.segmenter)
    except BaseException:
        reasoner.close()
        raise
    return SegZeroPipeline(reasoner, segmenter)
