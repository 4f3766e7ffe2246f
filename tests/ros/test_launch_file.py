"""The launch file: its argument → parameter mapping (always), its launch description (where launch_ros exists).

launch_ros is not on PyPI, so the description test runs on a ROS machine only; the node it starts is
covered by test_node_process.py, which runs the same executable with the same params file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from segzero_ros.ros.params import SPECS_BY_NAME, settings_from_parameters

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "segzero.launch.py"


def _load_launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("segzero_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_overridden_parameter_exists_and_gets_its_declared_type():
    launch = _load_launch_module()
    for parameters in launch.PARAMETER_ARGUMENTS.values():
        assert set(parameters) <= set(SPECS_BY_NAME)
    overrides = launch.parameter_overrides({
        "autostart": "False", "device": "cuda:1", "reasoner_model": "/models/Seg-Zero-7B",
        "max_image_age_s": "0.5", "compressed_input": "true", "segmenter_model": "",
    })
    assert overrides == {
        "autostart": False, "reasoner.device": "cuda:1", "segmenter.device": "cuda:1",
        "reasoner.model": "/models/Seg-Zero-7B", "max_image_age_s": 0.5, "compressed_input": True,
    }
    settings = settings_from_parameters(overrides)  # types and values the node accepts
    assert settings.pipeline.segmenter.device == "cuda:1" and not settings.node.autostart
    with pytest.raises(ValueError, match="autostart must be true or false"):
        launch.parameter_overrides({"autostart": "yes"})


def test_launch_description_declares_every_argument():
    pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI; runs on a ROS machine")
    pytest.importorskip("ament_index_python")
    from launch.actions import DeclareLaunchArgument

    try:
        description = _load_launch_module().generate_launch_description()
    except LookupError:  # PackageNotFoundError: segzero_ros is not in this ROS environment
        pytest.skip("segzero_ros is not installed in the ROS environment (colcon build first)")
    declared = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert declared >= {"image", "params_file", "use_rviz", *_load_launch_module().PARAMETER_ARGUMENTS}
