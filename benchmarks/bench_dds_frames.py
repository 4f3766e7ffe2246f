"""Camera frames between two processes over Fast DDS: how many best-effort 640×480 rgb8 frames arrive.

    tests/ros/run_in_netns.sh .venv/bin/python benchmarks/bench_dds_frames.py [--frames 300] [--rate 30]

For each transport setting (Fast DDS defaults, the shipped config/fastdds_large_frames.xml,
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA) and each subscriber history depth (1 as the node uses, 5), a publisher
process sends `--frames` frames at `--rate` Hz with sensor-data QoS and a subscriber process counts what
arrives. Prints delivered / sent per setting. Run it inside a loopback-only network namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
SETTINGS = {
    "Fast DDS defaults": {},
    "fastdds_large_frames.xml": {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)},
    "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
}


def publisher(frames: int, rate: float) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from segzero_ros.ros.image_conversion import array_to_image

    rclpy.init()
    node = rclpy.create_node("bench_frames_pub")
    pub = node.create_publisher(Image, "/bench/frames", qos_profile_sensor_data)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let the match settle on both sides
    msg = array_to_image(np.zeros((480, 640, 3), np.uint8), "rgb8")
    started = time.monotonic()
    for index in range(frames):
        msg.header.frame_id = str(index)
        pub.publish(msg)
        time.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def subscriber(depth: int, seconds: float) -> None:
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_frames_sub")
    seen: set[str] = set()
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, "/bench/frames", lambda m: seen.add(m.header.frame_id), qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"received": len(seen)}))
    node.destroy_node()
    rclpy.try_shutdown()


def run(setting: dict[str, str], depth: int, frames: int, rate: float, domain: int) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FASTDDS_")}
    env.update(setting, ROS_DOMAIN_ID=str(domain))
    seconds = frames / rate + 8
    sub = subprocess.Popen([sys.executable, __file__, "--role", "sub", "--depth", str(depth), "--seconds",
                            str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, __file__, "--role", "pub", "--frames", str(frames), "--rate",
                            str(rate)], env=env)
    pub.wait(timeout=seconds + 30)
    out, _ = sub.communicate(timeout=seconds + 30)
    return int(json.loads(out.strip().splitlines()[-1])["received"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--role", choices=("bench", "pub", "sub"), default="bench")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "pub":
        publisher(args.frames, args.rate)
        return 0
    if args.role == "sub":
        subscriber(args.depth, args.seconds)
        return 0
    if any(name != "lo" for _, name in socket.if_nameindex()):
        print("run this inside a loopback-only network namespace (tests/ros/run_in_netns.sh)", file=sys.stderr)
        return 2
    print(f"{args.frames} best-effort 640×480 rgb8 frames at {args.rate:g} Hz between two processes")
    domain = 60
    for name, setting in SETTINGS.items():
        for depth in (1, 5):
            domain += 1
            received = run(setting, depth, args.frames, args.rate, domain)
            print(f"  {name:<40} subscriber depth {depth}: {received:4d} / {args.frames} delivered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
