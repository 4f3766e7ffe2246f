"""Helpers for tests that talk to the node over real DDS.

Such tests must run inside a loopback-only network namespace (scripts/test, or tests/ros/run_in_netns.sh),
so discovery can never leave the machine. `ros_runtime_skip_reason` decides that from the interfaces this
process actually sees, not from an environment variable someone may have exported by hand; it is checked
BEFORE anything imports rclpy.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from typing import Any

import pytest

from segzero_ros.testing.collect import WAIT_S, wait_until
from segzero_ros.testing.collect import Collector as Inbox

__all__ = [
    "WAIT_S",
    "Inbox",
    "RosHarness",
    "image_message",
    "non_loopback_interfaces",
    "rgb_test_image",
    "ros2_cli",
    "ros_runtime_skip_reason",
    "skip_module_unless_ros_runtime",
    "stop_ros2_daemon",
    "wait_until",
]

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble

def non_loopback_interfaces() -> list[str]:
    """Network interfaces of THIS process's network namespace other than loopback."""
    return [name for _, name in socket.if_nameindex() if name != "lo"]


def ros_runtime_skip_reason() -> str | None:
    others = non_loopback_interfaces()
    if others:
        return (f"needs a loopback-only network namespace, but this process sees {', '.join(others)}; "
                "run through scripts/test or tests/ros/run_in_netns.sh")
    if importlib.util.find_spec("rclpy") is None:
        return "rclpy is not installed (ROS 2 wheels missing)"
    if importlib.util.find_spec("segzero_ros.msg") is None:
        return "segzero_ros messages are not built: run scripts/build_ros_msgs.sh"
    return None


def ros2_cli() -> str:
    """Path of the `ros2` command (from this venv first); skips the calling module when there is none.
    Call at module level after skip_module_unless_ros_runtime()."""
    import shutil
    import sys
    from pathlib import Path

    found = shutil.which("ros2", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip("the ros2 CLI is not installed (scripts/setup installs it from ../shared/ros-tools)",
                    allow_module_level=True)
    return found


def stop_ros2_daemon(ros2: str, env: dict[str, str]) -> None:
    """`ros2` verbs start a daemon that outlives them (one per domain); a test that used the CLI stops it, so
    no DDS participant is left running after the suite."""
    import subprocess

    subprocess.run([ros2, "daemon", "stop"], env=env, capture_output=True, timeout=30, check=False)


def skip_module_unless_ros_runtime() -> None:
    """Call at module level, before importing rclpy."""
    reason = ros_runtime_skip_reason()
    if reason:
        pytest.skip(reason, allow_module_level=True)


class RosHarness:
    """One rclpy context with a spinning executor and a client node for publishing and collecting."""

    def __init__(self, domain_id: int, name: str = "segzero_test_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.client = rclpy.create_node(name, context=self.context)
        self.executor.add_node(self.client)
        self.errors: list[str] = []
        """Tracebacks of callbacks that raised on the spinning thread."""
        self._thread = threading.Thread(target=self._spin, name="test-executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """Spin until shutdown. A callback that raises is recorded (the `executor_errors` fixture fails the
        test it happened in, with the traceback) and spinning goes on, so one broken callback cannot silently
        starve every later test of the module."""
        import traceback

        from rclpy.executors import ExternalShutdownException, ShutdownException

        while self.context.ok():
            try:
                self.executor.spin()
                return
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception:
                self.errors.append(traceback.format_exc())

    def subscribe(self, msg_type: Any, topic: str, qos: Any = 10) -> Inbox:
        inbox = Inbox(topic)
        self.client.create_subscription(msg_type, topic, inbox, qos)
        return inbox

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10) -> Any:
        return self.client.create_publisher(msg_type, topic, qos)

    def shutdown(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=5.0)
        self.client.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def rgb_test_image(width: int = 64, height: int = 48) -> Any:
    """A deterministic rgb8 numpy image (gradients, so channel-order mistakes change pixel values)."""
    import numpy as np

    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 4 % 256, ys * 5 % 256, (xs + ys) % 256], axis=2).astype(np.uint8)


def image_message(pixels: Any, encoding: str = "rgb8", *, sec: int = 1234, nanosec: int = 5678,
                  frame_id: str = "camera_optical") -> Any:
    from segzero_ros.ros.image_conversion import array_to_image

    msg = array_to_image(pixels, encoding)
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = nanosec
    msg.header.frame_id = frame_id
    return msg
