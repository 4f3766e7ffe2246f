"""`segzero_image_source`: a camera for machines without one. Publishes sensor_msgs/Image (rgb8) on `image`
at `rate_hz` from an image folder, a video file, a webcam (OpenCV device index) or a ros2 bag (read with the
`rosbags` package: no ROS installation needed), so the node can be tried end to end:

    segzero_image_source --ros-args -p source:=examples/ -p rate_hz:=5.0 -r image:=/camera/image_raw
    ros2 launch segzero_ros demo.launch.py source:=/data/kitchen.mp4        # with the node (and RViz)

Sources are chosen by `source`: a folder (its images, sorted by name), a video file, a bag folder/file
(`bag_topic` picks the Image or CompressedImage topic; default: the first image topic), or an integer
(a webcam). With `loop` the source starts over at its end; without, the node exits there.
"""

from __future__ import annotations

import sys
from typing import Any

from segzero_ros.sources import SourceError, frames

__all__ = ["SourceError", "frames", "main"]


def main(args: list[str] | None = None) -> int:
    """Console entry point `segzero_image_source`."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from segzero_ros.ros.image_conversion import array_to_image

    rclpy.init(args=args)
    node = rclpy.create_node("segzero_image_source")
    source = str(node.declare_parameter("source", "examples").value)
    rate_hz = float(node.declare_parameter("rate_hz", 10.0).value)
    loop = bool(node.declare_parameter("loop", True).value)
    frame_id = str(node.declare_parameter("frame_id", "camera").value)
    bag_topic = str(node.declare_parameter("bag_topic", "").value)
    publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
    state: dict[str, Any] = {"published": 0}

    def publish() -> None:
        try:
            rgb = next(state["frames"])
        except StopIteration:
            if not loop or state["published"] == 0:
                raise SystemExit(0) from None
            state["frames"] = frames(source, bag_topic)
            rgb = next(state["frames"])
        msg = array_to_image(rgb, "rgb8")
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = frame_id
        publisher.publish(msg)
        state["published"] += 1

    code = 0
    try:
        state["frames"] = frames(source, bag_topic)
        node.get_logger().info(f"publishing {source!r} on {publisher.topic_name} at {rate_hz:g} Hz")
        node.create_timer(1.0 / max(rate_hz, 1e-3), publish)
        rclpy.spin(node)
    except SourceError as exc:
        node.get_logger().error(str(exc))
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
