"""The node's 3D outputs: an aligned depth image + CameraInfo in, the commanded objects in 3D out — for each
command's result and, with tracking on, for every tracked frame.

ROS glue over :mod:`segzero_ros.core.spatial` (the geometry and the outlier rule live there). Inputs: `depth`
(sensor_msgs/Image 16UC1 or 32FC1, registered to the colour camera; or, with spatial.compressed_depth,
image_transport's compressedDepth on `depth/compressedDepth`; sensor-data QoS) and `depth_camera_info` (its
CameraInfo), both remappable. The depth paired with a frame is the one stamped nearest to it, within
spatial.max_skew_s (a short ring buffer: message_filters is not on PyPI); it is decoded only when paired.
Outputs, stamped with the colour frame's stamp in the depth image's frame: the result's has_3d / centroid /
size / … fields (TrackedObject's per-object 3D fields for tracked frames), ~/object_cloud (PointCloud2, xyz
float32; rate-limited on tracked frames), ~/object_pose (PoseStamped at the centroid), ~/markers (MarkerArray:
box, centroid, command text; the previous ones deleted first) and, when vision_msgs is installed,
~/detections_3d and ~/detections. No tf2: like camera drivers, everything stays in the camera frame; a planner
transforms it with tf2 at the header's stamp. Depth problems never cost a result or a tracked frame its 2D
output: they only fill depth_error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseStamped, Vector3
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from segzero_ros.core.geometry import Box
from segzero_ros.core.spatial import CameraIntrinsics, DepthError, Object3D, StampedRing, locate, resize_mask
from segzero_ros.image_messages import compressed_depth_to_array
from segzero_ros.ros.image_conversion import ImageConversionError, depth_to_array
from segzero_ros.ros.params import SpatialConfig
from segzero_ros.scheduler import Reply

DEPTH_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
RING_FRAMES = 30
"""Depth frames kept for pairing: one second of a 30 Hz camera."""
HELD_FRAMES = 16
"""Colour frames in use (a command's, the tracker's) whose depth is held beyond the ring, newest first."""
MIN_MARKER_SIZE_M = 0.005
"""A flat face has zero thickness; RViz would not draw a zero-size cube."""


def stamp_s(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@dataclass(frozen=True)
class Subject:
    """What the 3D outputs describe: a command's result or a tracked frame (its stamp, text and 2D box)."""

    header: Any
    """The colour frame's (stamp and camera frame_id)."""
    command_id: str
    command: str
    score: float
    box: Box | None


@dataclass
class Placement:
    """The objects of one colour frame in 3D: per object (None: absent, or why in `errors`), in the depth
    image's frame; `union` is all present objects together (what pose, cloud, markers and detections show)."""

    frame_id: str = ""
    skew_s: float = 0.0
    objects: list[Object3D | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    union: Object3D | None = None
    error: str = ""
    """Why nothing could be placed (no depth, no intrinsics); "" when the depth image was paired."""

    @property
    def placed(self) -> bool:
        return any(obj is not None for obj in self.objects)

    def problem(self) -> str:
        """The frame's error, or each unplaced object's reason ("" when all present objects were placed)."""
        if self.error:
            return self.error
        return "; ".join(f"object {index}: {why}" for index, why in enumerate(self.errors) if why)


@dataclass
class DepthCounters:
    """Since start-up, for ~/status: what arrived, what was used, and what was missing when wanted."""

    received: int = 0
    used: int = 0
    missed: int = 0
    unusable: int = 0
    camera_info_received: int = 0
    last_error: str = ""


class SpatialOutputs:
    """Owns the depth inputs and 3D outputs of one node; `fill` runs on the scheduler's worker thread."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        """Guards the ring buffer and the latest CameraInfo (executor thread vs worker thread)."""
        self._publishing = threading.Lock()
        """Held while fill() publishes, so stop() never destroys a publisher under it."""
        self._ring = StampedRing(RING_FRAMES)
        self._held: dict[float, tuple[Any, float] | None] = {}
        """Colour stamp in use → its best depth so far (msg, skew), None while none is near enough."""
        self._info: Any = None
        self._subscriptions: list[Any] = []
        self._publishers: list[Any] = []
        self._config = SpatialConfig()
        self._vision: Any = None
        self._counters = DepthCounters()
        self._last_tracked_cloud = 0.0
        self.active = False

    @property
    def config(self) -> SpatialConfig:
        return self._config

    @config.setter
    def config(self, config: SpatialConfig) -> None:
        self._config = config

    def start(self, config: SpatialConfig) -> None:
        """Subscribe and advertise (at activate, when spatial.enabled)."""
        self._config = config
        if not config.enabled or self.active:
            return
        node = self._node
        depth = (node.create_subscription(CompressedImage, "depth/compressedDepth", self._on_depth, DEPTH_QOS)
                 if config.compressed_depth else node.create_subscription(Image, "depth", self._on_depth, DEPTH_QOS))
        self._subscriptions = [depth, node.create_subscription(CameraInfo, "depth_camera_info", self._on_info,
                                                               INFO_QOS)]
        self._cloud = node.create_publisher(PointCloud2, "~/object_cloud", OUT_QOS)
        self._pose = node.create_publisher(PoseStamped, "~/object_pose", OUT_QOS)
        self._markers = node.create_publisher(MarkerArray, "~/markers", OUT_QOS)
        self._publishers = [self._cloud, self._pose, self._markers]
        try:
            import vision_msgs.msg as vision
        except ImportError:
            node.get_logger().warning("vision_msgs is not installed: no ~/detections_3d or ~/detections "
                                      "(apt install ros-$ROS_DISTRO-vision-msgs, or scripts/setup with ../shared)")
        else:
            self._vision = vision
            self._detections_3d = node.create_publisher(vision.Detection3DArray, "~/detections_3d", OUT_QOS)
            self._detections = node.create_publisher(vision.Detection2DArray, "~/detections", OUT_QOS)
            self._publishers += [self._detections_3d, self._detections]
        self.active = True
        depth, info = self._subscriptions
        node.get_logger().info(f"3D output on: depth from {depth.topic_name}, intrinsics from {info.topic_name}")

    def stop(self) -> None:
        with self._publishing:
            self._stop()

    def _stop(self) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        for publisher in self._publishers:
            self._node.destroy_publisher(publisher)
        self._subscriptions, self._publishers, self._vision, self.active = [], [], None, False
        with self._lock:
            self._ring.clear()
            self._held.clear()
            self._info = None

    def _on_depth(self, msg: Any) -> None:
        stamp = stamp_s(msg.header.stamp)
        with self._lock:
            self._ring.add(stamp, msg)
            self._counters.received += 1
            for wanted, best in self._held.items():  # a depth image that comes after its colour frame
                skew = abs(stamp - wanted)
                if skew <= self._config.max_skew_s and (best is None or skew < best[1]):
                    self._held[wanted] = (msg, skew)

    def hold(self, header: Any) -> None:
        """Keep the depth image paired with this colour frame until the frame is placed, however long that
        takes (a command's reasoning, the tracker's backlog): the ring alone keeps only the last second. Called
        when a frame is taken into use; at most HELD_FRAMES are held (the oldest is let go)."""
        if not self.active:
            return
        stamp = stamp_s(header.stamp)
        with self._lock:
            if stamp in self._held:
                return
            self._held[stamp] = self._ring.nearest(stamp, self._config.max_skew_s)  # type: ignore[assignment]
            while len(self._held) > HELD_FRAMES:
                del self._held[next(iter(self._held))]

    def _on_info(self, msg: Any) -> None:
        with self._lock:
            self._info = msg
            self._counters.camera_info_received += 1

    def counters(self) -> DepthCounters:
        with self._lock:
            return DepthCounters(**vars(self._counters))

    def fill(self, result: Any, reply: Reply) -> Placement | None:
        """Set the result message's 3D fields and publish the 3D outputs (a failure only fills depth_error).
        Returns where each of the result's objects is (for the planning scene); None when 3D is off."""
        with self._publishing:
            if not self.active:
                return None
            try:
                return self._fill(result, reply)
            except Exception as exc:  # a 3D problem must never cost the command its 2D result
                self._node.get_logger().error(f"3D output failed: {exc!r}")
                result.has_3d, result.depth_error = False, f"3D output failed: {type(exc).__name__}: {exc}"
                return None

    def _fill(self, result: Any, reply: Reply) -> Placement | None:
        if not result.success or reply.result.mask is None:
            result.depth_error = "no mask to place in 3D"
            return None
        masks = [item.mask for item in reply.result.objects] or [reply.result.mask]
        placement = self.locate(masks, stamp_s(result.header.stamp), union=reply.result.mask)
        subject = Subject(result.header, result.command_id, result.command, float(result.score),
                          Box(*(int(v) for v in result.box)) if result.success else None)
        obj = placement.union
        if obj is None:
            result.depth_error = placement.problem() or placement.error
            self._publish_markers(subject, None, "")
            return placement
        header = type(result.header)(stamp=result.header.stamp, frame_id=placement.frame_id)
        result.has_3d = True
        result.centroid = Point(x=obj.centroid[0], y=obj.centroid[1], z=obj.centroid[2])
        result.size = Vector3(x=obj.size[0], y=obj.size[1], z=obj.size[2])
        result.n_points = obj.n_points
        result.valid_depth_fraction = obj.valid_fraction
        result.depth_frame_id = header.frame_id
        result.depth_skew_s = placement.skew_s
        self._cloud.publish(point_cloud(obj.cloud(self._config.max_cloud_points), header))
        self._publish_views(subject, obj, header)
        return placement

    def fill_tracked(self, msg: Any, masks: list[np.ndarray | None], subject: Subject) -> Placement | None:
        """A tracked frame (on the follower's thread): TrackedObject's 3D fields for each object present, and
        the 3D outputs (the cloud at most spatial.cloud_rate_hz). None when 3D is off."""
        with self._publishing:
            if not self.active:
                return None
            try:
                placement = self.locate(masks, stamp_s(subject.header.stamp))
                fill_tracked_3d(msg, placement)
                obj = placement.union
                if obj is None:
                    self._publish_markers(subject, None, "")
                    return placement
                header = type(subject.header)(stamp=subject.header.stamp, frame_id=placement.frame_id)
                rate = self._config.cloud_rate_hz
                now = time.monotonic()
                if rate > 0 and now - self._last_tracked_cloud >= 1.0 / rate:
                    self._last_tracked_cloud = now
                    self._cloud.publish(point_cloud(obj.cloud(self._config.max_cloud_points), header))
                self._publish_views(subject, obj, header)
                return placement
            except Exception as exc:  # never costs the tracked frame its 2D output
                self._node.get_logger().error(f"3D output of a tracked frame failed: {exc!r}")
                msg.has_3d, msg.depth_error = False, f"3D output failed: {type(exc).__name__}: {exc}"
                return None

    def _publish_views(self, subject: Subject, obj: Object3D, header: Any) -> None:
        self._pose.publish(PoseStamped(header=header, pose=_pose(obj)))
        self._publish_markers(subject, obj, header.frame_id)
        if self._vision is not None:
            self._publish_detections(subject, obj, header)

    def locate(self, masks: list[np.ndarray | None], stamp: float, union: np.ndarray | None = None) -> Placement:
        """Each mask (None: the object is absent) in 3D with the depth image paired with `stamp`; `union`
        (default: the present masks together) gives Placement.union."""
        try:
            depth, intrinsics, frame_id, skew = self._paired_depth(stamp)
        except (DepthError, ImageConversionError) as exc:
            return Placement(error=str(exc), objects=[None] * len(masks), errors=[str(exc)] * len(masks))
        placement = Placement(frame_id=frame_id, skew_s=skew)
        scale, min_points = self._config.depth_scale or None, self._config.min_points
        for mask in masks:
            if mask is None or not mask.any():
                placement.objects.append(None)
                placement.errors.append("not present on this frame" if mask is None else "the mask is empty")
                continue
            try:
                placement.objects.append(locate(resize_mask(mask, depth.shape), depth, intrinsics, scale,
                                                min_points=min_points))
                placement.errors.append("")
            except DepthError as exc:
                placement.objects.append(None)
                placement.errors.append(str(exc))
        present = [mask for mask in masks if mask is not None and mask.any()]
        if len(present) == 1 and (union is None or np.array_equal(union, present[0])):  # one object: itself
            placement.union = next(obj for obj in placement.objects if obj is not None) if placement.placed else None
        else:
            together = union if union is not None else (np.logical_or.reduce(present) if present else None)
            if together is not None and together.any():
                try:
                    placement.union = locate(resize_mask(together, depth.shape), depth, intrinsics, scale,
                                             min_points=min_points)
                except DepthError as exc:
                    placement.error = placement.error or str(exc)
        return placement

    def _paired_depth(self, stamp: float) -> tuple[np.ndarray, CameraIntrinsics, str, float]:
        """The depth image stamped nearest `stamp` (decoded), its intrinsics, frame and skew; DepthError naming
        the real cause otherwise (nothing received, nearest too far apart, no CameraInfo, undecodable)."""
        with self._lock:
            held = self._held.get(stamp)
            paired: tuple[Any, float] | None = (held if held is not None
                                                else self._ring.nearest(stamp, self._config.max_skew_s))
            info = self._info
            nearest = self._ring.nearest(stamp, float("inf"))
            received = self._counters.received
        try:
            if paired is None:
                if nearest is None:
                    raise DepthError(f"no depth image received{' yet' if received == 0 else ' recently'} on "
                                     f"{self._subscriptions[0].topic_name} ({received} since start-up): check the "
                                     "topic, and for large frames the DDS profile (docs/ros.md, 3D output)")
                raise DepthError(f"the nearest depth image is {nearest[1]:.3f} s from the colour image, more than "
                                 f"spatial.max_skew_s ({self._config.max_skew_s:g} s)")
            if info is None:
                raise DepthError("no depth_camera_info received yet")
            depth_msg, skew = paired
            try:
                depth = (compressed_depth_to_array(depth_msg) if isinstance(depth_msg, CompressedImage)
                         else depth_to_array(depth_msg))  # type: ignore[arg-type]
            except ImageConversionError:
                with self._lock:
                    self._counters.unusable += 1
                raise
        except (DepthError, ImageConversionError) as exc:
            with self._lock:
                self._counters.missed += 1
                self._counters.last_error = str(exc)
            raise
        with self._lock:
            self._counters.used += 1
        intrinsics = CameraIntrinsics.from_k(info.k)
        if (int(info.width), int(info.height)) not in ((0, 0), (depth.shape[1], depth.shape[0])):
            intrinsics = intrinsics.scaled(depth.shape[1] / int(info.width), depth.shape[0] / int(info.height))
        return depth, intrinsics, str(depth_msg.header.frame_id), skew

    def _publish_markers(self, subject: Subject, obj: Object3D | None, frame_id: str) -> None:
        markers = [Marker(header=subject.header, ns="segzero", action=Marker.DELETEALL)]
        if obj is not None:
            header = type(subject.header)(stamp=subject.header.stamp, frame_id=frame_id)
            size = Vector3(x=max(obj.size[0], MIN_MARKER_SIZE_M), y=max(obj.size[1], MIN_MARKER_SIZE_M),
                           z=max(obj.size[2], MIN_MARKER_SIZE_M))
            pose = _pose(obj)
            for index, (kind, scale) in enumerate(((Marker.CUBE, size), (Marker.SPHERE, Vector3(x=0.02, y=0.02,
                                                                                                 z=0.02)))):
                marker = Marker(header=header, ns="segzero", id=index, type=kind, action=Marker.ADD, pose=pose,
                                scale=scale)
                marker.color.r, marker.color.g, marker.color.b, marker.color.a = (1.0, 0.5, 0.0, 0.4 + 0.5 * index)
                markers.append(marker)
            text = Marker(header=header, ns="segzero", id=2, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                          pose=_pose(obj, lift=obj.size[1] / 2 + 0.03), text=subject.command[:80])
            text.scale.z = 0.04
            text.color.r = text.color.g = text.color.b = text.color.a = 1.0
            markers.append(text)
        self._markers.publish(MarkerArray(markers=markers))

    def _publish_detections(self, subject: Subject, obj: Object3D, header: Any) -> None:
        vision = self._vision
        hypothesis = vision.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = subject.command[:200]
        hypothesis.hypothesis.score = subject.score
        hypothesis.pose.pose = _pose(obj)
        box3d = vision.BoundingBox3D(center=_pose(obj), size=Vector3(x=obj.size[0], y=obj.size[1], z=obj.size[2]))
        detection3d = vision.Detection3D(header=header, results=[hypothesis], bbox=box3d, id=subject.command_id)
        self._detections_3d.publish(vision.Detection3DArray(header=header, detections=[detection3d]))
        if subject.box is None:
            return
        box = subject.box
        box2d = vision.BoundingBox2D(size_x=float(box.x2 - box.x1 + 1), size_y=float(box.y2 - box.y1 + 1))
        box2d.center.position.x, box2d.center.position.y = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        hypothesis2d = vision.ObjectHypothesisWithPose()
        hypothesis2d.hypothesis.class_id, hypothesis2d.hypothesis.score = hypothesis.hypothesis.class_id, \
            hypothesis.hypothesis.score
        detection2d = vision.Detection2D(header=subject.header, results=[hypothesis2d], bbox=box2d,
                                         id=subject.command_id)
        self._detections.publish(vision.Detection2DArray(header=subject.header, detections=[detection2d]))


def fill_spatial_status(msg: Any, counters: DepthCounters, collision_objects: int) -> None:
    """SegZeroStatus's 3D-input counters and the number of collision objects in MoveIt's scene."""
    msg.depth_received, msg.depth_used, msg.depth_missed = counters.received, counters.used, counters.missed
    msg.depth_unusable, msg.camera_info_received = counters.unusable, counters.camera_info_received
    msg.last_depth_error = counters.last_error[:500]
    msg.collision_objects = collision_objects


def fill_tracked_3d(msg: Any, placement: Placement) -> None:
    """TrackedObject's 3D fields from a tracked frame's placement (zeros for unplaced objects)."""
    msg.has_3d = placement.placed
    msg.depth_frame_id = placement.frame_id
    msg.depth_skew_s = placement.skew_s
    msg.depth_error = placement.problem()[:500]
    msg.object_has_3d = [obj is not None for obj in placement.objects]
    msg.object_n_points = [obj.n_points if obj is not None else 0 for obj in placement.objects]
    centroids, poses, sizes = [], [], []
    for obj in placement.objects:
        if obj is None:
            centroids.append(Point())
            poses.append(Pose())
            sizes.append(Vector3())
            continue
        box = obj.oriented_box()
        centroids.append(Point(x=obj.centroid[0], y=obj.centroid[1], z=obj.centroid[2]))
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = box.center
        (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w) = box.quaternion()
        poses.append(pose)
        sizes.append(Vector3(x=box.size[0], y=box.size[1], z=box.size[2]))
    msg.object_centroids, msg.object_box_poses, msg.object_box_sizes = centroids, poses, sizes


def point_cloud(points: np.ndarray, header: Any) -> Any:
    """xyz float32 PointCloud2 (unorganised: height 1)."""
    cloud = PointCloud2(header=header, height=1, width=int(points.shape[0]), is_bigendian=False, point_step=12,
                        row_step=12 * int(points.shape[0]), is_dense=True)
    cloud.fields = [PointField(name=name, offset=4 * index, datatype=PointField.FLOAT32, count=1)
                    for index, name in enumerate("xyz")]
    cloud.data = np.ascontiguousarray(points, dtype="<f4").tobytes()
    return cloud


def _pose(obj: Object3D, lift: float = 0.0) -> Any:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = obj.centroid[0], obj.centroid[1] - lift, obj.centroid[2]
    pose.orientation.w = 1.0  # axis-aligned in the camera frame (Object3D.oriented_box() has the PCA frame)
    return pose
