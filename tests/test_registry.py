"""One record per backend: names, config classes, trackers, plug-in registration and what comes from it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from segzero_ros.backends import build_segmenter, register_segmenter
from segzero_ros.config import (
    OnnxRuntimeSegmenterConfig,
    ReasonerConfig,
    SegmenterConfig,
    TensorRTSegmenterConfig,
    TransformersReasonerConfig,
)
from segzero_ros.options import option
from segzero_ros.registry import backend, backends, config_for, load, section_options, unregister


def test_the_built_in_backends_and_their_config_classes():
    # (test modules register stand-in backends of their own after these)
    assert list(backends("reasoner"))[:3] == ["transformers", "scripted", "openai"]
    assert list(backends("segmenter"))[:4] == ["sam2", "box", "onnxruntime", "tensorrt"]
    assert backend("segmenter", "onnxruntime").config is OnnxRuntimeSegmenterConfig
    assert backend("reasoner", "transformers").config is TransformersReasonerConfig
    trackers = {name for name, entry in backends("segmenter").items() if entry.tracker is not None}
    assert trackers >= {"sam2", "onnxruntime", "tensorrt"} and "box" not in trackers
    # A dedicated config class names its own backend: built alone, it builds that backend.
    assert OnnxRuntimeSegmenterConfig().backend == "onnxruntime" and TensorRTSegmenterConfig().backend == "tensorrt"


def test_unknown_backends_are_refused_with_the_list():
    with pytest.raises(ValueError, match=r"unknown segmenter backend 'sam9'; available: box, .*onnxruntime, sam2, "):
        backend("segmenter", "sam9")


def test_a_base_config_is_widened_to_its_backends_class():
    widened = config_for("segmenter", SegmenterConfig(backend="onnxruntime", device="cpu"))
    assert type(widened) is OnnxRuntimeSegmenterConfig and widened.device == "cpu" and widened.precision == "auto"
    # An unset model takes the chosen backend's own default.
    assert config_for("reasoner", ReasonerConfig()).model == "Ricky06662/Seg-Zero-7B"
    assert config_for("reasoner", ReasonerConfig(backend="openai")).model is None


@dataclass(frozen=True)
class StripeConfig(SegmenterConfig):
    backend: str = option("stripe", "Segmenter backend.")
    width: int = option(1, "Stripe width.", minimum=1, maximum=9)


def test_one_registration_makes_a_backend_buildable_and_a_section_option():
    from segzero_ros.segmentation.box import BoxSegmenter

    record = register_segmenter(None, lambda config: BoxSegmenter(), config=StripeConfig)
    try:
        assert record.name == "stripe"  # from the config class's default
        assert build_segmenter(SegmenterConfig(backend="stripe")).name == "box"
        width = next(entry for entry in section_options("segmenter") if entry.name == "segmenter.width")
        assert width.readers == ("stripe",) and width.option.maximum == 9
        assert record.make_config(width=3, providers="ignored", model=None) == StripeConfig(width=3)
    finally:
        unregister("segmenter", "stripe")
    assert "stripe" not in backends("segmenter")


def test_registration_checks_the_config_class():
    with pytest.raises(TypeError, match="subclass of SegmenterConfig"):
        register_segmenter("odd", lambda config: None, config=ReasonerConfig)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty word"):
        register_segmenter(" ", lambda config: None)


def test_the_one_loader():
    assert load("segzero_ros.registry:load") is load
    assert load(len) is len
    with pytest.raises(ValueError, match="module:attribute"):
        load("segzero_ros.registry.load")
