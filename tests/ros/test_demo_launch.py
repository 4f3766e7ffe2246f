"""The camera-less demo as a new user runs it: `ros2 launch segzero_ros demo.launch.py` (image source with the
package's example photo + the node with the tiny models), a command from `ros2 topic pub`, one result."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.ros.harness import ros2_cli, skip_module_unless_ros_runtime, stop_ros2_daemon

pytestmark = [pytest.mark.ros, pytest.mark.slow]
skip_module_unless_ros_runtime()

ROS2 = ros2_cli()

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus  # noqa: E402

DOMAIN_ID = 81
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_the_demo_launch_answers_a_command_on_the_example_photo(harness):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    status = harness.subscribe(SegZeroStatus, "/segzero/status", LATCHED)
    results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 10)
    launch = subprocess.Popen([ROS2, "launch", "segzero_ros", "demo.launch.py", "use_rviz:=false"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status.wait_for(lambda m: m.ready and m.images_received > 0, timeout=150)
        sent = subprocess.run([ROS2, "topic", "pub", "--once", "-w", "1", "/segzero/command", "std_msgs/msg/String",
                               "{data: 'the thing I can cut bread with'}"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert sent.returncode == 0, sent.stderr
        result = results.wait_for(lambda m: m.command == "the thing I can cut bread with", timeout=60)
        assert result.success, result.error
        assert (result.mask.width, result.mask.height) == (640, 480)  # examples/kitchen.png
        assert result.header.frame_id == "camera"
    finally:
        launch.send_signal(signal.SIGINT)
        output, _ = launch.communicate(timeout=60)
        stop_ros2_daemon(ROS2, env)
    assert launch.returncode == 0, output[-4000:]
    assert "MEANINGLESS" in output and "publishing" in output
