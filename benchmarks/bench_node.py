"""What the ROS node itself costs per frame, and command → result latency through it.

Three measurements:
1. components (no DDS): Image → RGB conversion, mask → mono8 Image, overlay drawing → rgb8 Image, result
   message assembly — the per-command work the node adds around the models;
2. in-node overhead (DDS): a running SegZeroNode with instant stand-in models (scripted reasoner, box
   segmenter) and subscribers on ~/mask and ~/overlay, so everything is drawn, converted and published;
   overhead = result.latency_s − (reason + encode + decode), i.e. queue hand-off, conversion and publishing;
3. with --tiny: command → result latency with the tiny real models, seen from a client node.

Parts 2 and 3 start rclpy, so they run only inside a loopback-only network namespace:
    tests/ros/run_in_netns.sh .venv/bin/python benchmarks/bench_node.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from timing import sample_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segzero_ros.core.geometry import Box, Point

SIZES = ((640, 480), (1280, 720))
ANSWER = ('<think>bench</think><answer>{"bbox": [210, 210, 630, 630], '
          '"points_1": [380, 400], "points_2": [460, 450]}</answer>')


def timed_ms(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and 90th percentile in milliseconds (after one warm-up call)."""
    samples = sorted(sample_ms(function, repeats))
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray, Box, tuple[Point, Point]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    box = Box(width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    mask = np.zeros((height, width), dtype=bool)
    mask[box.y1 : box.y2 + 1, box.x1 : box.x2 + 1] = True
    return image, mask, box, (Point(width // 2, height // 2), Point(width // 2 + 10, height // 2 + 10))


def component_rows(width: int, height: int) -> dict[str, Callable[[], object]]:
    """The per-command work of the node at one image size, as zero-argument callables."""
    from segzero_ros.ros.image_conversion import array_to_image, image_to_rgb8, mask_to_image
    from segzero_ros.visualize import overlay_image

    image, mask, box, points = scene(width, height)
    rgb_msg = array_to_image(image, "rgb8")
    bgr_msg = array_to_image(np.ascontiguousarray(image[:, :, ::-1]), "bgr8")

    def overlay_message() -> object:
        return array_to_image(overlay_image(image, mask, box, points), "rgb8", rgb_msg.header)

    rows: dict[str, Callable[[], object]] = {
        "rgb8 Image → RGB": lambda: image_to_rgb8(rgb_msg),
        "bgr8 Image → RGB": lambda: image_to_rgb8(bgr_msg),
        "mask → mono8 Image": lambda: mask_to_image(mask, rgb_msg.header),
        "overlay → rgb8 Image": overlay_message,
    }
    try:
        from segzero_ros.msg import ReasoningSegmentation
    except ImportError:  # messages not built: the mask conversion alone stands in for the result
        return rows

    def result_message() -> object:
        msg = ReasoningSegmentation()
        msg.header = rgb_msg.header
        msg.box = box.as_list()
        msg.mask = mask_to_image(mask, rgb_msg.header)
        msg.mask_pixels = int(np.count_nonzero(mask))
        return msg

    rows["result msg (incl. mask)"] = result_message
    return rows


def bench_components(repeats: int) -> None:
    print("1. node work per command, no DDS (median / p90 ms)")
    for width, height in SIZES:
        medians = {}
        for label, function in component_rows(width, height).items():
            median, p90 = timed_ms(function, repeats)
            medians[label] = median
            print(f"   {width}×{height}  {label:<26} {median:7.3f} / {p90:7.3f}")
        # Per command the node converts the image once, builds the result (its mask Image is reused for
        # ~/mask) and draws the overlay.
        result_key = "result msg (incl. mask)" if "result msg (incl. mask)" in medians else "mask → mono8 Image"
        per_command = ["rgb8 Image → RGB", "overlay → rgb8 Image", result_key]
        print(f"   {width}×{height}  {'total per command (rgb8)':<26} {sum(medians[k] for k in per_command):7.3f}")


def in_netns() -> bool:
    import socket

    return all(name == "lo" for _, name in socket.if_nameindex())


class Client:
    """Publishes images and commands; records when each result arrives."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from segzero_ros.msg import ReasoningSegmentation
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.node = rclpy.create_node("bench_client", context=context)
        self.images = self.node.create_publisher(Image, "/image", 10)
        self.commands = self.node.create_publisher(String, "/segzero/command", 10)
        self.result: tuple[float, Any] | None = None
        self.arrived = threading.Event()
        self.node.create_subscription(ReasoningSegmentation, "/segzero/result", self._on_result, 100)
        # Subscribers make the node draw and publish the mask and overlay topics too.
        self.node.create_subscription(Image, "/segzero/mask", lambda m: None, 10)
        self.node.create_subscription(Image, "/segzero/overlay", lambda m: None, 10)

    def _on_result(self, msg: Any) -> None:
        self.result = (time.perf_counter(), msg)
        self.arrived.set()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def run_node(params: dict[str, Any], width: int, height: int, commands: int, timeout: float) -> list[tuple[float, Any]]:
    """Run a SegZeroNode as main() does (TransitionExecutor), send `commands` commands one at a time;
    returns (command → result latency seen by the client in s, result) per command."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from segzero_ros.ros.executor import TransitionExecutor
    from segzero_ros.ros.image_conversion import array_to_image
    from segzero_ros.ros.node import SegZeroNode, add_to_executor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "93")))
    executor = TransitionExecutor(context=context)
    client_executor = SingleThreadedExecutor(context=context)  # a planner is another process: its own thread
    node = SegZeroNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    client = Client(context)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    measurements: list[tuple[float, Any]] = []
    try:
        add_to_executor(node, executor)  # autostart, as segzero_node does
        client_executor.add_node(client.node)
        spinner.start()
        threading.Thread(target=client_executor.spin, daemon=True).start()
        wait_for(lambda: node.status().ready or bool(node.status().configure_error), timeout, "the node to start")
        if not node.status().ready:
            raise RuntimeError(f"node did not start: {node.status().configure_error}")
        wait_for(lambda: client.commands.get_subscription_count() >= 1
                 and client.images.get_subscription_count() >= 1, 20, "DDS discovery")
        image = array_to_image(scene(width, height)[0], "rgb8")
        for index in range(commands + 1):  # the first round is a warm-up
            client.images.publish(image)
            wait_for(lambda: 0 <= node.status().image_age_s < 0.5, 5, "the node to receive the image")
            client.arrived.clear()
            sent = time.perf_counter()
            client.commands.publish(String(data=f"the object {index}"))
            if not client.arrived.wait(timeout):
                raise RuntimeError("no result")
            assert client.result is not None
            received, result = client.result
            if not result.success:
                raise RuntimeError(f"command failed: {result.error_kind}: {result.error}")
            if index > 0:
                measurements.append((received - sent, result))
    finally:
        node.release()
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        client.node.destroy_node()
        rclpy.try_shutdown(context=context)
    return measurements


def overhead_s(result: Any) -> float:
    """The node's own share of a result's latency: everything but the model stages."""
    return float(result.latency_s - result.reason_s - result.encode_s - result.decode_s)


def bench_node_overhead(commands: int) -> None:
    print("\n2. node overhead inside a running node, instant stand-in models, over DDS (median / max ms)")
    with tempfile.TemporaryDirectory() as folder:
        outputs = Path(folder) / "outputs.json"
        outputs.write_text(json.dumps({"*": ANSWER}))
        params = {"reasoner.backend": "scripted", "reasoner.model": str(outputs), "segmenter.backend": "box"}
        for width, height in SIZES:
            rows = run_node(params, width, height, commands, timeout=10)
            overhead = [1e3 * overhead_s(r) for _, r in rows]
            client = [1e3 * latency for latency, _ in rows]
            print(f"   {width}×{height}  node overhead {statistics.median(overhead):6.2f} / {max(overhead):6.2f}"
                  f"   command → result at the client {statistics.median(client):6.2f} / {max(client):6.2f}")


def bench_tiny(commands: int) -> None:
    from segzero_ros.tiny import tiny_pipeline_config

    print("\n3. tiny real models (transformers Qwen2.5-VL + SAM2 hiera-t @256), command → result (median s)")
    config = tiny_pipeline_config()
    params: dict[str, Any] = {f"reasoner.{k}": v for k, v in vars(config.reasoner).items() if v is not None}
    params.update({f"segmenter.{k}": v for k, v in vars(config.segmenter).items() if v is not None})
    for width, height in SIZES:
        rows = run_node(params, width, height, commands, timeout=120)

        def median(values: list[float]) -> float:
            return statistics.median(values)

        print(f"   {width}×{height}  client {median([c for c, _ in rows]):.3f}"
              f"  reason {median([r.reason_s for _, r in rows]):.3f}"
              f"  encode {median([r.encode_s for _, r in rows]):.3f}"
              f"  decode {median([r.decode_s for _, r in rows]):.3f}"
              f"  node overhead {1e3 * median([overhead_s(r) for _, r in rows]):.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=100, help="repetitions per component measurement")
    parser.add_argument("--commands", type=int, default=20, help="commands per in-node measurement")
    parser.add_argument("--tiny", action="store_true", help="also measure latency with the tiny real models")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bench_components(args.repeats)
    if not in_netns():
        print("\n(parts 2 and 3 need rclpy: run inside tests/ros/run_in_netns.sh)")
        return 0
    bench_node_overhead(args.commands)
    if args.tiny:
        import torch

        torch.set_num_threads(1)
        bench_tiny(max(3, args.commands // 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
