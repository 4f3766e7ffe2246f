"""Tiny real-architecture models built offline from configs: for tests and for proving an install works.

They have the real Qwen2.5-VL / Qwen3-VL and SAM2 / SAM3-tracker / EdgeTAM code paths but random (or barely
trained) weights, so their masks mean nothing. Built once into a cache folder keyed by the recipe version.
"""

from __future__ import annotations

from pathlib import Path

from segzero_ros.config import PipelineConfig, ReasonerConfig, SegmenterConfig, TransformersReasonerConfig
from segzero_ros.files import default_cache_root
from segzero_ros.registry import backend

__all__ = ["TINY_WARNING", "default_cache_root", "tiny_pipeline_config"]

TINY_WARNING = "tiny offline models: the pipeline runs end to end, but masks and reasoning are meaningless"


def tiny_pipeline_config(cache_root: Path | None = None, device: str = "cpu", family: str = "auto",
                         segmenter: str = "sam2", reasoner: str = "transformers", **segmenter_options: object
                         ) -> PipelineConfig:
    """Pipeline config pointing at the tiny models, building them first if needed (~tens of seconds once): the
    reasoner of backend `reasoner` (sam3_concept: the tiny SAM3's detector; any other: the transformers reasoner
    on the tiny Qwen of `family`, qwen2_5_vl by default or qwen3_vl) and the segmenter of backend `segmenter`."""
    from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen
    from segzero_ros.tiny.sam_transformers import ensure_tiny_sam

    root = cache_root or default_cache_root()
    if reasoner == "sam3_concept":
        reasoner_config = backend("reasoner", reasoner).make_config(model=str(ensure_tiny_sam(reasoner, root)),
                                                                    device=device)
    else:  # transformers, and the backends with no model of their own to shrink (openai, scripted, plug-ins)
        chosen = "qwen2_5_vl" if family == "auto" else family
        reasoner_config = TransformersReasonerConfig(model=str(ensure_tiny_qwen(root, chosen)), device=device)
    assert isinstance(reasoner_config, ReasonerConfig)
    return PipelineConfig(reasoner=reasoner_config, segmenter=tiny_segmenter_config(segmenter, root, device,
                                                                                    **segmenter_options))


def tiny_segmenter_config(segmenter: str = "sam2", cache_root: Path | None = None, device: str = "cpu",
                          **options: object) -> SegmenterConfig:
    """The config of segmenter backend `segmenter` loading a tiny model: its own (sam3, edgetam), else the tiny
    SAM2 (sam2 itself and the backends that run SAM2's exported graphs); `options` are the backend's other
    fields."""
    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2
    from segzero_ros.tiny.sam_transformers import RECIPES, ensure_tiny_sam

    root = cache_root or default_cache_root()
    if segmenter in RECIPES:
        config = backend("segmenter", segmenter).make_config(model=str(ensure_tiny_sam(segmenter, root)), device=device,
                                                             **options)
        assert isinstance(config, SegmenterConfig)
        return config
    return ensure_tiny_sam2(root).segmenter_config(device=device, backend=segmenter, **options)
