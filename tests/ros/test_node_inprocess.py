"""The node in this process, talked to over real DDS (Fast DDS) by a separate client node.

The models are stand-ins (a reasoner replaying scripted outputs, a segmenter that fills the box) so every
expectation below is computed by hand; the node — conversion, pairing, queueing, lifecycle, publishing —
is what is under test. Tiny real models run through the node in test_tiny_models_through_the_node.
"""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ros.harness import (
    RosHarness,
    image_message,
    rgb_test_image,
    skip_module_unless_ros_runtime,
    wait_until,
)

pytestmark = pytest.mark.ros
skip_module_unless_ros_runtime()

import cv2  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus  # noqa: E402
from segzero_ros.srv import Segment  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from segzero_ros.backends import register_reasoner, register_segmenter  # noqa: E402
from segzero_ros.config import ReasonerConfig  # noqa: E402
from segzero_ros.reasoning.scripted import ScriptedReasoner  # noqa: E402
from segzero_ros.ros.node import SegZeroNode  # noqa: E402
from segzero_ros.segmentation.base import SegmentOutput  # noqa: E402
from segzero_ros.segmentation.box import BoxSegmenter  # noqa: E402
from segzero_ros.visualize import MASK_ALPHA, MASK_COLOR  # noqa: E402

DOMAIN_ID = 71
THINK = "the red mug is left of the plate"
# In the 840×840 reasoning frame; on a 64×48 image x scales by 64/840 and y by 48/840:
# box (105,175,420,525) → (8,10,32,30); points (210,350) → (16,20) and (315,437) → (24,24.97→25).
GOOD_OUTPUT = (f"<think>{THINK}</think><answer>"
               '{"bbox": [105, 175, 420, 525], "points_1": [210, 350], "points_2": [315, 437]}</answer>')
EXPECTED_BOX = [8, 10, 32, 30]
EXPECTED_MASK_PIXELS = (30 - 10 + 1) * (32 - 8 + 1)  # the box segmenter fills the inclusive box
GARBAGE_OUTPUT = "<think>no idea</think><answer>somewhere over there</answer>"
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class GatedReasoner(ScriptedReasoner):
    """Scripted outputs, but each call waits for the test to open the gate: makes 'busy' deterministic."""

    gate = threading.Event()
    closed = threading.Event()

    def reason_batch(self, images, commands):
        assert GatedReasoner.gate.wait(timeout=30), "test never opened the gate"
        return super().reason_batch(images, commands)

    def close(self) -> None:
        GatedReasoner.closed.set()


def _gated_from_config(config: ReasonerConfig) -> GatedReasoner:
    outputs = json.loads(Path(config.model).read_text(encoding="utf-8"))
    return GatedReasoner(outputs, name="gated")


register_reasoner("test-gated", _gated_from_config)


class HalfSizeSegmenter(BoxSegmenter):
    """A broken segmenter backend: its masks are half the image's size."""

    def segment(self, prompt):
        output = super().segment(prompt)
        return SegmentOutput(mask=output.mask[::2, ::2], score=output.score)


register_segmenter("test-half-size", lambda config: HalfSizeSegmenter())


class Wiring:
    """The client side of every topic the node uses."""

    def __init__(self, harness: RosHarness) -> None:
        self.harness = harness
        self.image_pub = harness.publisher(Image, "/image")
        self.compressed_pub = harness.publisher(CompressedImage, "/image/compressed")
        self.command_pub = harness.publisher(String, "/segzero/command")
        self.results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
        self.masks = harness.subscribe(Image, "/segzero/mask")
        self.overlays = harness.subscribe(Image, "/segzero/overlay")
        self.reasoning = harness.subscribe(String, "/segzero/reasoning", 100)
        self.status = harness.subscribe(SegZeroStatus, "/segzero/status", STATUS_QOS)
        self.segment: Any = harness.client.create_client(Segment, "/segzero/segment")
        self._subscriptions = list(harness.client.subscriptions)

    def clear(self) -> None:
        for inbox in (self.results, self.masks, self.overlays, self.reasoning, self.status):
            inbox.clear()

    def connect(self, node: SegZeroNode) -> None:
        """Wait until DDS has matched the node's endpoints with ours (both directions)."""
        wait_until(lambda: self.command_pub.get_subscription_count() >= 1, what="node's command subscription")
        wait_until(lambda: all(s.get_publisher_count() >= 1 for s in self._subscriptions),
                   what="node's publishers")
        if node.status().lifecycle_state == "active":
            publisher = self.compressed_pub if node.settings.node.compressed_input else self.image_pub
            wait_until(lambda: publisher.get_subscription_count() >= 1, what="node's image subscription")

    def send_image(self, node: SegZeroNode, msg) -> None:
        before = node.status().image_age_s
        publisher = self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub
        publisher.publish(msg)
        # Best-effort image QoS: the node has it once its newest-image age restarts.
        wait_until(lambda: 0 <= node.status().image_age_s < (before if before >= 0 else 1e9),
                   what="the node to receive the image")

    def command(self, text: str):
        self.command_pub.publish(String(data=text))
        return self.results.wait_for(lambda m: m.command == text)


@pytest.fixture(scope="module")
def wiring(harness):
    return Wiring(harness)


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"the red mug": GOOD_OUTPUT, "gibberish": GARBAGE_OUTPUT, "*": GOOD_OUTPUT}))
    return path


@pytest.fixture
def make_node(node_factory, harness, wiring, outputs_file):
    def make(**overrides) -> SegZeroNode:
        values = {"reasoner.backend": "scripted", "reasoner.model": str(outputs_file), "segmenter.backend": "box"}
        node = node_factory(**{**values, **overrides})
        if node.settings.node.autostart:
            node.start()
        harness.executor.add_node(node)
        wiring.connect(node)
        wiring.clear()
        return node

    GatedReasoner.gate.clear()
    GatedReasoner.closed.clear()
    yield make
    GatedReasoner.gate.set()


def _pixels(image_msg) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[image_msg.encoding]
    data = np.frombuffer(image_msg.data, dtype=np.uint8).reshape(image_msg.height, image_msg.step)
    return data[:, : image_msg.width * channels].reshape(image_msg.height, image_msg.width, channels).squeeze()


def _same_header(a, b) -> bool:
    return (a.stamp.sec, a.stamp.nanosec, a.frame_id) == (b.stamp.sec, b.stamp.nanosec, b.frame_id)


def test_command_yields_result_mask_overlay_and_reasoning_with_the_source_header(make_node, wiring):
    node = make_node()
    source = rgb_test_image()
    image = image_message(source, sec=1234, nanosec=5678, frame_id="camera_optical")
    wiring.send_image(node, image)

    result = wiring.command("The red mug.")

    assert result.success, result.error
    assert (result.error_kind, result.error) == ("", "")
    assert _same_header(result.header, image.header)
    assert list(result.box) == EXPECTED_BOX
    assert list(result.point_1) == [16, 20] and list(result.point_2) == [24, 25]
    assert result.has_prompt and result.score == 1.0
    assert (result.reasoning, result.raw_output) == (THINK, GOOD_OUTPUT)
    assert (result.reasoner_name, result.segmenter_name) == ("scripted:outputs.json", "box")
    assert result.command_id == "1" and result.latency_s > 0

    assert (result.mask.width, result.mask.height, result.mask.encoding) == (64, 48, "mono8")
    assert _same_header(result.mask.header, image.header)
    mask = _pixels(result.mask)
    expected = np.zeros((48, 64), dtype=np.uint8)
    expected[10:31, 8:33] = 255
    np.testing.assert_array_equal(mask, expected)
    assert result.mask_pixels == EXPECTED_MASK_PIXELS

    published_mask = wiring.masks.wait_for()
    assert _same_header(published_mask.header, image.header)
    np.testing.assert_array_equal(_pixels(published_mask), expected)

    overlay = wiring.overlays.wait_for()
    assert (overlay.width, overlay.height, overlay.encoding) == (64, 48, "rgb8")
    assert _same_header(overlay.header, image.header)
    drawn = _pixels(overlay)
    np.testing.assert_array_equal(drawn[:5], source[:5])  # rows above the box are untouched
    tinted = np.floor(source[15, 20] * (1 - MASK_ALPHA) + np.array(MASK_COLOR) * MASK_ALPHA + 0.5)
    np.testing.assert_array_equal(drawn[15, 20], tinted.astype(np.uint8))  # inside the mask, off box and points

    assert wiring.reasoning.wait_for().data == THINK


def test_command_before_any_image_gets_a_no_image_result(make_node, wiring):
    make_node()
    result = wiring.command("the red mug")
    assert not result.success
    assert result.error_kind == ReasoningSegmentation.ERROR_NO_IMAGE == "no_image"
    assert "/image" in result.error
    assert result.header.frame_id == "" and result.header.stamp.sec == 0
    assert result.mask.width == 0 and result.mask.height == 0 and not result.has_prompt


def test_unsupported_encoding_gets_an_invalid_input_result(make_node, wiring):
    node = make_node()
    image = Image(height=2, width=4, encoding="yuv422", step=8, data=bytes(range(16)))
    image.header.frame_id = "yuv_camera"
    wiring.send_image(node, image)
    result = wiring.command("the red mug")
    assert (result.success, result.error_kind) == (False, "invalid_input")
    assert "yuv422" in result.error
    assert result.header.frame_id == "yuv_camera"


def test_unparseable_model_output_gets_an_error_result_with_the_raw_output(make_node, wiring):
    node = make_node()
    wiring.send_image(node, image_message(rgb_test_image()))
    result = wiring.command("gibberish")
    assert (result.success, result.error_kind) == (False, "unparseable_output")
    assert result.raw_output == GARBAGE_OUTPUT and result.reasoning == "no idea"
    assert not result.has_prompt and result.mask.width == 0
    assert wiring.reasoning.wait_for().data == "no idea"


def test_a_mask_of_the_wrong_size_is_reported_as_a_segmenter_failure(make_node, wiring):
    node = make_node(**{"segmenter.backend": "test-half-size"})
    wiring.send_image(node, image_message(rgb_test_image()))
    result = wiring.command("the red mug")
    assert (result.success, result.error_kind) == (False, "segmenter_failed")
    assert result.error == "segmenter returned a (24, 32) mask for a (48, 64) image"
    assert result.mask.width == 0


def test_every_command_gets_exactly_one_result_when_the_queue_overflows(make_node, wiring):
    node = make_node(**{"reasoner.backend": "test-gated", "queue_depth": 2})
    wiring.send_image(node, image_message(rgb_test_image()))

    wiring.command_pub.publish(String(data="command 1"))
    wait_until(lambda: node.status().busy, what="the node to start command 1")
    for index in range(2, 6):
        wiring.command_pub.publish(String(data=f"command {index}"))
    # Commands 2 and 3 wait in the queue; 4 and 5 find it full and are answered at once.
    rejected = [wiring.results.wait_for(lambda m, i=i: m.command == f"command {i}") for i in (4, 5)]
    assert [r.error_kind for r in rejected] == ["queue_full", "queue_full"]
    assert node.status().queue_length == 2

    GatedReasoner.gate.set()
    wait_until(lambda: len(wiring.results.messages) >= 5, what="five results")
    wait_until(lambda: node.status().results_succeeded == 3 and not node.status().busy, what="the node to idle")
    results = wiring.results.messages
    assert len(results) == 5
    assert collections.Counter(r.command for r in results) == {f"command {i}": 1 for i in range(1, 6)}
    assert sorted(r.command_id for r in results) == ["1", "2", "3", "4", "5"]
    succeeded = [r.command for r in results if r.success]
    assert succeeded == ["command 1", "command 2", "command 3"]  # FIFO
    waited = {r.command: r.queue_s for r in results}  # both queued behind the gated first command
    assert waited["command 2"] > 0 and waited["command 3"] > 0


def test_deactivate_answers_queued_commands_and_cleanup_frees_the_models(make_node, wiring):
    node = make_node(**{"reasoner.backend": "test-gated", "queue_depth": 3})
    wiring.send_image(node, image_message(rgb_test_image()))
    wiring.command_pub.publish(String(data="running"))
    wait_until(lambda: node.status().busy, what="the node to start the first command")
    wiring.command_pub.publish(String(data="waiting"))
    wait_until(lambda: node.status().queue_length == 1, what="the second command to queue")

    node.trigger_deactivate()
    cancelled = wiring.results.wait_for(lambda m: m.command == "waiting")
    assert (cancelled.error_kind, cancelled.error) == ("not_ready", "node deactivated before the command ran")

    GatedReasoner.gate.set()  # the running command still finishes and is answered
    assert wiring.results.wait_for(lambda m: m.command == "running").success

    assert not GatedReasoner.closed.is_set()
    node.trigger_cleanup()
    assert GatedReasoner.closed.is_set()
    assert node.status().lifecycle_state == "unconfigured"
    refused = wiring.command("after cleanup")
    assert refused.error_kind == "not_ready" and "unconfigured" in refused.error
    assert len(wiring.results.messages) == 3


def test_image_older_than_max_age_gets_a_stale_image_result(make_node, wiring):
    node = make_node(max_image_age_s=0.2)
    wiring.send_image(node, image_message(rgb_test_image()))
    wait_until(lambda: node.status().image_age_s > 0.3, what="the image to age")
    result = wiring.command("the red mug")
    assert result.error_kind == "stale_image" and "max_image_age_s 0.2" in result.error


def test_segment_service_uses_the_supplied_image_and_also_publishes(make_node, wiring):
    make_node()
    assert wiring.segment.wait_for_service(timeout_sec=10)
    request = Segment.Request()
    request.command = "the red mug"
    request.command_id = "plan-7"
    request.image = image_message(rgb_test_image(), sec=99, frame_id="wrist_camera")
    future = wiring.segment.call_async(request)
    wait_until(future.done, what="the service response")
    result = future.result().result
    assert result.success and result.command_id == "plan-7"
    assert list(result.box) == EXPECTED_BOX
    assert (result.header.stamp.sec, result.header.frame_id) == (99, "wrist_camera")
    assert wiring.results.wait_for(lambda m: m.command_id == "plan-7").success

    empty = Segment.Request()
    empty.command = "the red mug"
    future = wiring.segment.call_async(empty)
    wait_until(future.done, what="the second service response")
    assert future.result().result.error_kind == "no_image"


def test_commands_to_an_unconfigured_node_are_refused_and_a_bad_backend_keeps_it_unconfigured(make_node, wiring):
    node = make_node(autostart=False, **{"reasoner.backend": "no-such-backend"})
    assert node.status().lifecycle_state == "unconfigured"
    assert wiring.command("the red mug").error_kind == "not_ready"

    assert not node.start()
    status = node.status()
    assert status.lifecycle_state == "unconfigured" and not status.ready
    assert "unknown reasoner backend 'no-such-backend'" in status.configure_error
    refused = wiring.command("the red mug, again")
    assert refused.error_kind == "not_ready" and "no-such-backend" in refused.error
    latched = wiring.status.wait_for(lambda m: "no-such-backend" in m.configure_error)
    assert latched.lifecycle_state == "unconfigured"


def test_invalid_parameters_are_rejected_with_a_clear_reason(make_node):
    node = make_node(queue_depth=-1, **{"reasoner.dtype": "int4"})
    assert node.status().lifecycle_state == "unconfigured"
    problem = node.status().configure_error
    assert "queue_depth" in problem and "reasoner.dtype" in problem
    node.set_parameters([Parameter("queue_depth", value=2)])
    assert not node.start()
    assert "queue_depth" not in node.status().configure_error and "reasoner.dtype" in node.status().configure_error
    node.set_parameters([Parameter("reasoner.dtype", value="float32")])
    assert node.start() and node.status().ready and node.status().queue_depth == 2

    good = make_node(autostart=False)
    (outcome,) = good.set_parameters([Parameter("reasoner.device", value="gpu0")])
    assert not outcome.successful and "reasoner.device" in outcome.reason
    (outcome,) = good.set_parameters([Parameter("queue_depth", value=7)])
    assert outcome.successful and good.settings.node.queue_depth == 7


def test_compressed_input(make_node, wiring):
    node = make_node(compressed_input=True)
    source = rgb_test_image()
    compressed = CompressedImage(format="png")
    compressed.header.frame_id = "compressed_camera"
    compressed.data = cv2.imencode(".png", np.ascontiguousarray(source[:, :, ::-1]))[1].tobytes()
    wiring.send_image(node, compressed)
    result = wiring.command("the red mug")
    assert result.success, result.error
    assert (result.mask.width, result.mask.height, result.header.frame_id) == (64, 48, "compressed_camera")
    assert result.mask_pixels == EXPECTED_MASK_PIXELS


@pytest.mark.slow
def test_tiny_models_through_the_node(make_node, wiring, tiny_cache_root):
    """The real transformers reasoner and SAM2 segmenter (tiny, warm-started to always give one answer)."""
    from segzero_ros.core.answer import parse_answer
    from segzero_ros.tiny import tiny_pipeline_config
    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION

    config = tiny_pipeline_config(tiny_cache_root)
    params = {f"reasoner.{k}": v for k, v in vars(config.reasoner).items() if v is not None}
    params.update({f"segmenter.{k}": v for k, v in vars(config.segmenter).items() if v is not None})
    params["reasoner.max_new_tokens"] = 128
    node = make_node(**params)
    assert node.status().ready, node.status().configure_error
    image = image_message(rgb_test_image(96, 64), sec=42, frame_id="tiny")
    wiring.send_image(node, image)

    wiring.command_pub.publish(String(data="the red mug"))
    result = wiring.results.wait_for(lambda m: m.command == "the red mug", timeout=120)
    assert result.success, result.error
    assert _same_header(result.header, image.header)
    assert result.raw_output == TINY_COMPLETION
    assert list(result.box) == parse_answer(TINY_COMPLETION, (96, 64)).box.as_list()
    assert (result.mask.width, result.mask.height) == (96, 64)
    assert _same_header(result.mask.header, image.header)
    assert result.mask_pixels == int(np.count_nonzero(_pixels(result.mask)))
    assert result.reasoner_name == str(config.reasoner.model) and "tiny_sam2" in result.segmenter_name
    assert result.completion_tokens > 0 and result.reason_s > 0 and result.encode_s > 0
    assert len(wiring.results.messages) == 1


@pytest.mark.slow
def test_the_tiny_qwen3_vl_through_the_node(make_node, wiring, tiny_qwen3_dir):
    """tiny + reasoner.family qwen3_vl: the node loads the tiny Qwen3-VL and maps its relative 0..1000 answer
    onto the camera image."""
    from segzero_ros.core.answer import parse_answer
    from segzero_ros.tiny.qwen_vl import QWEN3

    node = make_node(**{"tiny": True, "reasoner.family": "qwen3_vl", "reasoner.max_new_tokens": 128})
    assert node.status().ready, node.status().configure_error
    image = image_message(rgb_test_image(96, 64), sec=43, frame_id="tiny")
    wiring.send_image(node, image)
    wiring.command_pub.publish(String(data="the red mug"))
    result = wiring.results.wait_for(lambda m: m.command == "the red mug", timeout=120)
    assert result.success, result.error
    assert result.raw_output == QWEN3.completion and result.reasoner_name == str(tiny_qwen3_dir)
    assert list(result.box) == parse_answer(QWEN3.completion, (96, 64), 1000).box.as_list()
    assert result.mask_pixels == int(np.count_nonzero(_pixels(result.mask)))


# VisionReasoner answers in the 840 frame; on 64×48, x × 64/840 and y × 48/840 (int(v·f + 0.5)):
# (105,210,420,630) → (8,12,32,36), point (210,420) → (16,24); (525,105,735,315) → (40,6,56,18), (630,210) → (48,12).
TWO_CUPS = ('<think>two red cups</think><answer>[{"bbox_2d": [105,210,420,630], "point_2d": [210,420]}, '
            '{"bbox_2d": [525,105,735,315], "point_2d": [630,210]}]</answer>')
NO_KNIFE = "<think>no knife on this table</think><answer>[]</answer>"


def test_vision_reasoner_format_publishes_every_object_labels_and_not_found(make_node, wiring, tmp_path):
    outputs = tmp_path / "vision_reasoner.json"
    outputs.write_text(json.dumps({"the red cups": TWO_CUPS, "the knife": NO_KNIFE}))
    node = make_node(**{"reasoner.model": str(outputs), "reasoner.answer_format": "vision_reasoner"})
    source = rgb_test_image()
    wiring.send_image(node, image_message(source, sec=7, frame_id="camera_optical"))

    result = wiring.command("the red cups")
    assert result.success, result.error
    assert result.answer_format == "vision_reasoner" and result.object_count == 2
    assert list(result.object_ids) == [1, 2]
    assert list(result.object_boxes) == [8, 12, 32, 36, 40, 6, 56, 18]
    assert list(result.object_point_counts) == [1, 1] and list(result.object_points) == [16, 24, 48, 12]
    assert list(result.object_scores) == [1.0, 1.0]
    # The single-object fields describe the first object; its one point fills both point fields.
    assert list(result.box) == [8, 12, 32, 36] and list(result.point_1) == list(result.point_2) == [16, 24]
    first, second = (32 - 8 + 1) * (36 - 12 + 1), (56 - 40 + 1) * (18 - 6 + 1)
    assert result.mask_pixels == first + second  # the boxes are disjoint (x 8..32 vs 40..56)
    assert (result.labels.encoding, result.labels.width, result.labels.height) == ("mono8", 64, 48)
    assert _same_header(result.labels.header, result.header)
    labels = _pixels(result.labels)
    expected = np.zeros((48, 64), dtype=np.uint8)
    expected[12:37, 8:33] = 1
    expected[6:19, 40:57] = 2
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(_pixels(result.mask), (expected > 0).astype(np.uint8) * 255)

    missing = wiring.command("the knife")
    assert not missing.success and missing.error_kind == ReasoningSegmentation.ERROR_NOT_FOUND == "not_found"
    assert missing.reasoning == "no knife on this table" and missing.object_count == 0
    assert not missing.has_prompt and missing.mask.width == 0 and missing.labels.width == 0
