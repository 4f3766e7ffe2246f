"""The tracked object in 3D on every frame and in MoveIt's planning scene, over real DDS.

A ray-cast RGB-D scene: a 24 × 12 × 15 cm box (its own colour) in front of a wall, moving 2 cm along x per
frame for 30 frames, published as colour + aligned 16UC1 depth + CameraInfo. The reasoner is scripted; the
segmenter and tracker are the colour-key stand-ins (segzero_ros.testing.colour: the object is the pixels of its
colour, i.e. the true silhouette) — what is under test is the 3D and the collision objects, not the tracker
(tracker exactness is tested in test_node_tracking.py and beside each tracker). Then the real tiny SAM2 tracker:
each tracked frame's 3D equals core.spatial.locate recomputed on the published mask and the paired depth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ros.harness import image_message, skip_module_unless_ros_runtime, wait_until

pytestmark = [pytest.mark.ros]
skip_module_unless_ros_runtime()

try:
    import moveit_msgs.msg as moveit
except ImportError:  # built by scripts/setup from ../shared/ros-tools
    moveit = None

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus, TrackedObject  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from segzero_ros.core.spatial import CameraIntrinsics, locate  # noqa: E402
from segzero_ros.image_messages import compress_depth  # noqa: E402
from segzero_ros.ros.image_conversion import array_to_image  # noqa: E402
from segzero_ros.testing.colour import register_colour_backend  # noqa: E402

DOMAIN_ID = 88
WIDTH, HEIGHT, F, CX, CY = 640, 480, 525.0, 319.5, 239.5
SIZE = np.array([0.24, 0.12, 0.15])
FRONT_Z, WALL_Z = 0.90, 3.0
COLOUR = (200, 120, 40)
DEPTH_FRAME = "camera_depth_optical_frame"
STEP_M, FRAMES, START_X = 0.02, 30, -0.28
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
INTRINSICS = CameraIntrinsics(F, F, CX, CY)

register_colour_backend()


def ray_cast(centre_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth (m) per pixel and the pixels that see the box, its centre at (centre_x, 0) and front face at z 0.9."""
    low = np.array([centre_x - SIZE[0] / 2, -SIZE[1] / 2, FRONT_Z])
    high = low + SIZE
    u, v = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    direction = np.stack([(u - CX) / F, (v - CY) / F, np.ones_like(u, dtype=float)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low, t_high = low / direction, high / direction
        t_near = np.minimum(t_low, t_high).max(axis=-1)
        t_far = np.maximum(t_low, t_high).min(axis=-1)
    box = (t_near <= t_far) & (t_near > 0) & (t_near < WALL_Z)
    z = np.where(box, t_near, WALL_Z)
    return z.astype(np.float32), box


def visible_centroid(centre_x: float) -> np.ndarray:
    z, box = ray_cast(centre_x)
    v, u = np.nonzero(box)
    return np.stack([(u - CX) / F * z[box], (v - CY) / F * z[box], z[box]], axis=1).mean(axis=0)


def answer_for(centre_x: float) -> str:
    _, box = ray_cast(centre_x)
    v, u = np.nonzero(box)
    frame = [round(u.min() * 840 / WIDTH), round(v.min() * 840 / HEIGHT), round(u.max() * 840 / WIDTH),
             round(v.max() * 840 / HEIGHT)]
    cx, cy = (frame[0] + frame[2]) // 2, (frame[1] + frame[3]) // 2
    return (f'<think>the box</think><answer>{{"bbox": {frame}, "points_1": [{cx}, {cy}], '
            f'"points_2": [{cx + 5}, {cy + 5}]}}</answer>')


def colour_frame(centre_x: float | None) -> np.ndarray:
    rgb = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    if centre_x is not None:
        rgb[ray_cast(centre_x)[1]] = COLOUR
    return rgb


class Scene:
    """Publishers of the camera (colour, depth, CameraInfo) and subscribers of what the node says."""

    def __init__(self, harness: Any) -> None:
        self.harness = harness
        self.image_pub = harness.publisher(Image, "/image")
        self.depth_pub = harness.publisher(Image, "/depth")
        self.compressed_depth_pub = harness.publisher(CompressedImage, "/depth/compressedDepth")
        self.info_pub = harness.publisher(CameraInfo, "/depth_camera_info")
        self.command_pub = harness.publisher(String, "/segzero/command")
        self.results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
        self.tracked = harness.subscribe(TrackedObject, "/segzero/tracked", 200)
        self.masks = harness.subscribe(Image, "/segzero/mask", 200)
        self.status = harness.subscribe(SegZeroStatus, "/segzero/status", STATUS_QOS)
        self.objects = (harness.subscribe(moveit.CollisionObject, "/collision_object", 500)
                        if moveit is not None else None)
        self.stop = harness.client.create_client(Trigger, "/segzero/stop_tracking")

    def connect(self, compressed: bool = False) -> None:
        depth = self.compressed_depth_pub if compressed else self.depth_pub
        for publisher in (self.image_pub, depth, self.info_pub, self.command_pub):
            wait_until(lambda p=publisher: p.get_subscription_count() >= 1, what=f"the node's {publisher.topic_name}")
        assert self.stop.wait_for_service(20)
        for inbox in (self.results, self.tracked, self.masks, self.objects):
            if inbox is not None:
                inbox.clear()

    def publish(self, node: Any, sec: int, centre_x: float | None, *, depth: bool = True,
                compressed: bool = False) -> None:
        """One camera frame stamped `sec`: depth + CameraInfo first (a few times: best effort), then colour
        until the node has it."""
        if depth:
            z, _ = ray_cast(centre_x if centre_x is not None else 100.0)
            millimetres = np.round(z * 1000).astype(np.uint16)
            info = CameraInfo(width=WIDTH, height=HEIGHT)
            info.header.frame_id = DEPTH_FRAME
            info.header.stamp.sec = sec
            info.k = [F, 0.0, CX, 0.0, F, CY, 0.0, 0.0, 1.0]
            if compressed:
                fmt, data = compress_depth(millimetres)
                message: Any = CompressedImage(format=fmt, data=data)
            else:
                message = array_to_image(millimetres, "16UC1")
            message.header.frame_id, message.header.stamp.sec = DEPTH_FRAME, sec
            before = node.status().depth_received
            for _ in range(20):
                self.info_pub.publish(info)
                (self.compressed_depth_pub if compressed else self.depth_pub).publish(message)
                try:
                    wait_until(lambda: node.status().depth_received > before, 0.5, "the node to receive depth")
                    break
                except TimeoutError:
                    continue
        colour = image_message(colour_frame(centre_x), sec=sec, nanosec=0, frame_id="camera_color_optical_frame")
        before = node.status().images_received
        for _ in range(20):
            self.image_pub.publish(colour)
            try:
                wait_until(lambda: node.status().images_received > before, 0.5, "the node to receive the image")
                return
            except TimeoutError:
                continue
        raise TimeoutError("the node never received the colour image")

    def command(self, text: str) -> Any:
        seen = {m.command_id for m in self.results.messages}
        self.command_pub.publish(String(data=text))
        return self.results.wait_for(lambda m: m.command == text and m.command_id not in seen, 60)

    def tracked_frame(self, sec: int) -> Any:
        return self.tracked.wait_for(lambda m: m.header.stamp.sec == sec, 60)

    def operations(self) -> list[tuple[int, str]]:
        assert self.objects is not None
        return [(m.operation, m.id) for m in self.objects.messages]


@pytest.fixture(scope="module")
def scene(harness) -> Scene:
    return Scene(harness)


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"the box": answer_for(START_X), "the box again": answer_for(START_X)}))
    return path


@pytest.fixture
def make_node(node_factory, harness, scene, outputs_file):
    def make(**overrides: Any) -> Any:
        values = {"reasoner.backend": "scripted", "reasoner.model": str(outputs_file), "segmenter.backend": "colour",
                  "spatial.enabled": True, "tracking.enabled": True, "tracking.max_rate_hz": 0.0,
                  "moveit.enabled": True, "moveit.padding_m": 0.0, "status_period_s": 0.2, **overrides}
        node = node_factory(**values)
        assert node.start(), node.status().configure_error
        harness.executor.add_node(node)
        scene.connect(compressed=bool(overrides.get("spatial.compressed_depth")))
        return node

    return make


def _position(pose: Any) -> np.ndarray:
    return np.array([pose.position.x, pose.position.y, pose.position.z])


needs_moveit = pytest.mark.skipif(moveit is None, reason="moveit_msgs not built (scripts/setup with ../shared)")


@needs_moveit
def test_every_tracked_frame_places_the_moving_box_and_moves_its_collision_object(make_node, scene):
    node = make_node()
    scene.publish(node, 1000, START_X)
    result = scene.command("the box")
    assert result.success and result.has_3d, result.depth_error
    name = f"segzero/{result.command_id}/0"
    add = scene.objects.wait_for(lambda m: m.id == name)
    assert add.operation == moveit.CollisionObject.ADD and add.header.frame_id == DEPTH_FRAME
    assert add.header.stamp.sec == 1000 and add.primitives[0].type == 1  # shape_msgs/SolidPrimitive.BOX
    width, height, _ = add.primitives[0].dimensions
    assert (width, height) == pytest.approx((SIZE[0], SIZE[1]), abs=0.02)

    for index in range(FRAMES):
        centre_x = START_X + STEP_M * index
        if index:
            scene.publish(node, 1000 + index, centre_x)
        msg = scene.tracked_frame(1000 + index)
        assert msg.present and msg.has_3d and msg.object_has_3d == [True], msg.depth_error
        assert msg.depth_frame_id == DEPTH_FRAME and msg.depth_error == "" and msg.depth_skew_s == 0.0
        centroid = msg.object_centroids[0]
        got = np.array([centroid.x, centroid.y, centroid.z])
        assert np.abs(got - visible_centroid(centre_x)).max() < 0.01, (index, got, visible_centroid(centre_x))
        box_size = msg.object_box_sizes[0]
        assert (box_size.x, box_size.y) == pytest.approx((SIZE[0], SIZE[1]), abs=0.02)
        moved = scene.objects.wait_for(lambda m, i=index: m.header.stamp.sec == 1000 + i
                                       and m.operation == moveit.CollisionObject.MOVE)
        assert moved.id == name and not moved.primitives
        true_centre = np.array([centre_x, 0.0, FRONT_Z])
        assert np.abs(_position(moved.pose) - true_centre).max() < 0.02, (index, _position(moved.pose))
    assert [op for op, _ in scene.operations()] == [moveit.CollisionObject.ADD] + [moveit.CollisionObject.MOVE] * FRAMES
    status = scene.status.wait_for(lambda m: m.frames_tracked >= FRAMES and m.collision_objects == 1)
    assert status.depth_used >= FRAMES + 1 and status.depth_missed == 0 and status.camera_info_received > 0

    stopped = scene.stop.call_async(Trigger.Request())
    wait_until(stopped.done, 20, "~/stop_tracking")
    removed = scene.objects.wait_for(lambda m: m.operation == moveit.CollisionObject.REMOVE)
    assert removed.id == name and scene.status.wait_for(lambda m: m.collision_objects == 0)


@needs_moveit
def test_loss_a_new_command_and_deactivation_each_remove_the_objects(make_node, scene):
    node = make_node(**{"tracking.lost_after_s": 0.3})
    scene.publish(node, 2000, START_X)
    first = scene.command("the box")
    first_name = f"segzero/{first.command_id}/0"
    scene.objects.wait_for(lambda m: m.id == first_name and m.operation == moveit.CollisionObject.ADD)

    second = scene.command("the box again")  # a new command replaces the first's object
    second_name = f"segzero/{second.command_id}/0"
    scene.objects.wait_for(lambda m: m.id == second_name and m.operation == moveit.CollisionObject.ADD)
    operations = scene.operations()
    assert operations.index((moveit.CollisionObject.REMOVE, first_name)) < operations.index(
        (moveit.CollisionObject.ADD, second_name))

    sec = 2001
    deadline = time.monotonic() + 20  # the box leaves the view: lost after 0.3 s → REMOVE
    while time.monotonic() < deadline and (moveit.CollisionObject.REMOVE, second_name) not in scene.operations():
        scene.publish(node, sec, None)
        sec += 1
        time.sleep(0.1)
    assert (moveit.CollisionObject.REMOVE, second_name) in scene.operations()
    absent = scene.tracked.wait_for(lambda m: m.header.stamp.sec == sec - 1)
    assert not absent.present and not absent.has_3d and absent.object_has_3d == [False]
    cleared = scene.masks.wait_for(lambda m: m.header.stamp.sec == sec - 1)  # ~/mask goes blank, same header
    assert (cleared.width, cleared.height) == (WIDTH, HEIGHT) and not any(cleared.data)

    scene.publish(node, sec, START_X)  # back in view: placed again
    back_name_ops = lambda: [op for op, n in scene.operations() if n == second_name]  # noqa: E731
    wait_until(lambda: back_name_ops()[-1] == moveit.CollisionObject.ADD, 20, "the object to be ADDed again")
    node.trigger_deactivate()
    wait_until(lambda: back_name_ops()[-1] == moveit.CollisionObject.REMOVE, 20, "REMOVE on deactivate")


def test_compressed_depth_and_missing_depth_are_reported_per_frame(make_node, scene):
    node = make_node(**{"spatial.compressed_depth": True, "moveit.enabled": False})
    scene.publish(node, 3000, START_X, compressed=True)
    result = scene.command("the box")
    assert result.has_3d, result.depth_error
    tracked = scene.tracked_frame(3000)
    assert tracked.has_3d and np.abs(np.array([tracked.object_centroids[0].x, tracked.object_centroids[0].y,
                                               tracked.object_centroids[0].z]) - visible_centroid(START_X)).max() < 0.01
    scene.publish(node, 3001, START_X + STEP_M, depth=False)  # a frame whose depth never came: 2D only
    without = scene.tracked_frame(3001)
    assert without.present and without.mask_pixels > 0 and not without.has_3d
    assert "nearest depth image is 1.000 s from the colour image" in without.depth_error
    status = scene.status.wait_for(lambda m: m.depth_missed >= 1)
    assert "spatial.max_skew_s" in status.last_depth_error and status.depth_unusable == 0


@pytest.mark.slow
def test_with_the_tiny_sam2_tracker_each_frames_3d_is_locate_on_its_mask_and_depth(make_node, scene, tiny_sam2):
    """Consistency with a real tracker: whatever SAM2 (random weights) tracks, the 3D published for a frame is
    core.spatial.locate on exactly that frame's published mask and depth."""
    segmenter = {f"segmenter.{k}": v for k, v in vars(tiny_sam2.segmenter_config()).items() if v is not None}
    node = make_node(**segmenter, **{"moveit.enabled": False})
    scene.publish(node, 4000, START_X)
    assert scene.command("the box").success
    checked = 0
    for index in range(6):
        centre_x = START_X + STEP_M * index
        if index:
            scene.publish(node, 4000 + index, centre_x)
        msg = scene.tracked_frame(4000 + index)
        if not msg.present:
            assert not msg.has_3d
            continue
        mask = np.frombuffer(bytes(msg.mask.data), np.uint8).reshape(HEIGHT, msg.mask.step)[:, :WIDTH] > 0
        depth = np.round(ray_cast(centre_x)[0] * 1000).astype(np.uint16)
        try:
            expected = locate(mask, depth, INTRINSICS)
        except ValueError:
            assert not msg.has_3d and msg.depth_error
            continue
        assert msg.has_3d and list(msg.object_n_points) == [expected.n_points]
        got = msg.object_centroids[0]
        assert (got.x, got.y, got.z) == pytest.approx(expected.centroid, abs=1e-6)
        checked += 1
    assert checked > 0, "the tiny tracker should keep some object on these frames"


@needs_moveit
@pytest.mark.slow
def test_the_pick_example_sees_its_object_added_moved_and_removed(make_node, scene):
    """examples/pick_target.py as a planner author runs it (its own process and node), against the node while
    the camera streams the moving box: the command's collision object is ADDed, MOVEd, then REMOVEd on stop."""
    import os
    import subprocess
    import sys
    import threading

    node = make_node()
    scene.publish(node, 5000, START_X)
    streaming = threading.Event()

    def camera() -> None:
        sec = 5001
        while not streaming.is_set():
            centre_x = START_X + STEP_M * (sec % 3)  # small moves: the scripted answer's point stays on the box
            z, _ = ray_cast(centre_x)
            depth = array_to_image(np.round(z * 1000).astype(np.uint16), "16UC1")
            depth.header.frame_id, depth.header.stamp.sec = DEPTH_FRAME, sec
            info = CameraInfo(width=WIDTH, height=HEIGHT, k=[F, 0.0, CX, 0.0, F, CY, 0.0, 0.0, 1.0])
            info.header = depth.header
            scene.info_pub.publish(info)
            scene.depth_pub.publish(depth)
            scene.image_pub.publish(image_message(colour_frame(centre_x), sec=sec, nanosec=0,
                                                  frame_id="camera_color_optical_frame"))
            sec += 1
            time.sleep(0.1)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        example = Path(__file__).resolve().parents[2] / "examples" / "pick_target.py"
        completed = subprocess.run([sys.executable, str(example), "the box", "--follow", "3", "--timeout", "60"],
                                   capture_output=True, text=True, env=dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID)),
                                   timeout=180, check=False)
    finally:
        streaming.set()
        thread.join(timeout=5)
    output = completed.stdout
    assert completed.returncode == 0, f"{output}\n{completed.stderr}"
    lines = output.splitlines()
    added = next(line for line in lines if line.startswith("ADD segzero/"))
    name = added.split()[1]
    assert f"in {DEPTH_FRAME} at" in added and ", box " in added
    assert any(line.startswith(f"MOVE {name} ") for line in lines)
    assert any(line.startswith(f"REMOVE {name} ") for line in lines)
    assert any(line.startswith("~/tracked: tracking, centroid (") for line in lines)
