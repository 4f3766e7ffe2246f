"""A pick planner's view of the segzero node: command an object, get it as MoveIt will, follow it, let it go.

    ros2 launch segzero_ros segzero.launch.py spatial:=true tracking:=true moveit:=true ...   # RGB-D camera on
    python examples/pick_target.py "the thing I can cut bread with" --follow 10

Sends the command, waits for its collision object on /collision_object (what MoveIt's move_group reads), prints
its id, frame, pose and box as MoveIt receives them, follows the MOVE updates tracking sends for --follow
seconds (and the object's 3D on ~/tracked), then stops tracking and waits for the REMOVE. A real pick pipeline
would plan a grasp on that pose and attach the object by its id (moveit_msgs/AttachedCollisionObject) — the
planner's side, not the node's. Exits 0 when the object was added and removed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from segzero_ros.ros.client import SegZeroClient

OPERATIONS = {0: "ADD", 1: "REMOVE", 2: "APPEND", 3: "MOVE"}
REMOVE = 1


def operation(msg: Any) -> int:
    """CollisionObject.operation is a `byte` field: bytes in rclpy."""
    value = msg.operation
    return int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)


def describe(msg: Any) -> str:
    position, orientation = msg.pose.position, msg.pose.orientation
    text = (f"{OPERATIONS.get(operation(msg), operation(msg))} {msg.id} in {msg.header.frame_id or '?'} at "
            f"({position.x:+.3f}, {position.y:+.3f}, {position.z:+.3f}) m, "
            f"orientation ({orientation.x:+.2f}, {orientation.y:+.2f}, {orientation.z:+.2f}, {orientation.w:+.2f})")
    if msg.primitives:
        dimensions = ", ".join(f"{value:.3f}" for value in msg.primitives[0].dimensions)
        text += f", box {dimensions} m"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", help='what to pick, e.g. "the thing I can cut bread with"')
    parser.add_argument("--follow", type=float, default=10.0, help="seconds to follow the tracked object")
    parser.add_argument("--node", default="/segzero", help="the segzero node's name (default /segzero)")
    parser.add_argument("--topic", default="/collision_object", help="the node's moveit.topic")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness and result")
    args = parser.parse_args()
    try:
        from moveit_msgs.msg import CollisionObject
    except ImportError:
        print("moveit_msgs is not installed (apt install ros-$ROS_DISTRO-moveit-msgs)", file=sys.stderr)
        return 2

    rclpy.init()
    node = rclpy.create_node("segzero_pick_example")
    seen: list[Any] = []
    arrived = threading.Condition()
    tracked: list[Any] = []

    def on_object(msg: Any) -> None:
        with arrived:
            seen.append(msg)
            arrived.notify_all()
        print(describe(msg), flush=True)

    node.create_subscription(CollisionObject, args.topic, on_object,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.MultiThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        client = SegZeroClient(node, node_name=args.node, spin=False, on_tracked=tracked.append)
        client.wait_until_ready(timeout_s=args.timeout)
        result = client.segment(args.command, timeout_s=args.timeout)
        if not result.success:
            print(f"{result.error_kind}: {result.error}", file=sys.stderr)
            return 1
        name = f"segzero/{result.command_id}/0"
        with arrived:
            if not arrived.wait_for(lambda: any(m.id == name for m in seen), timeout=10):
                print(f"no collision object {name} (is moveit.enabled on, with depth? result: "
                      f"{result.depth_error or 'placed'})", file=sys.stderr)
                return 1
        end = time.monotonic() + args.follow
        while time.monotonic() < end:
            time.sleep(1.0)
            if tracked:
                latest = tracked[-1]
                where = latest.object_centroids[0] if latest.has_3d else None
                print(f"~/tracked: {latest.state}, " + (f"centroid ({where.x:+.3f}, {where.y:+.3f}, {where.z:+.3f}) m"
                                                        if where is not None else latest.depth_error or "no 3D"))
        print(client.stop_tracking()[1])
        with arrived:
            removed = arrived.wait_for(lambda: any(m.id == name and operation(m) == REMOVE for m in seen),
                                       timeout=10)
        return 0 if removed else 1
    finally:
        executor.shutdown()
        spinner.join(timeout=10)  # out of rclpy's C code before the node and the context go away
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
