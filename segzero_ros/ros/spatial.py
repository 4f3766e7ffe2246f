"""The node's 3D outputs: an aligned depth image + CameraInfo in, each result's object in 3D out.

ROS glue over :mod:`segzero_ros.core.spatial` (the geometry and the outlier rule live there). Inputs: `depth`
(sensor_msgs/Image 16UC1 or 32FC1, registered to the colour camera; sensor-data QoS) and `depth_camera_info`
(its CameraInfo), both remappable. The depth paired with a result is the one stamped nearest to the colour
image, within spatial.max_skew_s (a short ring buffer: message_filters is not on PyPI). Outputs, stamped with
the colour image's stamp in the depth image's frame: the result's has_3d / centroid / size / … fields,
~/object_cloud (PointCloud2, xyz float32), ~/object_pose (PoseStamped at the centroid), ~/markers
(MarkerArray: box, centroid, command text; the previous ones deleted first) and, when vision_msgs is
installed, ~/detections_3d and ~/detections. No tf2: like camera drivers, everything stays in the camera
frame; a planner transforms it with tf2 at the result's header.stamp.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseStamped, Vector3
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from segzero_ros.core.spatial import CameraIntrinsics, DepthError, Object3D, StampedRing, locate, resize_mask
from segzero_ros.ros.image_conversion import ImageConversionError, depth_to_array
from segzero_ros.ros.params import SpatialConfig
from segzero_ros.scheduler import Reply

DEPTH_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
RING_FRAMES = 30
"""Depth frames kept for pairing: one second of a 30 Hz camera."""
MIN_MARKER_SIZE_M = 0.005
"""A flat face has zero thickness; RViz would not draw a zero-size cube."""


def stamp_s(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


class SpatialOutputs:
    """Owns the depth inputs and 3D outputs of one node; `fill` runs on the scheduler's worker thread."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        """Guards the ring buffer and the latest CameraInfo (executor thread vs worker thread)."""
        self._publishing = threading.Lock()
        """Held while fill() publishes, so stop() never destroys a publisher under it."""
        self._ring = StampedRing(RING_FRAMES)
        self._info: Any = None
        self._subscriptions: list[Any] = []
        self._publishers: list[Any] = []
        self._config = SpatialConfig()
        self._vision: Any = None
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
        self._subscriptions = [
            node.create_subscription(Image, "depth", self._on_depth, DEPTH_QOS),
            node.create_subscription(CameraInfo, "depth_camera_info", self._on_info, INFO_QOS),
        ]
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
            self._info = None

    def _on_depth(self, msg: Any) -> None:
        with self._lock:
            self._ring.add(stamp_s(msg.header.stamp), msg)

    def _on_info(self, msg: Any) -> None:
        with self._lock:
            self._info = msg

    def fill(self, result: Any, reply: Reply) -> None:
        """Set the result message's 3D fields and publish the 3D outputs (a failure only fills depth_error)."""
        with self._publishing:
            if not self.active:
                return
            try:
                self._fill(result, reply)
            except Exception as exc:  # a 3D problem must never cost the command its 2D result
                self._node.get_logger().error(f"3D output failed: {exc!r}")
                result.has_3d, result.depth_error = False, f"3D output failed: {type(exc).__name__}: {exc}"

    def _fill(self, result: Any, reply: Reply) -> None:
        if not result.success or reply.result.mask is None:
            result.depth_error = "no mask to place in 3D"
            return
        try:
            obj, depth_msg, skew = self._locate(reply.result.mask, stamp_s(result.header.stamp))
        except (DepthError, ImageConversionError) as exc:
            result.depth_error = str(exc)
            self._publish_markers(result, None, "")
            return
        header = type(result.header)(stamp=result.header.stamp, frame_id=depth_msg.header.frame_id)
        result.has_3d = True
        result.centroid = Point(x=obj.centroid[0], y=obj.centroid[1], z=obj.centroid[2])
        result.size = Vector3(x=obj.size[0], y=obj.size[1], z=obj.size[2])
        result.n_points = obj.n_points
        result.valid_depth_fraction = obj.valid_fraction
        result.depth_frame_id = header.frame_id
        result.depth_skew_s = skew
        self._cloud.publish(point_cloud(obj.cloud(self._config.max_cloud_points), header))
        self._pose.publish(PoseStamped(header=header, pose=_pose(obj)))
        self._publish_markers(result, obj, header.frame_id)
        if self._vision is not None:
            self._publish_detections(result, obj, header)

    def _locate(self, mask: np.ndarray, stamp: float) -> tuple[Object3D, Any, float]:
        with self._lock:
            paired, info = self._ring.nearest(stamp, self._config.max_skew_s), self._info
        if paired is None:
            raise DepthError(f"no depth image within spatial.max_skew_s ({self._config.max_skew_s:g} s) of the "
                             "colour image")
        if info is None:
            raise DepthError("no depth_camera_info received yet")
        depth_msg, skew = paired
        depth = depth_to_array(depth_msg)  # type: ignore[arg-type]
        intrinsics = CameraIntrinsics.from_k(info.k)
        if (int(info.width), int(info.height)) not in ((0, 0), (depth.shape[1], depth.shape[0])):
            intrinsics = intrinsics.scaled(depth.shape[1] / int(info.width), depth.shape[0] / int(info.height))
        scale = self._config.depth_scale or None
        found = locate(resize_mask(mask, depth.shape), depth, intrinsics, scale, min_points=self._config.min_points)
        return found, depth_msg, skew

    def _publish_markers(self, result: Any, obj: Object3D | None, frame_id: str) -> None:
        markers = [Marker(header=result.header, ns="segzero", action=Marker.DELETEALL)]
        if obj is not None:
            header = type(result.header)(stamp=result.header.stamp, frame_id=frame_id)
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
                          pose=_pose(obj, lift=obj.size[1] / 2 + 0.03), text=result.command[:80])
            text.scale.z = 0.04
            text.color.r = text.color.g = text.color.b = text.color.a = 1.0
            markers.append(text)
        self._markers.publish(MarkerArray(markers=markers))

    def _publish_detections(self, result: Any, obj: Object3D, header: Any) -> None:
        vision = self._vision
        hypothesis = vision.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = result.command[:200]
        hypothesis.hypothesis.score = float(result.score)
        hypothesis.pose.pose = _pose(obj)
        box3d = vision.BoundingBox3D(center=_pose(obj), size=Vector3(x=obj.size[0], y=obj.size[1], z=obj.size[2]))
        detection3d = vision.Detection3D(header=header, results=[hypothesis], bbox=box3d, id=result.command_id)
        self._detections_3d.publish(vision.Detection3DArray(header=header, detections=[detection3d]))
        x1, y1, x2, y2 = (float(v) for v in result.box)
        box2d = vision.BoundingBox2D(size_x=x2 - x1 + 1, size_y=y2 - y1 + 1)
        box2d.center.position.x, box2d.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        hypothesis2d = vision.ObjectHypothesisWithPose()
        hypothesis2d.hypothesis.class_id, hypothesis2d.hypothesis.score = hypothesis.hypothesis.class_id, \
            hypothesis.hypothesis.score
        detection2d = vision.Detection2D(header=result.header, results=[hypothesis2d], bbox=box2d,
                                         id=result.command_id)
        self._detections.publish(vision.Detection2DArray(header=result.header, detections=[detection2d]))


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
