"""Build reasoners, segmenters, trackers and pipelines from config: the composition root of the library.

Which backend a config names is looked up in the one registry (`segzero_ros.registry`, where backends and
plug-ins register); its factory is imported only then, so choosing the onnxruntime segmenter never imports
torch-heavy modules it does not need. The registration functions are re-exported here, the plug-in API::

    from segzero_ros.backends import register_segmenter
    register_segmenter("mine", "my_package.segmenter:MySegmenter.from_config", config=MySegmenterConfig)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segzero_ros.config import PipelineConfig, ReasonerConfig, SegmenterConfig, widen
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.base import Reasoner
from segzero_ros.registry import (
    Backend,
    Kind,
    backend,
    backends,
    load,
    register_reasoner,
    register_segmenter,
)
from segzero_ros.segmentation.base import Segmenter
from segzero_ros.tracking.base import Tracker, build_tracker


def _build(kind: Kind, config: Any) -> Any:
    record = backend(kind, config.backend)
    config = widen(config, record.config)
    if record.prepare is not None:
        config = load(record.prepare)(config)
    return load(record.factory)(config)


def build_reasoner(config: ReasonerConfig) -> Reasoner:
    reasoner: Reasoner = _build("reasoner", config)
    return reasoner


def build_segmenter(config: SegmenterConfig) -> Segmenter:
    segmenter: Segmenter = _build("segmenter", config)
    return segmenter


def build_pipeline(config: PipelineConfig, report: Callable[[str], None] | None = None) -> SegZeroPipeline:
    """A SegZeroPipeline from config; a segmenter that fails to load releases the loaded reasoner. `report`
    hears each step as it starts (the node shows it in its status)."""
    say = report or (lambda step: None)
    say(config.reasoner.loading_step())
    reasoner = build_reasoner(config.reasoner)
    try:
        say(config.segmenter.loading_step())
        segmenter = build_segmenter(config.segmenter)
    except BaseException:
        reasoner.close()
        raise
    return SegZeroPipeline(reasoner, segmenter)


__all__ = ["Backend", "Tracker", "backend", "backends", "build_pipeline", "build_reasoner", "build_segmenter",
           "build_tracker", "register_reasoner", "register_segmenter"]
