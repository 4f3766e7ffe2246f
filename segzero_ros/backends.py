"""Backend registry: a config's `backend` string → the factory that builds it.

Factories are referenced as "module:attribute" strings and imported only when used, so choosing the
onnxruntime segmenter never imports torch-heavy modules it does not need (and vice versa). Tests and
plug-ins add their own backends with `register_reasoner` / `register_segmenter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from segzero_ros.config import PipelineConfig, ReasonerConfig, SegmenterConfig
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.base import Reasoner
from segzero_ros.segmentation.base import Segmenter

ReasonerFactory = Callable[[ReasonerConfig], Reasoner]
SegmenterFactory = Callable[[SegmenterConfig], Segmenter]

REASONER_BACKENDS: dict[str, str | ReasonerFactory] = {
    "transformers": "segzero_ros.reasoning.transformers_backend:TransformersReasoner.from_config",
    "scripted": "segzero_ros.reasoning.scripted:ScriptedReasoner.from_config",
}
SEGMENTER_BACKENDS: dict[str, str | SegmenterFactory] = {
    "sam2": "segzero_ros.segmentation.sam2_backend:Sam2Segmenter.from_config",
    "box": "segzero_ros.segmentation.box:BoxSegmenter.from_config",
    "onnxruntime": "segzero_ros.segmentation.onnx_backend:OnnxRuntimeSegmenter.from_config",
    "tensorrt": "segzero_ros.segmentation.tensorrt_backend:TensorRTSegmenter.from_config",
}


def register_reasoner(name: str, factory: ReasonerFactory | str) -> None:
    REASONER_BACKENDS[name] = factory


def register_segmenter(name: str, factory: SegmenterFactory | str) -> None:
    SEGMENTER_BACKENDS[name] = factory


def _resolve(registry: dict[str, Any], name: str, kind: str) -> Callable[[Any], Any]:
    if name not in registry:
        raise ValueError(f"unknown {kind} backend {name!r}; available: {', '.join(sorted(registry))}")
    entry = registry[name]
    if callable(entry):
        return entry  # type: ignore[no-any-return]
    module_name, _, attribute_path = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        target = getattr(target, attribute)
    return target  # type: ignore[no-any-return]


def build_reasoner(config: ReasonerConfig) -> Reasoner:
    reasoner: Reasoner = _resolve(REASONER_BACKENDS, config.backend, "reasoner")(config)
    return reasoner


def build_segmenter(config: SegmenterConfig) -> Segmenter:
    segmenter: Segmenter = _resolve(SEGMENTER_BACKENDS, config.backend, "segmenter")(config)
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
