"""launch_testing test of the SHIPPED launch file with tiny:=true (and use_rviz:=true, which must not break a
machine without rviz2). Run by tests/ros/test_launch_file.py through launch_testing's own `launch_test`
runner (its pytest plugin does not load under pytest 9); its name (no test_ prefix) keeps pytest away.

    launch_test tests/ros/segzero_launch_testing.py        # in a loopback netns, with ROS_DOMAIN_ID set
"""

from __future__ import annotations

import os
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import rclpy
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription  # type: ignore[attr-defined]  # ROS launch, not PyPI's 'launch'

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "segzero.launch.py"
CAMERA = "/launch_test/camera"
COMMANDS = [f"the object number {index}" for index in range(4)]  # the default queue_depth holds them all
READY_TIMEOUT_S = float(os.environ.get("SEGZERO_LAUNCH_READY_S", "150"))


def generate_test_description() -> LaunchDescription:
    launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"tiny": "true", "use_rviz": "true", "image": CAMERA, "max_image_age_s": "0.0"}.items(),
    )
    return LaunchDescription([launch, launch_testing.actions.ReadyToTest()])


class TestTheLaunchedNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from rclpy.executors import SingleThreadedExecutor

        from segzero_ros.testing.node_client import NodeClient

        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("launch_test_client", context=cls.context)
        cls.client = NodeClient(cls.node, image_topic=CAMERA)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.try_shutdown(context=cls.context)

    def spin_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.1)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def test_ready_then_one_result_per_command(self, proc_output) -> None:
        from segzero_ros.ros.image_conversion import array_to_image

        client = self.client
        self.spin_until(lambda: client.status.latest() is not None and client.status.latest().ready, READY_TIMEOUT_S,
                        "a ready status")
        proc_output.assertWaitFor("MEANINGLESS", timeout=5)  # the node says loudly that masks mean nothing
        image = array_to_image(np.full((48, 64, 3), 120, np.uint8), "rgb8")
        deadline = time.monotonic() + 30
        while client.status.latest().image_age_s < 0:  # best-effort camera: resend until the node has one
            self.assertLess(time.monotonic(), deadline, "the node never received an image")
            client.images.publish(image)
            self.spin_for(0.3)
        self.spin_until(lambda: client.commands.get_subscription_count() >= 1, 20, "the command subscription")
        for command in COMMANDS:
            client.send_command(command)
        self.spin_until(lambda: all(client.results_for(c) for c in COMMANDS), 120, "a result for every command")
        self.spin_for(1.0)  # nothing more may arrive
        for command in COMMANDS:
            results = client.results_for(command)
            self.assertEqual(len(results), 1, command)
            self.assertTrue(results[0].success, results[0].error)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
