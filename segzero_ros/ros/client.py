"""A planner's client for the segzero node, with task verbs: wait until ready, segment, send, latest status.

    client = SegZeroClient(node)                      # any rclpy node of yours
    client.wait_until_ready(timeout_s=120)
    result = client.segment("the red mug", timeout_s=30)
    if result.success:
        grasp(result.box, result.point_1, result.mask)
    else:
        print(result.error_kind, result.error)        # not_ready, no_image, timeout, ...

With tracking.enabled on the node, `on_tracked` hears the followed object on every tracked frame
(TrackedObject on ~/tracked) and `stop_tracking()` stops following it.

`segment` calls the node's ~/segment service, so it waits for exactly this command's result (the node
always answers, with an explicit error when it cannot segment). `send` publishes on ~/command and returns at
once; results then arrive on ~/result (pass `on_result` to hear them). While waiting, the client spins `node`
itself, as nav2_simple_commander does; pass `spin=False` when an executor already spins it in another thread.
Only the Humble subset of rclpy is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus, TrackedObject
from segzero_ros.ros.image_conversion import array_to_image
from segzero_ros.srv import Segment

COMMANDS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
"""Deep enough for bursts: a reliable KEEP_LAST writer drops its oldest unacknowledged sample at its depth."""
RESULTS_QOS = COMMANDS_QOS
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The node's status is latched: a new client gets the latest one at once."""
TRACKED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


class SegZeroClient:
    """Talks to one segzero node (default `/segzero`) from `node`."""

    def __init__(self, node: Node, *, node_name: str = "/segzero", spin: bool = True,
                 on_result: Callable[[Any], None] | None = None,
                 on_status: Callable[[Any], None] | None = None,
                 on_tracked: Callable[[Any], None] | None = None) -> None:
        self.node = node
        self.node_name = node_name.rstrip("/")
        self._spin = spin
        self._on_status = on_status
        self._status: Any = None
        self._status_arrived = threading.Condition()
        self._segment: Any = node.create_client(Segment, f"{self.node_name}/segment")
        self._stop_tracking: Any = node.create_client(Trigger, f"{self.node_name}/stop_tracking")
        self.commands = node.create_publisher(String, f"{self.node_name}/command", COMMANDS_QOS)
        self._subscriptions = [node.create_subscription(SegZeroStatus, f"{self.node_name}/status",
                                                        self._record_status, STATUS_QOS)]
        if on_result is not None:
            self._subscriptions.append(node.create_subscription(
                ReasoningSegmentation, f"{self.node_name}/result", on_result, RESULTS_QOS))
        if on_tracked is not None:
            self._subscriptions.append(node.create_subscription(
                TrackedObject, f"{self.node_name}/tracked", on_tracked, TRACKED_QOS))

    def segment(self, command: str, image: Any = None, *, command_id: str = "",
                timeout_s: float = 120.0) -> Any:
        """The node's ReasoningSegmentation for `command` on `image` (a sensor_msgs/Image or an RGB H×W×3
        uint8 array; None = the node's newest camera frame). TimeoutError when no answer came in time (the
        node may be gone or its service unreachable): the node itself never leaves a command unanswered."""
        deadline = time.monotonic() + timeout_s
        if not self._segment.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"{self.node_name}/segment is not available after {timeout_s:g} s")
        request = Segment.Request(command=command, command_id=command_id)
        if image is not None:
            request.image = array_to_image(image, "rgb8") if isinstance(image, np.ndarray) else image
        future = self._segment.call_async(request)
        self._wait(future.done, max(0.0, deadline - time.monotonic()), future)
        if not future.done():
            raise TimeoutError(f"no result for {command!r} from {self.node_name} within {timeout_s:g} s")
        response: Any = future.result()
        return response.result

    def send(self, command: str) -> None:
        """Publish a command on ~/command and return at once; its one result comes on ~/result."""
        self.commands.publish(String(data=command))

    def stop_tracking(self, timeout_s: float = 10.0) -> tuple[bool, str]:
        """Stop following the object (tracking.enabled): (True, what was stopped) or (False, why not)."""
        deadline = time.monotonic() + timeout_s
        if not self._stop_tracking.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"{self.node_name}/stop_tracking is not available after {timeout_s:g} s")
        future = self._stop_tracking.call_async(Trigger.Request())
        self._wait(future.done, max(0.0, deadline - time.monotonic()), future)
        if not future.done():
            raise TimeoutError(f"{self.node_name}/stop_tracking did not answer within {timeout_s:g} s")
        response: Any = future.result()
        return bool(response.success), str(response.message)

    def latest_status(self) -> Any:
        """The node's latest SegZeroStatus, or None before the first one arrived."""
        return self._status

    def wait_until_ready(self, timeout_s: float = 120.0) -> Any:
        """Until the node reports ready (active, models loaded); its status. TimeoutError says what it was."""
        self._wait(lambda: self._status is not None and self._status.ready, timeout_s)
        status = self._status
        if status is None or not status.ready:
            state = "no status received" if status is None else (
                f"{status.lifecycle_state}" + (f": {status.configure_error}" if status.configure_error else ""))
            raise TimeoutError(f"{self.node_name} is not ready after {timeout_s:g} s ({state})")
        return status

    def _record_status(self, msg: Any) -> None:
        with self._status_arrived:
            self._status = msg
            self._status_arrived.notify_all()
        if self._on_status is not None:
            self._on_status(msg)

    def _wait(self, done: Callable[[], bool], timeout_s: float, future: Any = None) -> None:
        deadline = time.monotonic() + timeout_s
        if self._spin:
            if future is not None:
                rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout_s)
                return
            while not done() and time.monotonic() < deadline:
                rclpy.spin_once(self.node, timeout_sec=min(0.1, max(0.0, deadline - time.monotonic())))
            return
        if future is not None:  # someone else spins: the future's done callback wakes us
            finished = threading.Event()
            future.add_done_callback(lambda _: finished.set())
            finished.wait(timeout_s)
            return
        with self._status_arrived:
            self._status_arrived.wait_for(done, timeout_s)
