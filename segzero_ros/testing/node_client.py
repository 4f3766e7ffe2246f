"""The client side of the segzero node's topics, for tests and the soak benchmark. Imports rclpy.

The public SegZeroClient (its QoS is deep enough for bursts of commands) with camera publishers and
collectors added.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from segzero_ros.ros.client import SegZeroClient
from segzero_ros.testing.collect import Collector, wait_until

CAMERA = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
"""Like a camera driver's sensor-data QoS: the newest frame matters, a lost one is not resent."""


class NodeClient(SegZeroClient):
    """The public client (never spinning: tests spin their node in a background executor) plus camera
    publishers and collectors of every result and status."""

    def __init__(self, node: Node, *, node_namespace: str = "/segzero", image_topic: str = "/image") -> None:
        self.results = Collector(f"{node_namespace}/result")
        self.status = Collector(f"{node_namespace}/status")
        super().__init__(node, node_name=node_namespace, spin=False, on_result=self.results, on_status=self.status)
        self.images = node.create_publisher(Image, image_topic, CAMERA)
        self.compressed_images = node.create_publisher(CompressedImage, f"{image_topic}/compressed", CAMERA)

    def wait_connected(self, timeout: float = 20.0, *, camera: bool = True) -> None:
        """Until DDS has matched our endpoints with the node's (the camera only while it is active)."""
        wait_until(lambda: self.commands.get_subscription_count() >= 1, timeout, "the node's command subscription")
        wait_until(lambda: all(s.get_publisher_count() >= 1 for s in self._subscriptions), timeout,
                   "the node's result and status publishers")
        if camera:
            wait_until(lambda: self.images.get_subscription_count() >= 1 or
                       self.compressed_images.get_subscription_count() >= 1, timeout, "the node's camera subscription")

    def send_command(self, text: str) -> float:
        """Publish a command; returns time.monotonic() just before publishing."""
        sent = time.monotonic()
        self.send(text)
        return sent

    def send_raw_command(self, payload: bytes) -> None:
        """Publish command bytes exactly as given on the wire (see :func:`cdr_string`)."""
        self.commands.publish(cdr_string(payload))

    def results_for(self, command: str) -> list[Any]:
        return [msg for msg in self.results.messages if msg.command == command]


def cdr_string(payload: bytes) -> bytes:
    """A serialized std_msgs/String (little-endian CDR) carrying `payload` verbatim.

    rclpy's String only holds Python text, but a C++ node or a corrupt bridge can put any bytes on the
    wire, e.g. invalid UTF-8; publishing these bytes raw reproduces that.
    """
    return b"\x00\x01\x00\x00" + struct.pack("<I", len(payload) + 1) + payload + b"\x00"
