"""The node's tracking between commands: ROS glue over :class:`segzero_ros.tracking.follower.TrackFollower`.

With tracking.enabled, each successful command's objects are followed on every new camera frame by the
segmenter's tracker on a worker thread of its own (the reasoner keeps its own worker: reasoning never stalls
tracking). Per tracked frame: a TrackedObject on ~/tracked and the mask on ~/mask (all zeros while no object is
present, so a viewer clears), with spatial.enabled each object in 3D (TrackedObject's 3D fields and the 3D
outputs), with moveit.enabled its collision object moved, and ~/overlay at most tracking.overlay_rate_hz. A
track that stops, fails or is lost removes its collision objects. The newest frame wins:
frames that arrive while the tracker is busy (or faster than tracking.max_rate_hz) replace the waiting one
and are counted as dropped. ~/stop_tracking (std_srvs/Trigger) stops following; the next successful command
starts again. The track state is on ~/status. With tracking.reacquire 'reason', a lost track (or one ended by
an unusable frame) re-runs its command on the newest frame, once per loss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.core.result import SegmentedObject, instance_labels
from segzero_ros.msg import TrackedObject
from segzero_ros.ros.image_conversion import array_to_image, labels_to_image, mask_to_image
from segzero_ros.ros.messages import publish_quietly
from segzero_ros.ros.planning_scene import PlanningSceneOutputs
from segzero_ros.ros.spatial import SpatialOutputs, Subject
from segzero_ros.scheduler import Reply
from segzero_ros.tracking import build_tracker
from segzero_ros.tracking.config import TrackingConfig
from segzero_ros.tracking.follower import CameraFrame, FollowStatus, TrackFollower, TrackState, TrackUpdate
from segzero_ros.visualize import overlay_objects

TRACKED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
"""Reliable but shallow: a slow subscriber gets recent frames, never a backlog."""
KEPT_COMMANDS = 4
"""Texts of the latest tracked commands kept (a frame of the previous track may still be publishing)."""


def fill_tracked_objects(msg: Any, update: TrackUpdate, header: Any) -> None:
    """The per-object fields of a TrackedObject (labels only with more than one object)."""
    msg.object_count = len(update.objects)
    msg.object_present = [bool(item.present) for item in update.objects]
    msg.object_scores = [float(item.score) for item in update.objects]
    msg.object_boxes = [value for box in update.boxes
                        for value in ((box.x1, box.y1, box.x2, box.y2) if box is not None else (-1, -1, -1, -1))]
    if len(update.objects) > 1:
        masks = [item.mask if item.present else None for item in update.objects]
        msg.labels = labels_to_image(instance_labels(masks, update.objects[0].mask.shape), header)


class TrackingOutputs:
    """Owns one node's follower, ~/tracked and ~/stop_tracking. `offer` runs on the executor thread,
    `follow` on the scheduler's worker, publishing on the follower's thread."""

    def __init__(self, node: Node, publishers: dict[str, Any], convert: Callable[[Any], np.ndarray],
                 reacquire: Callable[[str], str], on_change: Callable[[], None], *, spatial: SpatialOutputs,
                 scene: PlanningSceneOutputs, overlay: Callable[[], bool]) -> None:
        """`publishers`: the node's "mask" and "overlay" publishers; `convert`: camera message → RGB;
        `reacquire(command)` submits a command and returns its id; `on_change` publishes the node's status (the
        track state changed); `overlay()` says whether tracked frames should draw ~/overlay now (node
        publish_overlay on, someone subscribed)."""
        self._node, self._mask_pub, self._convert, self._reacquire = node, publishers["mask"], convert, reacquire
        self._overlay_pub, self._overlay_wanted = publishers["overlay"], overlay
        self._spatial, self._scene = spatial, scene
        self._last_overlay = 0.0
        self._on_change = on_change
        self._state = TrackState.IDLE
        self._config = TrackingConfig()
        self._follower: TrackFollower | None = None
        self._lock = threading.Lock()
        self._commands: dict[str, str] = {}
        """command_id → text of the commands whose results started tracks (for ~/tracked and reacquire)."""
        self._lost_reported = False
        self._tracked_pub = node.create_publisher(TrackedObject, "~/tracked", TRACKED_QOS)
        self._stop_srv = node.create_service(Trigger, "~/stop_tracking", self._on_stop)

    @property
    def config(self) -> TrackingConfig:
        return self._config

    @config.setter
    def config(self, config: TrackingConfig) -> None:
        """Live changes (rate, lost time, reacquire) apply from the next frame."""
        self._config = config
        follower = self._follower
        if follower is not None:
            follower.max_rate_hz, follower.lost_after_s = config.max_rate_hz, config.lost_after_s

    def start(self, config: TrackingConfig, segmenter: SegmenterConfig) -> None:
        """At activate: a follower whose tracker is built from the loaded segmenter's config on first use (on
        the follower's thread, so activation never waits for a model load)."""
        self._config = config
        if not config.enabled or self._follower is not None:
            return
        options = config.tracker_options()
        self._follower = TrackFollower(lambda: build_tracker(segmenter, **options), self._frame_rgb, self._publish,
                                       max_rate_hz=config.max_rate_hz, lost_after_s=config.lost_after_s,
                                       on_failed=self._on_failed)
        self._node.get_logger().info(f"tracking on: each command's object is followed ({segmenter.backend} tracker)")

    def stop(self) -> None:
        """At deactivate/shutdown: stop following and free the tracker (waits for a frame in progress)."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
            follower.close()

    def offer(self, msg: Any, problem: str | None) -> None:
        """A camera frame (an unusable one carries its problem: it ends the track with that reason)."""
        follower = self._follower
        if follower is not None:
            follower.offer(CameraFrame(msg.header, msg, problem))

    def follow(self, reply: Reply, header: Any) -> None:
        """A command's result: a successful one replaces the target; a failed one leaves the track alone."""
        follower, result = self._follower, reply.result
        if follower is None or not result.ok or reply.rgb is None or not result.objects:
            return
        command_id = reply.job.command_id
        with self._lock:
            self._commands[command_id] = reply.job.command
            while len(self._commands) > KEPT_COMMANDS:
                del self._commands[next(iter(self._commands))]
            self._lost_reported = False
        prompts = [item.prompt for item in result.objects]  # every object the command found
        follower.follow(command_id, reply.rgb, prompts, frame=CameraFrame(header))

    def fill_status(self, msg: Any) -> Any:
        follower = self._follower
        if follower is None:
            msg.tracking_state = "disabled" if not self._config.enabled else TrackState.IDLE.value
            return msg
        status = follower.status()
        msg.tracking_state, msg.tracking_command_id = status.state.value, status.command_id
        msg.frames_tracked, msg.frames_dropped, msg.tracking_error = (status.frames_tracked, status.frames_dropped,
                                                                      status.error)
        return msg

    # ------------------------------------------------------------------ follower callbacks (its thread)

    def _frame_rgb(self, frame: CameraFrame) -> np.ndarray:
        if frame.problem is not None:
            raise ValueError(f"unusable camera frame: {frame.problem}")
        self._spatial.hold(frame.header)  # taken into use: its depth stays until the frame is placed
        return self._convert(frame.message)

    def _publish(self, update: TrackUpdate) -> None:
        header = update.frame.header
        msg = TrackedObject(header=header, command_id=update.command_id, state=update.state.value,
                            present=update.present, score=float(update.score))
        with self._lock:
            msg.command = self._commands.get(update.command_id, "")
            lost_now = update.state is TrackState.LOST and not self._lost_reported
            self._lost_reported = self._lost_reported or lost_now
            changed, self._state = update.state is not self._state, update.state
        if update.box is not None:
            msg.has_box, msg.box = True, [update.box.x1, update.box.y1, update.box.x2, update.box.y2]
        if update.present:
            mask = update.mask
            msg.mask = mask_to_image(mask, header)
            msg.mask_pixels = int(np.count_nonzero(mask))
        fill_tracked_objects(msg, update, header)
        self._place(msg, update)
        follower = self._follower
        msg.frames_since_command = update.frame_index
        msg.frames_dropped = follower.status().frames_dropped if follower is not None else 0
        msg.convert_ms, msg.track_ms = update.convert_s * 1e3, update.track_s * 1e3
        msg.latency_ms = self._latency_ms(header)
        publish_quietly(self._tracked_pub, msg, self._node.get_logger())
        if self._mask_pub.get_subscription_count() > 0:  # all zeros while absent: a viewer shows nothing, not the past
            publish_quietly(self._mask_pub, msg.mask if update.present else
                            mask_to_image(np.zeros(update.objects[0].mask.shape, dtype=bool), header),
                            self._node.get_logger())
        self._publish_overlay(update, header)
        if changed:
            self._on_change()
        if lost_now:
            self._scene.clear(header, update.command_id)
            self._reacquire_after(f"lost for {self._config.lost_after_s:g} s", update.command_id)

    def _place(self, msg: Any, update: TrackUpdate) -> None:
        """Each present object in 3D (TrackedObject's fields, the 3D outputs) and its collision object moved."""
        if not self._spatial.active:
            msg.depth_error = "spatial.enabled is false"
            return
        masks = [item.mask if item.present else None for item in update.objects]
        subject = Subject(msg.header, update.command_id, msg.command, float(update.score), update.box)
        placement = self._spatial.fill_tracked(msg, masks, subject)
        if placement is not None and update.state is TrackState.TRACKING:
            self._scene.place(update.command_id, placement.objects, placement.frame_id, msg.header)

    def _publish_overlay(self, update: TrackUpdate, header: Any) -> None:
        rate = self._config.overlay_rate_hz
        now = time.monotonic()
        if rate <= 0 or update.rgb is None or now - self._last_overlay < 1.0 / rate or not self._overlay_wanted():
            return
        self._last_overlay = now
        drawn = [SegmentedObject(ObjectPrompt(box), item.mask) for item, box in zip(update.objects, update.boxes,
                                                                                    strict=True)
                 if item.present and box is not None]
        try:
            publish_quietly(self._overlay_pub, array_to_image(overlay_objects(update.rgb, drawn), "rgb8", header),
                            self._node.get_logger())
        except Exception as exc:  # a drawing problem must not stop tracking
            self._node.get_logger().error(f"tracked overlay failed: {exc!r}")

    def _on_failed(self, status: FollowStatus) -> None:
        self._node.get_logger().warning(f"tracking [{status.command_id}] ended: {status.error}")
        with self._lock:
            self._state = status.state
        self._scene.clear(_now_header(self._node), status.command_id)
        self._on_change()
        self._reacquire_after(status.error, status.command_id)

    def _reacquire_after(self, why: str, command_id: str) -> None:
        with self._lock:
            command = self._commands.get(command_id)
        if self._config.reacquire != "reason" or not command:
            return
        new_id = self._reacquire(command)
        self._node.get_logger().info(f"tracking [{command_id}] {why}: re-running {command!r} as [{new_id}]")

    def _latency_ms(self, header: Any) -> float:
        stamp = header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            return -1.0
        now = self._node.get_clock().now().nanoseconds
        return float(now - (int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))) / 1e6

    def _on_stop(self, request: Any, response: Any) -> Any:
        follower = self._follower
        if follower is None:
            response.success, response.message = False, ("tracking is disabled (tracking.enabled false)"
                                                         if not self._config.enabled else "the node is not active")
            return response
        status = follower.status()
        stopped = follower.stop()
        self._scene.clear(_now_header(self._node), status.command_id)
        response.success = stopped
        response.message = (f"stopped tracking [{status.command_id}] after {status.frames_tracked} frames"
                            if stopped else "nothing was being tracked")
        return response


def _now_header(node: Node) -> Any:
    """A header stamped now (for collision-object removals that belong to no camera frame)."""
    return Header(stamp=node.get_clock().now().to_msg())


__all__ = ["TRACKED_QOS", "TrackingOutputs"]
