"""A planner's side of the segzero node, in a few lines: wait until it is ready, ask, use the answer.

    ros2 launch segzero_ros segzero.launch.py ...          # the node, with a camera on /camera/image_raw
    python examples/planner_client.py "the red mug"         # segment the newest camera frame
    python examples/planner_client.py "the red mug" --image examples/kitchen.png   # or a picture you send

Prints the box, the two points and the mask's size (or the error kind and reason), and exits 0 on success.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import rclpy

from segzero_ros.ros.client import SegZeroClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", help='what to segment, e.g. "the thing I can cut bread with"')
    parser.add_argument("--image", help="an image file to segment instead of the node's newest camera frame")
    parser.add_argument("--node", default="/segzero", help="the segzero node's name (default /segzero)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness and result")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("segzero_planner_example")
    try:
        client = SegZeroClient(node, node_name=args.node)
        client.wait_until_ready(timeout_s=args.timeout)
        image = None
        if args.image:
            from segzero_ros.images import load_rgb

            image = np.ascontiguousarray(load_rgb(args.image))
        result = client.segment(args.command, image, timeout_s=args.timeout)
        if not result.success:
            print(f"{result.error_kind}: {result.error}", file=sys.stderr)
            return 1
        print(f"box {list(result.box)}  points {list(result.point_1)} {list(result.point_2)}  "
              f"mask {result.mask_pixels} px  score {result.score:.3f}  in {result.latency_s:.2f} s")
        print(f"reasoning: {result.reasoning}")
        return 0
    except TimeoutError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
