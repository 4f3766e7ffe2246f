"""The node's MoveIt output (moveit.enabled): each commanded object as a box moveit_msgs/CollisionObject on
moveit.topic (default /collision_object, which move_group reads), kept in step with tracking.

ROS glue over :mod:`segzero_ros.core.planning_scene` (which objects exist, and when each is ADDed, MOVEd or
REMOVEd). Boxes are the oriented boxes of the objects' visible points from the 3D output, so moveit.enabled
needs spatial.enabled. Stamped with the colour frame's stamp in the depth image's frame (or moveit.frame_id):
MoveIt transforms them with tf itself. Without moveit_msgs / shape_msgs installed the node says so once and
publishes nothing here, as with vision_msgs. Attaching an object to the gripper is the planner's business: it
refers to the object by its id, segzero/<command_id>/<index>.
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from segzero_ros.core.planning_scene import PlanningScene, SceneChange, SceneOperation
from segzero_ros.core.spatial import Object3D
from segzero_ros.ros.params import MoveItConfig

SCENE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
"""move_group subscribes reliable/volatile with a deep queue: every ADD and REMOVE must arrive, in order."""


class PlanningSceneOutputs:
    """Owns the collision-object publisher and the scene's state; callers on any thread."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._scene = PlanningScene()
        self._config = MoveItConfig()
        self._publisher: Any = None
        self._messages: Any = None
        self._warned = False

    @property
    def config(self) -> MoveItConfig:
        return self._config

    @config.setter
    def config(self, config: MoveItConfig) -> None:
        with self._lock:
            self._config = config
            self._scene.padding_m = config.padding_m

    @property
    def object_ids(self) -> tuple[str, ...]:
        with self._lock:
            return self._scene.object_ids

    def start(self, config: MoveItConfig, spatial_enabled: bool) -> None:
        """At activate: advertise moveit.topic when moveit.enabled and the messages are installed."""
        self.config = config
        if not config.enabled or self._publisher is not None:
            return
        log = self._node.get_logger()
        if not spatial_enabled:
            log.warning("moveit.enabled needs spatial.enabled (the boxes come from the depth image): no collision "
                        "objects")
            return
        try:
            import moveit_msgs.msg as moveit
            import shape_msgs.msg as shapes
        except ImportError:
            if not self._warned:
                log.warning("moveit_msgs / shape_msgs are not installed: no collision objects (apt install "
                            "ros-$ROS_DISTRO-moveit-msgs, or scripts/setup with ../shared)")
                self._warned = True
            return
        self._messages = (moveit, shapes)
        self._publisher = self._node.create_publisher(moveit.CollisionObject, config.topic, SCENE_QOS)
        log.info(f"collision objects for MoveIt on {self._publisher.topic_name}")

    def stop(self, header: Any) -> None:
        """At deactivate / shutdown: REMOVE what this node added, then stop publishing."""
        self.clear(header)
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._node.destroy_publisher(publisher)

    def command(self, command_id: str, objects: list[Object3D | None], frame_id: str, header: Any) -> None:
        """A command succeeded: its objects replace the previous command's."""
        self._apply(lambda scene: scene.command(command_id, _boxes(objects), frame_id), header)

    def place(self, command_id: str, objects: list[Object3D | None], frame_id: str, header: Any) -> None:
        """A tracked frame placed these objects (None: not on this frame)."""
        self._apply(lambda scene: scene.place(command_id, _boxes(objects), frame_id), header)

    def clear(self, header: Any, command_id: str | None = None) -> None:
        """The track of `command_id` (any, when None) ended: its objects go."""
        self._apply(lambda scene: scene.clear(command_id), header)

    def _apply(self, change: Any, header: Any) -> None:
        with self._lock:
            if self._publisher is None:
                return
            changes: list[SceneChange] = change(self._scene)
            for item in changes:
                self._publisher.publish(self._message(item, header))

    def _message(self, change: SceneChange, header: Any) -> Any:
        moveit, shapes = self._messages
        msg = moveit.CollisionObject()
        msg.header.stamp = header.stamp
        msg.header.frame_id = self._config.frame_id or change.frame_id
        msg.id = change.object_id
        operations = moveit.CollisionObject
        msg.operation = {SceneOperation.ADD: operations.ADD, SceneOperation.MOVE: operations.MOVE,
                         SceneOperation.REMOVE: operations.REMOVE}[change.operation]
        if change.box is None:
            return msg
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = change.box.center
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = change.box.orientation
        if change.operation is SceneOperation.ADD:
            primitive = shapes.SolidPrimitive(type=shapes.SolidPrimitive.BOX, dimensions=list(change.box.size))
            msg.primitives = [primitive]
            identity = type(msg.pose)()
            identity.orientation.w = 1.0
            msg.primitive_poses = [identity]  # relative to msg.pose
        return msg


def _boxes(objects: list[Object3D | None]) -> list[Any]:
    return [obj.oriented_box() if obj is not None else None for obj in objects]


__all__ = ["SCENE_QOS", "PlanningSceneOutputs"]
