"""The node's parameter table and the shipped params file, checked without ROS."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from segzero_ros.config import (
    OnnxRuntimeSegmenterConfig,
    PipelineConfig,
    Sam2SegmenterConfig,
    SegmenterConfig,
    TensorRTSegmenterConfig,
    TransformersReasonerConfig,
)
from segzero_ros.ros.params import (
    DOCS_FILE,
    PARAMS_FILE,
    docs_with_table,
    ignored_parameters,
    node_parameters,
    parameters_by_name,
    parameters_yaml,
    settings_from_parameters,
    validate_value,
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_every_config_field_of_every_backend_is_a_node_parameter():
    from segzero_ros.registry import backends

    for section in ("reasoner", "segmenter"):
        for entry in backends(section).values():
            for field in dataclasses.fields(entry.config):
                assert f"{section}.{field.name}" in parameters_by_name()


def test_each_backend_gets_its_own_config_class_with_only_its_fields():
    onnx = settings_from_parameters({"segmenter.backend": "onnxruntime", "segmenter.cpu_threads": 2}).pipeline
    assert type(onnx.segmenter) is OnnxRuntimeSegmenterConfig and onnx.segmenter.cpu_threads == 2
    trt = settings_from_parameters({"segmenter.backend": "tensorrt"}).pipeline.segmenter
    assert type(trt) is TensorRTSegmenterConfig and not hasattr(trt, "cpu_threads")
    sam2 = settings_from_parameters({"segmenter.providers": "CPUExecutionProvider"}).pipeline.segmenter
    assert type(sam2) is Sam2SegmenterConfig and not hasattr(sam2, "providers")
    assert ignored_parameters({"segmenter.providers": "CPUExecutionProvider"}) == [
        "segmenter.providers (read by onnxruntime only)"]
    assert parameters_by_name()["segmenter.onnx_dir"].readers == ("onnxruntime", "tensorrt")
    assert "Read by the onnxruntime, tensorrt backends." in parameters_by_name()["segmenter.onnx_dir"].description


def test_configs_are_frozen_and_validated_where_they_are_made():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SegmenterConfig().device = "cpu"  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"segmenter.device must be auto, cpu, cuda or cuda:N; got 'mps'"):
        SegmenterConfig(device="mps")
    with pytest.raises(ValueError, match=r"reasoner.max_new_tokens must be >= 1, got 0"):
        TransformersReasonerConfig(max_new_tokens=0)


def test_generated_params_file_and_docs_table_are_checked_in():
    assert PARAMS_FILE.read_text(encoding="utf-8") == parameters_yaml(), \
        "config/segzero.yaml is stale: run `python -m segzero_ros.ros.params --write`"
    docs = DOCS_FILE.read_text(encoding="utf-8")
    assert docs == docs_with_table(docs), "docs/ros.md's parameter table is stale: run the same command"


def test_descriptions_say_when_a_parameter_applies():
    parameters = parameters_by_name()
    assert parameters["autostart"].option.constraints().endswith("read at start-up")
    assert parameters["queue_depth"].option.constraints() == "type int; 0 to 1000; changes live"
    assert parameters["segmenter.checkpoint"].option.constraints() == "type str; '' = unset; read at configure"


def test_defaults_are_the_library_defaults():
    settings = settings_from_parameters({})
    assert settings.pipeline == PipelineConfig()
    assert (settings.node.autostart, settings.node.queue_depth, settings.node.max_image_age_s) == (True, 4, 2.0)


def test_empty_strings_and_zero_size_mean_unset():
    settings = settings_from_parameters({
        "reasoner.attn_implementation": "", "segmenter.checkpoint": "", "segmenter.config": "",
        "segmenter.image_size": 0,
    })
    assert settings.pipeline.reasoner.attn_implementation is None
    assert settings.pipeline.segmenter.checkpoint is None and settings.pipeline.segmenter.config is None
    assert settings.pipeline.segmenter.image_size is None
    explicit = settings_from_parameters({"segmenter.image_size": 256, "segmenter.checkpoint": "/m/sam2.pt",
                                         "reasoner.device": "cuda:1"})
    assert explicit.pipeline.segmenter == Sam2SegmenterConfig(image_size=256, checkpoint="/m/sam2.pt")
    assert explicit.pipeline.reasoner == TransformersReasonerConfig(device="cuda:1")


def test_all_problems_are_reported_together():
    with pytest.raises(ValueError) as caught:
        settings_from_parameters({"queue_depth": -1, "reasoner.dtype": "int4", "segmenter.device": "gpu",
                                  "max_image_age_s": "soon"})
    message = str(caught.value)
    for expected in ("queue_depth must be >= 0", "reasoner.dtype must be one of auto, bfloat16, float16, float32",
                     "segmenter.device must be auto, cpu, cuda or cuda:N; got 'gpu'",
                     "max_image_age_s must be of type float, got str 'soon'"):
        assert expected in message


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("queue_depth", 1001, "queue_depth must be <= 1000"),
    ("queue_depth", True, "queue_depth must be of type int, got bool"),
    ("max_image_age_s", 3, None),  # Python callers may pass an int for a float (rclpy itself is stricter)
    ("reasoner.device", "cuda:0", None),
    ("reasoner.device", "cuda:x", "reasoner.device must be auto, cpu, cuda or cuda:N"),
    ("reasoner.backend", " ", "reasoner.backend must name a backend"),
    ("no.such", 1, "unknown parameter 'no.such'"),
])
def test_single_values(name, value, problem):
    outcome = validate_value(name, value)
    if problem is None:
        assert outcome is None
    else:
        assert outcome is not None and outcome.startswith(problem)


def test_shipped_params_file_declares_every_parameter_with_a_valid_value():
    document = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    values = _flatten(document["/**"]["ros__parameters"])
    assert set(values) == {parameter.name for parameter in node_parameters()}
    for parameter in node_parameters():  # ROS parameters are strictly typed: 2 is not a double
        assert type(values[parameter.name]) is parameter.option.kind, parameter.name
    assert settings_from_parameters(values) == settings_from_parameters({})


def test_every_parameter_is_documented():
    documentation = (Path(__file__).resolve().parents[2] / "docs" / "ros.md").read_text(encoding="utf-8")
    undocumented = [parameter.name for parameter in node_parameters()
                    if f"| `{parameter.name}` |" not in documentation]
    assert undocumented == []
