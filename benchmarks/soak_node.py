"""Soak test of the segzero node: the tiny real models under a camera stream and a steady flow of commands.

Starts `segzero_node` (the real entry point, as on a robot) in its own process with the tiny offline models,
publishes a 30 Hz 640×480 rgb8 camera stream and one command per second for N minutes, and then prints:
commands sent / results received / lost and duplicated results / errors by kind; the node's RSS at start,
after warm-up and at the end; command → result latency p50/p99 as the client sees it; and how many camera
frames the node never took in (the node keeps only the newest frame, so frames it is too busy to take are
dropped by design; this shows how many).

Targets for a long run: 0 lost commands and RSS growth < 5 % after warm-up.

`--tracking` turns on tracking.enabled: between commands the node follows each result's object on the
camera frames (a second SAM2 on its own worker), and the report adds frames tracked / dropped by the
tracker, the per-frame tracking time and the track state at the end. `--spatial` adds an aligned 16UC1 depth
stream (+ CameraInfo) stamped like each colour frame and turns spatial.enabled on (results and tracked frames
in 3D: the report counts tracked frames with 3D and the node's depth counters); `--moveit` (implies
--spatial) turns moveit.enabled on and follows /collision_object: ADD / MOVE / REMOVE counts, and the objects
still in the scene after the node shut down (must be none).

Transport: by default both processes use a Fast DDS profile with a 32 MiB shared-memory segment. With Fast
DDS's default 512 KiB segment, best-effort 640×480 rgb8 frames (900 KiB, larger than the segment) between two
processes are almost all lost on this machine (docs/reliability.md); `--shm-segment-mib 0` keeps the
defaults to measure that.

It starts rclpy, so it only runs inside a loopback-only network namespace and refuses anywhere else:
    tests/ros/run_in_netns.sh .venv/bin/python benchmarks/soak_node.py --minutes 10
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_RATE_HZ = 30.0
FRAME_SIZE = (640, 480)
COMMAND_PERIOD_S = 1.0
OBJECTS = ("the red mug", "the plate", "something to cut paper with", "the leftmost cup", "the chair")
NODE_START_TIMEOUT_S = 300.0
"""Importing torch + transformers and loading the tiny models on two busy cores."""
DRAIN_TIMEOUT_S = 60.0
"""After the last command, how long to wait for outstanding results before calling them lost."""
CAMERA_TOPIC = "/soak/camera/image_raw"
DEPTH_TOPIC = "/soak/camera/depth/image_raw"
DEPTH_INFO_TOPIC = "/soak/camera/depth/camera_info"

FASTDDS_PROFILE_FILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
"""Shared memory with a segment that holds whole camera frames, plus UDP for discovery and other hosts."""


def non_loopback_interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex() if name != "lo"]


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class SoakReport:
    duration_s: float
    warmup_s: float
    shm_segment_mib: int = 0
    """Fast DDS shared-memory segment size used; 0 = Fast DDS defaults."""
    frames_published: int = 0
    frames_taken_by_node: int = 0
    commands_sent: int = 0
    results_received: int = 0
    lost_commands: list[str] = field(default_factory=list)
    """Commands that never got a result."""
    duplicated_commands: list[str] = field(default_factory=list)
    """Commands that got more than one result."""
    unexpected_results: int = 0
    """Results for commands this run never sent."""
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    """"success" or the error_kind, per result."""
    latencies_s: list[float] = field(default_factory=list)
    """Client-side: command published → its result received."""
    node_latencies_s: list[float] = field(default_factory=list)
    """The node's own latency_s (command arrival → result published)."""
    rss_start_mib: float = math.nan
    rss_after_warmup_mib: float = math.nan
    rss_after_warmup_at_s: float = math.nan
    """When the after-warm-up RSS was taken (RSS is sampled every 5 s)."""
    rss_end_mib: float = math.nan
    rss_max_mib: float = math.nan
    node_status: dict[str, Any] = field(default_factory=dict)
    node_exit_code: int | None = None
    node_log: Path | None = None
    tracking: bool = False
    tracked_messages: int = 0
    """TrackedObject messages received on ~/tracked."""
    tracked_commands: int = 0
    """Distinct commands whose objects were tracked (each successful result restarts the track)."""
    track_ms: list[float] = field(default_factory=list)
    spatial: bool = False
    tracked_with_3d: int = 0
    moveit: bool = False
    scene_operations: dict[str, int] = field(default_factory=dict)
    """ADD / MOVE / REMOVE counts on /collision_object."""
    objects_left: list[str] = field(default_factory=list)
    """Collision objects ADDed and never REMOVEd by the time the node had shut down."""

    @property
    def dropped_frames(self) -> int:
        return self.frames_published - self.frames_taken_by_node

    @property
    def rss_growth_after_warmup_pct(self) -> float:
        return 100.0 * (self.rss_end_mib - self.rss_after_warmup_mib) / self.rss_after_warmup_mib


def node_command(max_new_tokens: int, tracking: bool = False, spatial: bool = False, moveit: bool = False
                 ) -> list[str]:
    """The node's command line: the real entry point, the tiny models, the soak camera topic."""
    from segzero_ros.tiny import tiny_pipeline_config

    config = tiny_pipeline_config()
    overrides: dict[str, Any] = {
        "reasoner.model": config.reasoner.model, "reasoner.device": "cpu", "reasoner.max_new_tokens": max_new_tokens,
        "segmenter.config": config.segmenter.config, "segmenter.checkpoint": config.segmenter.checkpoint,
        "segmenter.image_size": config.segmenter.image_size, "segmenter.device": "cpu",
        "tracking.enabled": "true" if tracking else "false",
        "spatial.enabled": "true" if spatial else "false", "moveit.enabled": "true" if moveit else "false",
    }
    command = [sys.executable, "-m", "segzero_ros.ros.main", "--ros-args", "-r", f"image:={CAMERA_TOPIC}",
               "-r", f"depth:={DEPTH_TOPIC}", "-r", f"depth_camera_info:={DEPTH_INFO_TOPIC}"]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    return command


def camera_frames(count: int = 4) -> list[Any]:
    """A few distinct 640×480 rgb8 frames, built once and cycled (the camera's cost stays off the clock)."""
    from segzero_ros.ros.image_conversion import array_to_image

    width, height = FRAME_SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(count):
        pixels = np.stack([(xs + 40 * index) % 256, (ys + 25 * index) % 256, (xs ^ ys) % 256], axis=2)
        frames.append(array_to_image(pixels.astype(np.uint8), "rgb8"))
        frames[-1].header.frame_id = "soak_camera"
    return frames


def depth_frame() -> tuple[Any, Any]:
    """A 640×480 16UC1 depth image (a wall at 1.5 m, a block at 0.9 m in the middle) and its CameraInfo."""
    from sensor_msgs.msg import CameraInfo

    from segzero_ros.ros.image_conversion import array_to_image

    width, height = FRAME_SIZE
    depth = np.full((height, width), 1500, np.uint16)
    depth[120:360, 160:480] = 900
    message = array_to_image(depth, "16UC1")
    message.header.frame_id = "soak_depth"
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = "soak_depth"
    info.k = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
    return message, info


def run_soak(duration_s: float, warmup_s: float, *, domain_id: int = 97, max_new_tokens: int = 128,
             shm_segment_mib: int = 32, log_dir: Path | None = None, progress: bool = True,
             tracking: bool = False, spatial: bool = False, moveit: bool = False) -> SoakReport:
    """Run the node under load for duration_s and measure it; see the module docstring.

    Call it in a fresh process: Fast DDS reads its profile once per process, before the first participant.
    """
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="segzero_soak_"))
    if shm_segment_mib > 0:
        profile = log_dir / "fastdds_profile.xml"
        shipped = FASTDDS_PROFILE_FILE.read_text(encoding="utf-8")
        sized = re.sub(r"<segment_size>\d+</segment_size>", f"<segment_size>{shm_segment_mib * 2**20}</segment_size>",
                       shipped)
        profile.write_text(sized, encoding="utf-8")
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from segzero_ros.testing.collect import Collector
    from segzero_ros.testing.node_client import NodeClient, wait_until

    spatial = spatial or moveit
    report = SoakReport(duration_s=duration_s, warmup_s=warmup_s, shm_segment_mib=shm_segment_mib, tracking=tracking,
                        spatial=spatial, moveit=moveit)
    report.node_log = log_dir / "segzero_node.log"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with report.node_log.open("wb") as log:
        process = subprocess.Popen(node_command(max_new_tokens, tracking, spatial, moveit), stdout=log,
                                   stderr=subprocess.STDOUT, env=env)

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    client_node = rclpy.create_node("segzero_soak_client", context=context)
    executor.add_node(client_node)
    client = NodeClient(client_node, image_topic=CAMERA_TOPIC)
    tracked = Collector("/segzero/tracked")
    if tracking:
        from segzero_ros.msg import TrackedObject

        from segzero_ros.ros.client import TRACKED_QOS

        client_node.create_subscription(TrackedObject, "/segzero/tracked", tracked, TRACKED_QOS)
    scene = Collector("/collision_object")
    if moveit:
        from moveit_msgs.msg import CollisionObject

        from segzero_ros.ros.planning_scene import SCENE_QOS

        client_node.create_subscription(CollisionObject, "/collision_object", scene, SCENE_QOS)
    depth_pub = info_pub = None
    if spatial:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        depth_pub = client_node.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data)
        info_pub = client_node.create_publisher(CameraInfo, DEPTH_INFO_TOPIC, qos_profile_sensor_data)
        depth_msg, info_msg = depth_frame()

    def spin() -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    spinner = threading.Thread(target=spin, name="soak-executor", daemon=True)
    spinner.start()

    def say(text: str) -> None:
        if progress:
            print(text, flush=True)

    sent_at: dict[str, float] = {}
    try:
        say(f"starting the node (log: {report.node_log})")
        wait_until(lambda: process.poll() is not None or _ready(client), NODE_START_TIMEOUT_S,
                   "the node to load the tiny models")
        if process.poll() is not None:
            raise RuntimeError(f"the node exited with {process.returncode} during start-up; see {report.node_log}")
        client.wait_connected()
        report.rss_start_mib = report.rss_max_mib = rss_mib(process.pid)
        say(f"node ready, RSS {report.rss_start_mib:.0f} MiB; soaking for {duration_s:.0f} s")

        frames = camera_frames()
        started = time.monotonic()
        next_rss, next_progress, tick = started, started + 60.0, 0
        while (now := time.monotonic()) - started < duration_s and process.poll() is None:
            frame = frames[tick % len(frames)]
            frame.header.stamp = client_node.get_clock().now().to_msg()
            if depth_pub is not None and info_pub is not None:
                depth_msg.header.stamp = info_msg.header.stamp = frame.header.stamp
                info_pub.publish(info_msg)
                depth_pub.publish(depth_msg)
            client.images.publish(frame)
            report.frames_published += 1
            if tick % round(FRAME_RATE_HZ * COMMAND_PERIOD_S) == 0:
                text = f"{OBJECTS[report.commands_sent % len(OBJECTS)]} #{report.commands_sent}"
                sent_at[text] = client.send_command(text)
                report.commands_sent += 1
            if now >= next_rss:
                rss = rss_mib(process.pid)
                report.rss_max_mib = max(report.rss_max_mib, rss)
                if math.isnan(report.rss_after_warmup_mib) and now - started >= warmup_s:
                    report.rss_after_warmup_mib, report.rss_after_warmup_at_s = rss, now - started
                    say(f"warm-up done after {now - started:.0f} s, RSS {rss:.0f} MiB")
                next_rss += 5.0
                if now >= next_progress:
                    next_progress += 60.0
                    say(f"  {now - started:5.0f} s: {report.commands_sent} commands, "
                        f"{len(client.results.messages)} results, RSS {rss:.0f} MiB")
            tick += 1
            time.sleep(max(0.0, started + tick / FRAME_RATE_HZ - time.monotonic()))

        say("stopped sending; waiting for outstanding results")

        def drained() -> bool:
            answered = {msg.command for msg in client.results.messages}
            return answered >= set(sent_at) or process.poll() is not None

        with contextlib.suppress(TimeoutError):
            wait_until(drained, DRAIN_TIMEOUT_S, "outstanding results")
        # A status taken after this moment (they come every second) carries the node's final counters.
        drained_at = time.time()
        with contextlib.suppress(TimeoutError):
            client.status.wait_for(lambda m: _stamp_s(m) > drained_at, timeout=10)
        if process.poll() is None:
            report.rss_end_mib = rss_mib(process.pid)
            report.rss_max_mib = max(report.rss_max_mib, report.rss_end_mib)
        if math.isnan(report.rss_after_warmup_mib):
            report.rss_after_warmup_mib, report.rss_after_warmup_at_s = report.rss_start_mib, 0.0
    finally:
        _collect(report, client, sent_at)
        messages = tracked.messages
        report.tracked_messages = len(messages)
        report.tracked_commands = len({m.command_id for m in messages})
        report.track_ms = [float(m.track_ms) for m in messages]
        report.tracked_with_3d = sum(bool(m.has_3d) for m in messages)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        report.node_exit_code = process.returncode
        if moveit:
            time.sleep(2.0)  # the last REMOVEs in flight
            _collect_scene(report, scene.messages)
        executor.shutdown(timeout_sec=5)
        client_node.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)
    return report


def _collect_scene(report: SoakReport, messages: list[Any]) -> None:
    names = {0: "ADD", 1: "REMOVE", 2: "APPEND", 3: "MOVE"}
    live: dict[str, bool] = {}
    operations = [int.from_bytes(m.operation, "little") if isinstance(m.operation, bytes) else int(m.operation)
                  for m in messages]  # a `byte` field: bytes in rclpy
    report.scene_operations = dict(collections.Counter(names.get(op, str(op)) for op in operations))
    for msg, operation in zip(messages, operations, strict=True):
        if operation == 0:
            live[msg.id] = True
        elif operation == 1:
            live.pop(msg.id, None)
    report.objects_left = sorted(live)


def _ready(client: Any) -> bool:
    status = client.status.latest()
    return bool(status is not None and status.ready)


def _stamp_s(status: Any) -> float:
    return float(status.header.stamp.sec + status.header.stamp.nanosec * 1e-9)


def _collect(report: SoakReport, client: Any, sent_at: dict[str, float]) -> None:
    results_by_command: dict[str, list[Any]] = collections.defaultdict(list)
    for arrival in client.results.arrivals:
        results_by_command[arrival.msg.command].append(arrival)
    report.results_received = sum(len(v) for v in results_by_command.values())
    report.unexpected_results = sum(len(v) for k, v in results_by_command.items() if k not in sent_at)
    for text, sent in sent_at.items():
        arrivals = results_by_command.get(text, [])
        if not arrivals:
            report.lost_commands.append(text)
            continue
        if len(arrivals) > 1:
            report.duplicated_commands.append(text)
        first = arrivals[0]
        report.outcomes["success" if first.msg.success else first.msg.error_kind] += 1
        report.latencies_s.append(first.received - sent)
        report.node_latencies_s.append(float(first.msg.latency_s))
    status = client.status.latest()
    if status is not None:
        report.frames_taken_by_node = int(status.images_received)
        report.node_status = {name: getattr(status, name) for name in (
            "commands_received", "results_succeeded", "results_failed", "commands_timed_out", "images_received",
            "images_unusable", "lifecycle_state", "stuck", "tracking_state", "frames_tracked", "frames_dropped",
            "tracking_error", "depth_received", "depth_used", "depth_missed", "depth_unusable",
            "camera_info_received", "last_depth_error", "collision_objects")}


def format_report(report: SoakReport) -> str:
    def ms(values: list[float], fraction: float) -> str:
        return f"{1e3 * percentile(values, fraction):.0f} ms"

    errors = {kind: count for kind, count in sorted(report.outcomes.items()) if kind != "success"}
    transport = (f"Fast DDS shared memory, {report.shm_segment_mib} MiB segment" if report.shm_segment_mib
                 else "Fast DDS default transports")
    lines = [
        f"segzero node soak: {report.duration_s:.0f} s, camera {FRAME_SIZE[0]}×{FRAME_SIZE[1]} rgb8 at "
        f"{FRAME_RATE_HZ:g} Hz, 1 command / {COMMAND_PERIOD_S:g} s, tiny models on CPU, {transport}",
        f"commands sent          {report.commands_sent}",
        f"results received       {report.results_received}",
        f"lost commands          {len(report.lost_commands)}" + (
            f"  {report.lost_commands[:5]}" if report.lost_commands else ""),
        f"duplicated results     {len(report.duplicated_commands)}; unexpected results {report.unexpected_results}",
        f"succeeded              {report.outcomes.get('success', 0)}",
        "errors by kind         " + (", ".join(f"{kind} {count}" for kind, count in errors.items()) or "none"),
        f"latency (client) p50   {ms(report.latencies_s, 0.5)}, p99 {ms(report.latencies_s, 0.99)}, "
        f"max {ms(report.latencies_s, 1.0)}",
        f"latency (node)   p50   {ms(report.node_latencies_s, 0.5)}, p99 {ms(report.node_latencies_s, 0.99)}",
        f"camera frames          published {report.frames_published}, taken in by the node "
        f"{report.frames_taken_by_node}, dropped {report.dropped_frames} "
        f"({100 * report.dropped_frames / max(1, report.frames_published):.1f} %)",
        f"node RSS               start {report.rss_start_mib:.0f} MiB, after warm-up "
        f"(at {report.rss_after_warmup_at_s:.0f} s) "
        f"{report.rss_after_warmup_mib:.0f} MiB, end {report.rss_end_mib:.0f} MiB, max {report.rss_max_mib:.0f} MiB",
        f"RSS growth after warm-up {report.rss_growth_after_warmup_pct:+.2f} %",
        f"node status at the end {report.node_status}",
        f"node exit code         {report.node_exit_code}",
    ]
    if report.tracking:
        status = report.node_status
        lines.insert(-2, f"tracking               {report.tracked_messages} tracked frames received for "
                         f"{report.tracked_commands} commands; node: tracked {status.get('frames_tracked')}, "
                         f"dropped {status.get('frames_dropped')} (newest frame wins), state "
                         f"{status.get('tracking_state')}; track p50 {percentile(report.track_ms, 0.5):.0f} ms, "
                         f"p99 {percentile(report.track_ms, 0.99):.0f} ms")
    if report.spatial:
        status = report.node_status
        lines.insert(-2, f"3D                     {report.tracked_with_3d} of {report.tracked_messages} tracked frames "
                         f"with 3D; depth received {status.get('depth_received')}, used {status.get('depth_used')}, "
                         f"missed {status.get('depth_missed')}, unusable {status.get('depth_unusable')}")
    if report.moveit:
        lines.insert(-2, f"collision objects      {report.scene_operations}; left after shutdown "
                         f"{len(report.objects_left)}" + (f" {report.objects_left[:3]}" if report.objects_left else ""))
    if report.latencies_s:
        lines.insert(8, f"latency (client) mean  {1e3 * statistics.fmean(report.latencies_s):.0f} ms")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak (default 10)")
    parser.add_argument("--warmup-minutes", type=float, default=None,
                        help="RSS growth is measured from this point (default: 10 %% of the run, at most 1 min)")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "97")))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--shm-segment-mib", type=int, default=32,
                        help="Fast DDS shared-memory segment for both processes; 0 = Fast DDS defaults")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    parser.add_argument("--tracking", action="store_true", help="tracking.enabled on the node (see above)")
    parser.add_argument("--spatial", action="store_true", help="a depth stream and spatial.enabled (see above)")
    parser.add_argument("--moveit", action="store_true", help="moveit.enabled, /collision_object followed (see above)")
    args = parser.parse_args()
    others = non_loopback_interfaces()
    if others:
        print(f"refusing to run: this process sees network interfaces {', '.join(others)}; DDS discovery must "
              "stay on this machine. Run it inside a loopback-only namespace:\n"
              "  tests/ros/run_in_netns.sh .venv/bin/python benchmarks/soak_node.py --minutes 10", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    duration_s = 60.0 * args.minutes
    warmup_s = 60.0 * args.warmup_minutes if args.warmup_minutes is not None else min(60.0, 0.1 * duration_s)
    report = run_soak(duration_s, warmup_s, domain_id=args.domain_id, max_new_tokens=args.max_new_tokens,
                      shm_segment_mib=args.shm_segment_mib, tracking=args.tracking, spatial=args.spatial,
                      moveit=args.moveit)
    print()
    print(format_report(report))
    if args.json is not None:
        summary = {item.name: getattr(report, item.name) for item in dataclasses.fields(report)
                   if item.name not in ("latencies_s", "node_latencies_s", "track_ms")}
        summary.update(outcomes=dict(report.outcomes), node_log=str(report.node_log),
                       dropped_frames=report.dropped_frames,
                       rss_growth_after_warmup_pct=report.rss_growth_after_warmup_pct,
                       latency_p50_s=percentile(report.latencies_s, 0.5),
                       latency_p99_s=percentile(report.latencies_s, 0.99),
                       track_p50_ms=percentile(report.track_ms, 0.5))
        args.json.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    healthy = (not report.lost_commands and not report.duplicated_commands and report.node_exit_code == 0
               and not report.objects_left)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
