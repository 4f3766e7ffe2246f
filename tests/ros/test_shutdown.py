"""Shutdown as a robot needs it: `ros2 launch` killed with SIGTERM (what `docker stop` and systemd send) exits at
once without stopping its nodes (upstream ros2/launch#666); the node must not outlive it holding the GPU.
The real upstream launch system from ../shared/ros-tools, the shipped launch file, tiny models."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.ros.harness import ros2_cli, skip_module_unless_ros_runtime, stop_ros2_daemon, wait_until

pytestmark = [pytest.mark.ros]
skip_module_unless_ros_runtime()

ROS2 = ros2_cli()

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import SegZeroStatus  # noqa: E402

DOMAIN_ID = 84
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_ros2_launch_leaves_no_node_running(harness):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    status = harness.subscribe(SegZeroStatus, "/segzero/status", LATCHED)
    launch = subprocess.Popen([ROS2, "launch", "segzero_ros", "segzero.launch.py", "tiny:=true"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status.wait_for(timeout=120)  # the node is up: past its start-up, where it asks to exit with its parent
        nodes = [pid for pid in _children(launch.pid)
                 if b"segzero_node" in (Path("/proc") / str(pid) / "cmdline").read_bytes()]
        assert len(nodes) == 1, nodes
        launch.send_signal(signal.SIGTERM)
        launch.wait(timeout=30)
        started = time.monotonic()
        wait_until(lambda: not _alive(nodes[0]), timeout=20, what="segzero_node to exit after its launcher")
        print(f"node gone {time.monotonic() - started:.2f} s after the launcher")
        nodes_found = nodes[0]
    finally:
        if launch.poll() is None:
            launch.send_signal(signal.SIGINT)
        output = launch.communicate(timeout=60)[0]
        stop_ros2_daemon(ROS2, env)
    assert f"process started with pid [{nodes_found}]" in output, output[-3000:]
