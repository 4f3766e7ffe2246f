"""Tracking between commands through the node, over real DDS: the real SAM2 tracker (tiny hiera-t) follows the
object a command found, frame by frame; ~/tracked is compared mask for mask with the tracker run directly on
the same frames. The reasoner is scripted (its answer is what this test is not about); SAM2 is real."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ros.harness import image_message, skip_module_unless_ros_runtime, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]
skip_module_unless_ros_runtime()

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus, TrackedObject  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from segzero_ros.backends import register_reasoner  # noqa: E402
from segzero_ros.config import ReasonerConfig  # noqa: E402
from segzero_ros.core.geometry import Box, ObjectPrompt, Point  # noqa: E402
from segzero_ros.reasoning.scripted import ScriptedReasoner  # noqa: E402
from segzero_ros.ros.client import SegZeroClient  # noqa: E402
from segzero_ros.tracking import build_tracker  # noqa: E402
from tests.test_tracking import moving_disc  # noqa: E402

DOMAIN_ID = 83
# The disc starts at (40, 60), radius 18, on 160×120; in the 840×840 reasoning frame x × 840/160, y × 840/120.
DISC_ANSWER = ('<think>the red disc on the left</think><answer>'
               '{"bbox": [115, 294, 305, 546], "points_1": [210, 420], "points_2": [231, 406]}</answer>')
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class GatedReasoner(ScriptedReasoner):
    """Scripted, but a call waits while the gate is closed: a command that is 'still reasoning' on demand."""

    gate = threading.Event()

    def reason_batch(self, images, commands):
        assert GatedReasoner.gate.wait(timeout=60), "the test never opened the gate"
        return super().reason_batch(images, commands)


register_reasoner("test-tracking-gated", lambda config: GatedReasoner(
    json.loads(Path(config.model).read_text(encoding="utf-8")), name="gated"))
_ = ReasonerConfig  # the registry builds it from reasoner.* parameters


class Wiring:
    def __init__(self, harness: Any) -> None:
        self.image_pub = harness.publisher(Image, "/image")
        self.command_pub = harness.publisher(String, "/segzero/command")
        self.results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
        self.tracked = harness.subscribe(TrackedObject, "/segzero/tracked", 100)
        self.masks = harness.subscribe(Image, "/segzero/mask", 100)
        self.status = harness.subscribe(SegZeroStatus, "/segzero/status", STATUS_QOS)
        self.stop: Any = harness.client.create_client(Trigger, "/segzero/stop_tracking")
        self.planner = SegZeroClient(harness.client, spin=False)  # the public client's tracking verb
        self._subscriptions = list(harness.client.subscriptions)

    def connect(self) -> None:
        wait_until(lambda: self.command_pub.get_subscription_count() >= 1, what="the node's command subscription")
        wait_until(lambda: self.image_pub.get_subscription_count() >= 1, what="the node's image subscription")
        wait_until(lambda: all(s.get_publisher_count() >= 1 for s in self._subscriptions), what="the node's publishers")
        assert self.stop.wait_for_service(20)
        for inbox in (self.results, self.tracked, self.masks, self.status):
            inbox.clear()

    def send_image(self, node: Any, msg: Any) -> None:
        """Publish until the node has it: the camera QoS is best effort, so one sample may be lost."""
        before = node.status().images_received
        for _ in range(20):
            self.image_pub.publish(msg)
            try:
                wait_until(lambda: node.status().images_received > before, 1.0, "the node to receive the image")
                return
            except TimeoutError:
                continue
        raise TimeoutError("the node never received the image (20 tries)")

    def command(self, text: str, timeout: float = 60) -> Any:
        """Send `text`; its (new) result."""
        seen = {m.command_id for m in self.results.messages}
        self.command_pub.publish(String(data=text))
        return self.results.wait_for(lambda m: m.command == text and m.command_id not in seen, timeout)

    def stop_tracking(self) -> Any:
        future = self.stop.call_async(Trigger.Request())
        wait_until(future.done, 20, "~/stop_tracking")
        return future.result()

    def tracked_frame(self, sec: int, timeout: float = 60) -> Any:
        return self.tracked.wait_for(lambda m: m.header.stamp.sec == sec, timeout)


@pytest.fixture(scope="module")
def wiring(harness):
    return Wiring(harness)


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"*": DISC_ANSWER}))
    return path


@pytest.fixture
def make_node(node_factory, harness, wiring, outputs_file, tiny_sam2):
    def make(reasoner: str = "scripted", **overrides) -> Any:
        segmenter = tiny_sam2.segmenter_config()
        values = {"reasoner.backend": reasoner, "reasoner.model": str(outputs_file), "tracking.enabled": True,
                  "tracking.max_rate_hz": 0.0, "status_period_s": 0.2,
                  **{f"segmenter.{k}": v for k, v in vars(segmenter).items() if v is not None}}
        node = node_factory(**{**values, **overrides})
        assert node.start(), node.status().configure_error
        harness.executor.add_node(node)
        wiring.connect()
        return node

    GatedReasoner.gate.set()
    yield make
    GatedReasoner.gate.set()


def frame_message(pixels: np.ndarray, sec: int) -> Any:
    return image_message(pixels, sec=sec, nanosec=0, frame_id="camera")


def pixels_of(mask_msg: Any) -> np.ndarray:
    data = np.frombuffer(mask_msg.data, dtype=np.uint8).reshape(mask_msg.height, mask_msg.step)
    return data[:, : mask_msg.width] > 0


def prompt_of(result: Any) -> tuple[Box, tuple[Point, ...]]:
    points = np.asarray(result.object_points).reshape(-1, 2)
    return Box(*(int(v) for v in result.box)), tuple(Point(int(x), int(y)) for x, y in points)


def test_the_node_follows_the_commanded_object_frame_by_frame_exactly_as_the_tracker_does(make_node, wiring, tiny_sam2):
    node = make_node()
    frames = moving_disc(8)
    wiring.send_image(node, frame_message(frames[0], 100))
    result = wiring.command("the red disc")
    assert result.success, result.error

    first = wiring.tracked_frame(100)
    assert (first.command_id, first.command, first.frames_since_command) == (result.command_id, "the red disc", 0)
    assert first.header.frame_id == "camera" and first.track_ms > 0 and first.convert_ms == 0
    received = [first]
    for index in range(1, len(frames)):  # one at a time: nothing is dropped, every frame is tracked
        wiring.send_image(node, frame_message(frames[index], 100 + index))
        received.append(wiring.tracked_frame(100 + index))

    oracle = build_tracker(tiny_sam2.segmenter_config())
    try:
        box, points = prompt_of(result)
        expected = [oracle.start(frames[0], ObjectPrompt(box, points)), *(oracle.track(frame) for frame in frames[1:])]
    finally:
        oracle.close()
    for index, (msg, want) in enumerate(zip(received, expected, strict=True)):
        assert msg.frames_since_command == index and msg.command_id == result.command_id
        assert msg.present == want.present and msg.score == pytest.approx(want.score, abs=1e-6)
        if want.present:
            assert (msg.mask.width, msg.mask.height) == (160, 120) and msg.mask.header.stamp.sec == 100 + index
            np.testing.assert_array_equal(pixels_of(msg.mask), want.mask)
            rows, cols = np.flatnonzero(want.mask.any(1)), np.flatnonzero(want.mask.any(0))
            assert msg.has_box and list(msg.box) == [cols[0], rows[0], cols[-1], rows[-1]]
            assert msg.mask_pixels == int(want.mask.sum())
        else:
            assert msg.mask.width == 0 and not msg.has_box
        assert msg.frames_dropped == 0
        assert msg.latency_ms > 0
    assert sum(m.present for m in received) > 0, "the tiny tracker should see the disc on some frames"
    # ~/mask carries the tracked masks too (its header tells which frame), besides the command's own.
    wiring.masks.wait_for(lambda m: m.header.stamp.sec == 100 + max(i for i, m in enumerate(received) if m.present))

    status = wiring.status.wait_for(lambda m: m.frames_tracked == len(frames))
    assert status.tracking_state in ("tracking", "lost") and status.tracking_command_id == result.command_id
    assert (status.frames_dropped, status.tracking_error) == (0, "")

    stopped = wiring.planner.stop_tracking()
    assert stopped == (True, f"stopped tracking [{result.command_id}] after {len(frames)} frames")
    wiring.status.wait_for(lambda m: m.tracking_state == "idle")
    assert wiring.planner.stop_tracking() == (False, "nothing was being tracked")


@pytest.mark.parametrize("backend", ["sam3", "edgetam"])
def test_the_node_tracks_with_the_transformers_backends_as_their_tracker_does(make_node, wiring, tiny_cache_root,
                                                                            backend):
    """segmenter.backend sam3 / edgetam: the command's mask from the image model, then ~/tracked from the video
    model of the same checkpoint, mask for mask as the tracker run directly."""
    from segzero_ros.tiny import tiny_segmenter_config

    config = tiny_segmenter_config(backend, tiny_cache_root)
    node = make_node(**{"segmenter.backend": backend, "segmenter.model": config.model})
    frames = moving_disc(4)
    wiring.send_image(node, frame_message(frames[0], 300))
    result = wiring.command("the red disc")
    assert result.success and result.segmenter_name.startswith(f"{backend}:"), result.error
    received = [wiring.tracked_frame(300)]
    for index in range(1, len(frames)):
        wiring.send_image(node, frame_message(frames[index], 300 + index))
        received.append(wiring.tracked_frame(300 + index))
    oracle = build_tracker(config)
    try:
        box, points = prompt_of(result)
        expected = [oracle.start(frames[0], ObjectPrompt(box, points)), *(oracle.track(frame) for frame in frames[1:])]
    finally:
        oracle.close()
    for msg, want in zip(received, expected, strict=True):
        assert msg.present == want.present and msg.score == pytest.approx(want.score, abs=1e-6)
        if want.present:
            np.testing.assert_array_equal(pixels_of(msg.mask), want.mask)


def test_unusable_frames_and_size_changes_end_the_track_clearly_and_reacquire_reruns_the_command(make_node, wiring):
    node = make_node()
    frames = moving_disc(3)
    wiring.send_image(node, frame_message(frames[0], 200))
    first = wiring.command("the red disc")
    wiring.tracked_frame(200)

    bad = frame_message(frames[1], 201)
    bad.encoding = "yuv9000"
    wiring.send_image(node, bad)
    failed = wiring.status.wait_for(lambda m: m.tracking_state == "failed")
    assert failed.tracking_error.startswith("unusable camera frame: unsupported image encoding 'yuv9000'")
    assert failed.tracking_command_id == first.command_id and failed.lifecycle_state == "active"

    # A new command starts a new track; a frame of another size then ends it (no reacquire: it stays ended).
    wiring.send_image(node, frame_message(frames[1], 202))
    second = wiring.command("the red disc")
    assert second.success and second.command_id != first.command_id
    assert wiring.tracked_frame(202).command_id == second.command_id
    wiring.send_image(node, frame_message(np.ascontiguousarray(frames[2][:96, :128]), 203))
    failed = wiring.status.wait_for(lambda m: m.tracking_state == "failed" and m.tracking_command_id == second.command_id)
    assert failed.tracking_error == "frame is 128×96 but tracking started on 160×120; reset and start again"

    # With reacquire 'reason' the end of a track re-runs its command on the newest frame, whose result restarts it.
    node.set_parameters([Parameter("tracking.reacquire", value="reason")])
    wiring.send_image(node, frame_message(frames[2], 204))
    third = wiring.command("the red disc")
    wiring.tracked_frame(204)
    before = {m.command_id for m in wiring.results.messages}
    small = np.ascontiguousarray(frames[2][:96, :128])
    wiring.send_image(node, frame_message(small, 205))
    rerun = wiring.results.wait_for(lambda m: m.command_id not in before, 60)
    assert rerun.command == "the red disc" and rerun.success and (rerun.mask.width, rerun.mask.height) == (128, 96)
    restarted = wiring.tracked.wait_for(lambda m: m.command_id == rerun.command_id, 60)
    assert restarted.frames_since_command == 0 and restarted.header.stamp.sec == 205
    assert third.command_id not in (rerun.command_id, second.command_id)


def test_reasoning_a_new_command_does_not_stall_tracking_and_its_result_replaces_the_target(make_node, wiring):
    node = make_node(reasoner="test-tracking-gated")
    frames = moving_disc(5)
    wiring.send_image(node, frame_message(frames[0], 300))
    first = wiring.command("the red disc")
    wiring.tracked_frame(300)

    GatedReasoner.gate.clear()  # the next command stays in reasoning until the gate opens
    wiring.command_pub.publish(String(data="the red disc again"))
    wait_until(lambda: node.status().busy, 20, "the second command to start reasoning")
    for index in range(1, 4):
        wiring.send_image(node, frame_message(frames[index], 300 + index))
        tracked = wiring.tracked_frame(300 + index)
        assert tracked.command_id == first.command_id and tracked.frames_since_command == index
    assert node.status().busy, "tracking went on while the reasoner was still busy"

    GatedReasoner.gate.set()
    second = wiring.results.wait_for(lambda m: m.command == "the red disc again", 60)
    assert second.success and second.header.stamp.sec == 300  # paired with the newest frame when it came
    restarted = wiring.tracked.wait_for(lambda m: m.command_id == second.command_id)
    assert restarted.frames_since_command == 0 and restarted.header.stamp.sec == 300  # the object's frame
    wiring.send_image(node, frame_message(frames[4], 304))
    assert wiring.tracked_frame(304).command_id == second.command_id


def test_tracking_disabled_says_so(node_factory, harness, wiring, outputs_file):
    node = node_factory(**{"reasoner.backend": "scripted", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box", "status_period_s": 0.2})
    assert node.start()
    harness.executor.add_node(node)
    wiring.connect()
    reply = wiring.stop_tracking()
    assert (reply.success, reply.message) == (False, "tracking is disabled (tracking.enabled false)")
    assert wiring.status.wait_for(lambda m: m.lifecycle_state == "active").tracking_state == "disabled"


# VisionReasoner answers in the 840 frame; on 160×120, x × 160/840 and y × 120/840: the disc (22..58, 42..78,
# point 40, 60) and a patch of background (100..150, 20..70, point 125, 45).
TWO_OBJECTS = ('<think>the disc and the patch</think><answer>[{"bbox_2d": [116, 294, 305, 546], "point_2d": [210, 420]}, '
               '{"bbox_2d": [525, 140, 788, 490], "point_2d": [656, 315]}]</answer>')


def test_every_object_of_a_multi_object_answer_is_tracked(make_node, wiring, tmp_path, tiny_sam2):
    outputs = tmp_path / "two.json"
    outputs.write_text(json.dumps({"*": TWO_OBJECTS}))
    node = make_node(**{"reasoner.model": str(outputs), "reasoner.answer_format": "vision_reasoner"})
    frames = moving_disc(3)
    wiring.send_image(node, frame_message(frames[0], 400))
    result = wiring.command("the disc and the patch")
    assert result.success and result.object_count == 2, result.error
    wiring.send_image(node, frame_message(frames[1], 401))
    tracked = wiring.tracked_frame(401)

    oracle = build_tracker(tiny_sam2.segmenter_config())
    try:
        points = np.asarray(result.object_points).reshape(-1, 2)
        prompts, start = [], 0
        for index in range(2):
            box = Box(*(int(v) for v in result.object_boxes[4 * index: 4 * index + 4]))
            count = result.object_point_counts[index]
            prompts.append(ObjectPrompt(box, tuple(Point(int(x), int(y)) for x, y in points[start:start + count])))
            start += count
        oracle.start_objects(frames[0], prompts)
        expected = oracle.track_objects(frames[1])
    finally:
        oracle.close()
    assert tracked.object_count == 2 and list(tracked.object_present) == [e.present for e in expected]
    assert list(tracked.object_scores) == pytest.approx([e.score for e in expected], abs=1e-6)
    union = expected[0].mask | expected[1].mask
    assert tracked.present == union.any() and tracked.mask_pixels == int(union.sum())
    for index, want in enumerate(expected):
        box = list(tracked.object_boxes[4 * index: 4 * index + 4])
        if want.present:
            rows, cols = np.flatnonzero(want.mask.any(1)), np.flatnonzero(want.mask.any(0))
            assert box == [cols[0], rows[0], cols[-1], rows[-1]]
        else:
            assert box == [-1, -1, -1, -1]
    labels = np.frombuffer(tracked.labels.data, np.uint8).reshape(120, tracked.labels.step)[:, :160]
    expected_labels = np.where(expected[0].mask, 1, np.where(expected[1].mask, 2, 0))
    np.testing.assert_array_equal(labels, expected_labels)
