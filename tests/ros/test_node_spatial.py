"""3D output over DDS: a ray-cast RGB-D scene (a box on a table in front of a wall) published as colour +
aligned depth + CameraInfo; a scripted reasoner points at the box, the box segmenter fills its box (so the
mask spills onto table and wall), and the node must place the box's visible surface within 1 cm."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ros.harness import image_message, skip_module_unless_ros_runtime, wait_until

pytestmark = [pytest.mark.ros]
skip_module_unless_ros_runtime()

from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from segzero_ros.ros.image_conversion import array_to_image  # noqa: E402
from segzero_ros.testing.collect import Collector  # noqa: E402

DOMAIN_ID = 76
WIDTH, HEIGHT, F, CX, CY = 640, 480, 525.0, 319.5, 239.5
BOX_MIN, BOX_MAX = np.array([-0.10, 0.05, 0.90]), np.array([0.10, 0.25, 1.05])  # metres, camera optical frame
TABLE_Y, WALL_Z = 0.25, 3.0
DEPTH_FRAME = "camera_depth_optical_frame"


def ray_cast(width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Depth (m) of the scene per pixel, and which pixels see the box (intrinsics scaled to the size)."""
    scale = width / WIDTH
    fx, cx, cy = F * scale, (CX + 0.5) * scale - 0.5, (CY + 0.5) * scale - 0.5
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    direction = np.stack([(u - cx) / fx, (v - cy) / fx, np.ones_like(u, dtype=float)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low, t_high = BOX_MIN / direction, BOX_MAX / direction
        t_near = np.minimum(t_low, t_high).max(axis=-1)
        t_far = np.maximum(t_low, t_high).min(axis=-1)
        box = (t_near <= t_far) & (t_near > 0)
        table = np.where(direction[..., 1] > 0, TABLE_Y / direction[..., 1], np.inf)
    z = np.minimum(np.where(table > 0, table, np.inf), WALL_Z)
    z = np.where(box, np.minimum(t_near, z), z)  # t is z here: the ray's z component is 1
    return z.astype(np.float32), box & (t_near <= z)


def truth() -> np.ndarray:
    """Centroid of the box's visible surface points."""
    z, box = ray_cast()
    v, u = np.nonzero(box)
    points = np.stack([(u - CX) / F * z[box], (v - CY) / F * z[box], z[box]], axis=1)
    return points.mean(axis=0)


def box_answer() -> str:
    _, box = ray_cast()
    v, u = np.nonzero(box)
    x1, y1, x2, y2 = u.min() - 2, v.min() - 2, u.max() + 2, v.max() + 2  # a slightly generous box: spill
    frame = [round(x1 * 840 / WIDTH), round(y1 * 840 / HEIGHT), round(x2 * 840 / WIDTH), round(y2 * 840 / HEIGHT)]
    cx, cy = (frame[0] + frame[2]) // 2, (frame[1] + frame[3]) // 2
    return (f'<think>the box</think><answer>{{"bbox": {frame}, "points_1": [{cx}, {cy}], '
            f'"points_2": [{cx + 5}, {cy + 5}]}}</answer>')


def camera_info(width: int, height: int, frame_id: str) -> CameraInfo:
    scale = width / WIDTH
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = frame_id
    info.k = [F * scale, 0.0, (CX + 0.5) * scale - 0.5, 0.0, F * scale, (CY + 0.5) * scale - 0.5, 0.0, 0.0, 1.0]
    return info


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"*": box_answer()}))
    return path


@pytest.fixture
def node(node_factory, harness, client, outputs_file):
    node = node_factory(**{"reasoner.backend": "scripted", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box", "spatial.enabled": True})
    assert node.start(), node.status().configure_error
    harness.executor.add_node(node)
    client.wait_connected()
    client.results.clear()
    return node


@pytest.fixture(scope="module")
def outputs(harness):
    collectors = {name: Collector(name) for name in ("cloud", "pose", "markers", "detections_3d", "detections")}
    harness.client.create_subscription(PointCloud2, "/segzero/object_cloud", collectors["cloud"], 10)
    harness.client.create_subscription(PoseStamped, "/segzero/object_pose", collectors["pose"], 10)
    harness.client.create_subscription(MarkerArray, "/segzero/markers", collectors["markers"], 10)
    try:
        from vision_msgs.msg import Detection2DArray, Detection3DArray
    except ImportError:
        pass
    else:
        harness.client.create_subscription(Detection3DArray, "/segzero/detections_3d", collectors["detections_3d"],
                                           10)
        harness.client.create_subscription(Detection2DArray, "/segzero/detections", collectors["detections"], 10)
    return collectors


def publish_scene(harness, client, node, *, stamp=(500, 250_000_000), depth_size=(WIDTH, HEIGHT),
                  depth_stamp=None, encoding="16UC1") -> None:
    depth_pub = getattr(harness, "_depth_pub", None) or harness.publisher(Image, "/depth")
    info_pub = getattr(harness, "_info_pub", None) or harness.publisher(CameraInfo, "/depth_camera_info")
    harness._depth_pub, harness._info_pub = depth_pub, info_pub
    wait_until(lambda: depth_pub.get_subscription_count() >= 1 and info_pub.get_subscription_count() >= 1,
               what="the node's depth subscriptions")
    z, _ = ray_cast(*depth_size)
    depth = np.round(z * 1000).astype(np.uint16) if encoding == "16UC1" else z
    depth_msg = array_to_image(depth, encoding)
    depth_msg.header.frame_id = DEPTH_FRAME
    depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec = depth_stamp or stamp
    info = camera_info(*depth_size, DEPTH_FRAME)
    info.header.stamp = depth_msg.header.stamp
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[ray_cast()[1]] = (200, 120, 40)
    colour = image_message(rgb, sec=stamp[0], nanosec=stamp[1], frame_id="camera_color_optical_frame")
    for _ in range(3):  # best-effort topics: send a few times
        info_pub.publish(info)
        depth_pub.publish(depth_msg)
        time.sleep(0.05)
    before = node.status().images_received
    client.images.publish(colour)
    wait_until(lambda: node.status().images_received > before, what="the node to receive the colour image")


def test_the_box_is_placed_within_a_centimetre_and_published_in_standard_messages(harness, client, node, outputs):
    publish_scene(harness, client, node)
    client.send_command("the box on the table")
    result = client.results.wait_for(lambda m: m.command == "the box on the table")
    assert result.success and result.has_3d, result.depth_error
    centroid = np.array([result.centroid.x, result.centroid.y, result.centroid.z])
    assert np.abs(centroid - truth()).max() < 0.01, (centroid, truth())
    assert result.depth_frame_id == DEPTH_FRAME and result.header.frame_id == "camera_color_optical_frame"
    assert result.size.x == pytest.approx(0.2, abs=0.01) and result.size.y == pytest.approx(0.2, abs=0.01)
    assert 0.9 < result.valid_depth_fraction <= 1.0 and result.depth_skew_s == 0.0

    cloud = outputs["cloud"].wait_for()
    assert (cloud.header.frame_id, cloud.header.stamp.sec, cloud.header.stamp.nanosec) == (DEPTH_FRAME, 500,
                                                                                           250_000_000)
    assert cloud.width == result.n_points and [f.name for f in cloud.fields] == ["x", "y", "z"]
    xyz = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 3)
    assert np.allclose(xyz.mean(axis=0), centroid, atol=1e-4)
    pose = outputs["pose"].wait_for()
    assert (pose.pose.position.x, pose.pose.position.z) == pytest.approx((centroid[0], centroid[2]), abs=1e-6)
    markers = outputs["markers"].wait_for().markers
    assert markers[0].action == Marker.DELETEALL and {m.type for m in markers[1:]} >= {Marker.CUBE, Marker.SPHERE}
    if _has_vision_msgs():  # built by scripts/setup from ../shared/ros-tools; absent on a bare pip machine
        detection = outputs["detections_3d"].wait_for().detections[0]
        assert detection.bbox.center.position.z == pytest.approx(centroid[2], abs=1e-6)
        assert detection.results[0].hypothesis.class_id == "the box on the table"
        box2d = outputs["detections"].wait_for().detections[0].bbox
        assert box2d.size_x == result.box[2] - result.box[0] + 1


def test_half_resolution_float_depth_is_paired_and_the_mask_resized(harness, client, node):
    publish_scene(harness, client, node, stamp=(501, 0), depth_size=(WIDTH // 2, HEIGHT // 2), encoding="32FC1")
    client.send_command("the box, from half-size depth")
    result = client.results.wait_for(lambda m: m.command == "the box, from half-size depth")
    assert result.has_3d, result.depth_error
    centroid = np.array([result.centroid.x, result.centroid.y, result.centroid.z])
    assert np.abs(centroid - truth()).max() < 0.01


def test_no_depth_near_the_colour_stamp_keeps_the_2d_result(harness, client, node):
    publish_scene(harness, client, node, stamp=(502, 0), depth_stamp=(402, 0))  # depth 100 s older
    client.send_command("the box, no depth")
    result = client.results.wait_for(lambda m: m.command == "the box, no depth")
    assert result.success and not result.has_3d
    assert result.depth_error == ("the nearest depth image is 100.000 s from the colour image, more than "
                                  "spatial.max_skew_s (0.05 s)")
    status = node.status()
    assert status.depth_missed >= 1 and status.last_depth_error == result.depth_error
    assert status.depth_received >= 1 and status.camera_info_received >= 1


def test_no_depth_at_all_says_nothing_arrived(harness, client, node_factory, outputs_file):
    """The diagnosis the error gives when the depth topic is silent (wrong remap, lost large frames)."""
    node = node_factory(**{"reasoner.backend": "scripted", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box", "spatial.enabled": True}, )
    assert node.start(), node.status().configure_error
    harness.executor.add_node(node)
    client.wait_connected()
    before = node.status().images_received
    client.images.publish(image_message(np.zeros((HEIGHT, WIDTH, 3), np.uint8), sec=503, nanosec=0))
    wait_until(lambda: node.status().images_received > before, what="the node to receive the colour image")
    client.send_command("the box, silent depth")
    result = client.results.wait_for(lambda m: m.command == "the box, silent depth")
    assert result.success and not result.has_3d
    assert result.depth_error.startswith("no depth image received yet on /depth (0 since start-up)")


class GatedScripted:
    """A scripted reasoner whose answer waits for the test: a command that takes as long as the test likes."""

    gate = threading.Event()


def _gated_reasoner(config: Any) -> Any:
    from segzero_ros.reasoning.scripted import ScriptedReasoner

    class Gated(ScriptedReasoner):
        def reason_batch(self, images: Any, commands: Any) -> Any:
            assert GatedScripted.gate.wait(timeout=60), "the test never opened the gate"
            return super().reason_batch(images, commands)

    return Gated(json.loads(Path(config.model).read_text(encoding="utf-8")), name="gated")


def test_a_slow_command_keeps_its_frames_depth_beyond_the_ring(harness, client, node_factory, outputs_file):
    """The ring holds one second of depth; a command's own depth is held from its arrival until it is placed,
    however long reasoning takes (40 newer depth frames push it out of the ring meanwhile)."""
    from segzero_ros.backends import register_reasoner

    register_reasoner("test-spatial-gated", _gated_reasoner)
    GatedScripted.gate.clear()
    node = node_factory(**{"reasoner.backend": "test-spatial-gated", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box", "spatial.enabled": True})
    assert node.start(), node.status().configure_error
    harness.executor.add_node(node)
    client.wait_connected()
    try:
        publish_scene(harness, client, node, stamp=(600, 0))
        client.send_command("the box, slowly")
        wait_until(lambda: node.status().busy, what="the command to start reasoning")
        z, _ = ray_cast()
        later = array_to_image(np.round(z * 1000).astype(np.uint16), "16UC1")
        later.header.frame_id = DEPTH_FRAME
        received = node.status().depth_received
        for index in range(40):
            later.header.stamp.sec = 601 + index
            harness._depth_pub.publish(later)
            time.sleep(0.01)
        wait_until(lambda: node.status().depth_received >= received + 35, what="newer depth frames")
    finally:
        GatedScripted.gate.set()
    result = client.results.wait_for(lambda m: m.command == "the box, slowly")
    assert result.success and result.has_3d, result.depth_error
    assert result.depth_skew_s == 0.0


def _has_vision_msgs() -> bool:
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True
