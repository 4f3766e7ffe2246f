"""The node driven with the real upstream `ros2` command line, the way the README and docs/ros.md tell users
to (`ros2 lifecycle`, `ros2 service call`, `ros2 topic pub`, `ros2 param set`), parsing what it prints.
Needs the ros2 CLI in .venv (scripts/setup with ../shared/ros-tools) or a ROS machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ros.harness import ros2_cli, skip_module_unless_ros_runtime, stop_ros2_daemon, wait_until

pytestmark = [pytest.mark.ros]
skip_module_unless_ros_runtime()

ROS2 = ros2_cli()

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus  # noqa: E402

DOMAIN_ID = 79
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ANSWER = ('<think>the mug</think><answer>{"bbox": [210, 210, 630, 630], "points_1": [380, 400], '
          '"points_2": [460, 450]}</answer>')
IMAGE_YAML = "{height: 2, width: 2, encoding: rgb8, step: 6, data: [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]}"


@pytest.fixture(scope="module")
def env():
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    yield env
    stop_ros2_daemon(ROS2, env)


@pytest.fixture(scope="module")
def node(tmp_path_factory, env):
    outputs = tmp_path_factory.mktemp("cli") / "outputs.json"
    outputs.write_text(json.dumps({"*": ANSWER}))
    executable = Path(sys.executable).parent / "segzero_node"
    log = tmp_path_factory.mktemp("cli") / "node.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(executable), "--ros-args", "-p", "reasoner.backend:=scripted", "-p", f"reasoner.model:={outputs}",
             "-p", "segmenter.backend:=box", "-p", "max_image_age_s:=0.0"],
            stdout=sink, stderr=subprocess.STDOUT, env=env)
    yield process, log
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def ros2(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROS2, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_a_user_session_with_the_ros2_cli(node, env, harness):
    process, log = node
    results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
    wait_until(lambda: "active [3]" in ros2(env, "lifecycle", "get", "/segzero").stdout, 60, "an active node")

    # The node's camera subscription is best effort: a single sample right after matching can be lost.
    status = harness.subscribe(SegZeroStatus, "/segzero/status", LATCHED)
    published = ros2(env, "topic", "pub", "-w", "1", "-t", "5", "-r", "10", "/image", "sensor_msgs/msg/Image",
                     IMAGE_YAML)
    assert published.returncode == 0, published.stderr
    status.wait_for(lambda m: m.images_received > 0, timeout=30)

    called = ros2(env, "service", "call", "/segzero/segment", "segzero_ros/srv/Segment",
                  "{command: 'the red mug', command_id: 'cli-1', include_mask: false}")
    assert called.returncode == 0, called.stderr
    assert "command_id='cli-1'" in called.stdout and "success=True" in called.stdout, called.stdout[-2000:]
    assert "mask_pixels=4" in called.stdout and len(called.stdout) < 20_000  # no mask bytes in the response

    refused = ros2(env, "param", "set", "/segzero", "queue_depth", "5000")
    assert "Setting parameter failed" in refused.stdout + refused.stderr
    assert "queue_depth out of range. Min: 0, Max: 1000" in refused.stdout + refused.stderr  # rclpy says it
    wrong_type = ros2(env, "param", "set", "/segzero", "queue_depth", "2.5")
    assert "queue_depth must be of type int, got float 2.5" in wrong_type.stdout + wrong_type.stderr
    described = ros2(env, "param", "describe", "/segzero", "autostart").stdout
    assert "Additional constraints: type bool; read at start-up" in described
    accepted = ros2(env, "param", "set", "/segzero", "queue_depth", "7")
    assert "Set parameter successful" in accepted.stdout
    assert "7" in ros2(env, "param", "get", "/segzero", "queue_depth").stdout
    integer = ros2(env, "param", "set", "/segzero", "max_image_age_s", "3")  # would retype the float parameter
    assert "max_image_age_s is a floating-point parameter: write 3.0" in integer.stdout + integer.stderr
    assert "Double value is: 0.0" in ros2(env, "param", "get", "/segzero", "max_image_age_s").stdout
    assert "Set parameter successful" in ros2(env, "param", "set", "/segzero", "max_image_age_s", "0.0").stdout

    goal = ros2(env, "action", "send_goal", "--feedback", "/segzero/segment", "segzero_ros/action/Segment",
                "{command: 'the red mug', command_id: 'cli-2', include_mask: false}")
    assert goal.returncode == 0, goal.stderr
    assert "Goal accepted" in goal.stdout and "Feedback:" in goal.stdout and "stage: queued" in goal.stdout
    assert "command_id: cli-2" in goal.stdout and "Goal finished with status: SUCCEEDED" in goal.stdout
    assert "mask_pixels: 4" in goal.stdout and len(goal.stdout) < 20_000, goal.stdout[-2000:]

    assert "Transitioning successful" in ros2(env, "lifecycle", "set", "/segzero", "deactivate").stdout
    assert "inactive [2]" in ros2(env, "lifecycle", "get", "/segzero").stdout
    sent = ros2(env, "topic", "pub", "--once", "-w", "1", "/segzero/command", "std_msgs/msg/String",
                "{data: 'while inactive'}")
    assert sent.returncode == 0, sent.stderr
    refused_command = results.wait_for(lambda m: m.command == "while inactive", timeout=30)
    assert (refused_command.error_kind, refused_command.error) == ("not_ready", "node is inactive, not active")
    assert process.poll() is None, log.read_text(errors="replace")
