"""The launch file: its argument → parameter mapping (always); its launch description and a real launch of
the shipped file under launch_testing (where launch, launch_ros and launch_testing exist: a ROS machine, or
.venv after scripts/setup with ../shared/ros-tools beside the checkout)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segzero_ros.ros.params import parameters_by_name, settings_from_parameters

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "segzero.launch.py"
LAUNCH_TEST = Path(__file__).resolve().parent / "segzero_launch_testing.py"
LAUNCH_DOMAIN_ID = 78


def _load_launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("segzero_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_overridden_parameter_exists_and_gets_its_declared_type():
    launch = _load_launch_module()
    for parameters in launch.PARAMETER_ARGUMENTS.values():
        assert set(parameters) <= set(parameters_by_name())
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
    with pytest.raises(ValueError, match="launch argument autostart: expected true or false, got 'maybe'"):
        launch.parameter_overrides({"autostart": "maybe"})
    with pytest.raises(ValueError, match="launch argument max_image_age_s: max_image_age_s must be >= 0"):
        launch.parameter_overrides({"max_image_age_s": "-1"})


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


def test_the_shipped_launch_file_under_launch_testing():
    """segzero_launch_testing.py through launch_testing's own runner: tiny:=true, use_rviz:=true without rviz2,
    a ready node, one result per command, and every process exiting with 0."""
    from tests.ros.harness import ros_runtime_skip_reason

    reason = ros_runtime_skip_reason()
    if reason:
        pytest.skip(reason)
    runner = Path(sys.executable).parent / "launch_test"
    if not runner.exists():
        pytest.skip("launch_testing is not installed (scripts/setup installs it from ../shared/ros-tools)")
    env = dict(os.environ, ROS_DOMAIN_ID=str(LAUNCH_DOMAIN_ID), PYTHONUNBUFFERED="1")
    completed = subprocess.run([str(runner), str(LAUNCH_TEST)], capture_output=True, text=True, env=env,
                               timeout=400, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    assert "rviz2 is not installed" in output  # warned, and the node started anyway
    assert output.count("... ok") == 2 and "process has finished cleanly" in output
