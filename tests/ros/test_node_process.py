"""The installed `segzero_node` executable in its own process, with the shipped params file and the tiny
real models, talked to over Fast DDS from this process: what `ros2 launch segzero_ros segzero.launch.py`
starts on a robot, minus launch (launch_ros is not installable from PyPI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segzero_ros.tiny.qwen_vl import TINY_QWEN_DIRNAME
from tests.ros.harness import image_message, rgb_test_image, skip_module_unless_ros_runtime, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]
skip_module_unless_ros_runtime()

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

DOMAIN_ID = 72
REPO = Path(__file__).resolve().parents[2]
PARAMS_FILE = REPO / "config" / "segzero.yaml"
NODE_EXECUTABLE = Path(sys.executable).parent / "segzero_node"
CAMERA_TOPIC = "/camera/color/image_raw"
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
START_TIMEOUT_S = 150.0
"""Importing torch + transformers and loading the tiny models, on two busy cores."""


@pytest.fixture(scope="module")
def node_process(tiny_cache_root, tmp_path_factory):
    from segzero_ros.tiny import tiny_pipeline_config

    if not NODE_EXECUTABLE.exists():
        pytest.skip(f"{NODE_EXECUTABLE} is missing: pip install -e . first")
    config = tiny_pipeline_config(tiny_cache_root)
    overrides = {
        "reasoner.model": config.reasoner.model, "reasoner.device": "cpu", "reasoner.max_new_tokens": 128,
        "segmenter.config": config.segmenter.config, "segmenter.checkpoint": config.segmenter.checkpoint,
        "segmenter.image_size": config.segmenter.image_size, "segmenter.device": "cpu", "queue_depth": 3,
    }
    command = [str(NODE_EXECUTABLE), "--ros-args", "--params-file", str(PARAMS_FILE),
               "-r", f"image:={CAMERA_TOPIC}"]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    log_path = tmp_path_factory.mktemp("node") / "segzero_node.log"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    yield process, log_path
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


def test_node_process_answers_commands_over_dds(harness, node_process):
    process, log_path = node_process
    camera = harness.publisher(Image, CAMERA_TOPIC)
    commands = harness.publisher(String, "/segzero/command")
    results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
    masks = harness.subscribe(Image, "/segzero/mask")
    overlays = harness.subscribe(Image, "/segzero/overlay")
    reasoning = harness.subscribe(String, "/segzero/reasoning", 100)
    status = harness.subscribe(SegZeroStatus, "/segzero/status", STATUS_QOS)

    try:
        ready = status.wait_for(lambda m: m.ready, timeout=START_TIMEOUT_S)
    except AssertionError:
        raise AssertionError(f"node never became ready (exit code {process.poll()}):\n{_log(log_path)}") from None
    assert ready.lifecycle_state == "active"
    assert ready.queue_depth == 3  # -p on the command line overrides the params file
    assert ready.reasoner_name.endswith(TINY_QWEN_DIRNAME)

    # Until DDS has matched every endpoint a result may be missed: probe until one answer comes back.
    deadline = time.monotonic() + 30
    while not [m for m in results.messages if m.command == "probe"]:
        assert time.monotonic() < deadline, f"no result for the probe command:\n{_log(log_path)}"
        commands.publish(String(data="probe"))
        time.sleep(0.5)
    probe = results.wait_for(lambda m: m.command == "probe")
    assert probe.error_kind == "no_image" and CAMERA_TOPIC in probe.error  # the remap reached the node

    image = image_message(rgb_test_image(80, 60), sec=777, nanosec=1, frame_id="camera_color_optical_frame")
    wait_until(lambda: camera.get_subscription_count() >= 1, what="the node's camera subscription")
    deadline = time.monotonic() + 30
    while status.messages[-1].image_age_s < 0:  # the camera QoS is best effort: resend until it lands
        assert time.monotonic() < deadline, "the node never received an image"
        camera.publish(image)
        time.sleep(0.3)
    camera.publish(image)

    commands.publish(String(data="the red mug"))
    result = results.wait_for(lambda m: m.command == "the red mug", timeout=60)
    assert result.success, result.error
    header = (result.header.stamp.sec, result.header.stamp.nanosec, result.header.frame_id)
    assert header == (777, 1, "camera_color_optical_frame")
    assert (result.mask.width, result.mask.height, result.mask.encoding) == (80, 60, "mono8")

    mask = masks.wait_for()
    assert (mask.width, mask.height, mask.header.frame_id) == (80, 60, "camera_color_optical_frame")
    assert np.array_equal(np.frombuffer(mask.data, np.uint8), np.frombuffer(result.mask.data, np.uint8))
    overlay = overlays.wait_for()
    assert (overlay.width, overlay.height, overlay.encoding, overlay.header.stamp.sec) == (80, 60, "rgb8", 777)
    assert reasoning.wait_for().data == result.reasoning != ""
    time.sleep(0.3)
    assert sum(m.command == "the red mug" for m in results.messages) == 1


def test_the_planner_example_segments_a_picture_it_sends(node_process):
    """examples/planner_client.py as a user runs it: the public SegZeroClient, spinning its own node."""
    process, log_path = node_process
    assert process.poll() is None, _log(log_path)
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID))
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "planner_client.py"), "the thing I can cut bread with",
         "--image", str(REPO / "examples" / "kitchen.png"), "--timeout", str(START_TIMEOUT_S)],
        capture_output=True, text=True, env=env, timeout=START_TIMEOUT_S + 60, check=False)
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}\n{_log(log_path)}"
    assert completed.stdout.startswith("box [") and " px  score " in completed.stdout
    assert "reasoning: " in completed.stdout


def test_node_process_exits_cleanly_on_sigterm(node_process):
    """SIGTERM (docker stop, systemd, launch's escalation) ends the node as Ctrl-C does: models released, 0."""
    process, log_path = node_process
    assert process.poll() is None, _log(log_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, _log(log_path)
    assert "models released" in _log(log_path)
