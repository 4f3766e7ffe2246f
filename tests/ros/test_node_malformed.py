"""Malformed input published to a running node: it keeps running and answers every command exactly once.

The node runs in this process with stand-in models (a reasoner replaying a fixed answer, the box segmenter),
so what is under test is the node's intake: image checks, command checks, queueing and publishing. Each
test ends with a good command succeeding, i.e. the node has recovered.
"""

from __future__ import annotations

import array
import collections
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.ros.harness import image_message, rgb_test_image, skip_module_unless_ros_runtime

pytestmark = pytest.mark.ros
skip_module_unless_ros_runtime()

from segzero_ros.srv import Segment  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from segzero_ros.ros.node import SegZeroNode  # noqa: E402
from segzero_ros.scheduler import MAX_COMMAND_CHARS  # noqa: E402
from segzero_ros.testing.node_client import NodeClient, wait_until  # noqa: E402

DOMAIN_ID = 74
# In the 840 frame; on the 64×48 test image: box (105,175,420,525) → (8,10,32,30).
GOOD_OUTPUT = ('<think>the mug</think><answer>{"bbox": [105, 175, 420, 525], "points_1": [210, 350], '
               '"points_2": [315, 437]}</answer>')
EXPECTED_BOX = [8, 10, 32, 30]
# A lone surrogate is valid in a Python str (json.loads makes one from "\ud800") but not in a ROS string.
SURROGATE_THINK_OUTPUT = GOOD_OUTPUT.replace("the mug", "odd \ud800 text")
DEFAULT_MAX_PIXELS = 33_554_432


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"odd model text": SURROGATE_THINK_OUTPUT, "*": GOOD_OUTPUT}))
    return path


@pytest.fixture
def make_node(node_factory, harness, client, outputs_file):
    def make(**overrides) -> SegZeroNode:
        values = {"reasoner.backend": "scripted", "reasoner.model": str(outputs_file), "segmenter.backend": "box"}
        node = node_factory(**{**values, **overrides})
        assert node.start(), node.status().configure_error
        harness.executor.add_node(node)
        client.wait_connected()
        client.results.clear()
        client.status.clear()  # the previous test's node may have latched its status here
        return node

    return make


def send_image(client: NodeClient, node: SegZeroNode, msg) -> None:
    """Publish one image and wait until the node has taken it in (the camera QoS is best effort)."""
    before = node.status().images_received
    publisher = client.compressed_images if isinstance(msg, CompressedImage) else client.images
    publisher.publish(msg)
    wait_until(lambda: node.status().images_received > before, 20, "the node to receive the image")


def command(client: NodeClient, text: str):
    client.send_command(text)
    return client.results.wait_for(lambda m: m.command == text)


def assert_recovers(client: NodeClient, node: SegZeroNode) -> None:
    send_image(client, node, image_message(rgb_test_image()))
    result = command(client, "the red mug, now with a good image")
    assert result.success, result.error
    assert list(result.box) == EXPECTED_BOX


def raw_image(encoding: str, width: int, height: int, step: int, size: int) -> Image:
    msg = Image(encoding=encoding, width=width, height=height, step=step)
    msg.data = array.array("B", bytes(size))
    msg.header.frame_id = "broken_camera"
    return msg


UNUSABLE_IMAGES = {
    "unknown encoding": (raw_image("yuv422", 4, 2, 8, 16), "unsupported image encoding 'yuv422'"),
    "empty encoding": (raw_image("", 4, 2, 12, 24), "unsupported image encoding ''"),
    # A mono8 camera labelled rgb8: each row holds 4 bytes, rgb8 needs 12.
    "wrong encoding, step too small": (
        raw_image("rgb8", 4, 2, 4, 8), "step 4 is shorter than one row of 4 rgb8 pixels (12 bytes)"),
    "data shorter than height×step": (
        raw_image("rgb8", 4, 2, 12, 20), "data holds 20 bytes, but 2 rows of step 12 need 24"),
    "no data at all": (raw_image("mono8", 640, 480, 640, 0), "data holds 0 bytes, but 480 rows of step 640 need"),
    "zero size": (raw_image("rgb8", 0, 0, 0, 0), "image has no pixels (0×0)"),
    "zero width": (raw_image("mono8", 0, 5, 0, 0), "image has no pixels (0×5)"),
    "absurd size claimed": (
        raw_image("mono8", 2**32 - 1, 2**32 - 1, 2**32 - 1, 64),
        f"image of 4294967295×4294967295 pixels is larger than max_image_pixels ({DEFAULT_MAX_PIXELS})"),
}


@pytest.mark.parametrize("case", list(UNUSABLE_IMAGES))
def test_unusable_image_is_counted_and_a_command_on_it_says_why(make_node, client, case):
    node = make_node(status_period_s=0.1)
    image, reason = UNUSABLE_IMAGES[case]
    send_image(client, node, image)

    status = node.status()
    assert (status.images_received, status.images_unusable) == (1, 1)
    assert status.last_image_error.startswith(reason)
    latched = client.status.wait_for(lambda m: m.images_unusable == 1)
    assert latched.last_image_error.startswith(reason)

    result = command(client, "the red mug")
    assert (result.success, result.error_kind) == (False, "invalid_input")
    assert result.error.startswith(f"image is unusable: {reason}")
    assert result.header.frame_id == "broken_camera"  # the header survives so the planner knows which frame
    assert_recovers(client, node)
    assert node.status().images_unusable == 1
    assert len(client.results.messages) == 2


def test_undecodable_compressed_image_is_counted_once_however_often_it_is_used(make_node, client):
    node = make_node(compressed_input=True)
    send_image(client, node, CompressedImage(format="png"))  # empty: refused on arrival
    assert node.status().images_unusable == 1
    assert command(client, "empty").error == "image is unusable: compressed image is empty"

    garbage = CompressedImage(format="jpeg")
    garbage.data = array.array("B", b"\xff\xd8 not really a jpeg" * 10)
    send_image(client, node, garbage)
    assert node.status().images_unusable == 1  # undecodable is only found when a command decodes it
    for text in ("first use", "second use"):
        result = command(client, text)
        assert (result.error_kind, result.error) == ("invalid_input", "cannot decode compressed image (format 'jpeg')")
    status = node.status()
    assert (status.images_received, status.images_unusable) == (2, 2)
    assert status.last_image_error == "cannot decode compressed image (format 'jpeg')"
    assert len(client.results.messages) == 3


def png_claiming(width: int, height: int) -> CompressedImage:
    """A tiny PNG whose header claims width × height rgb pixels: a decompression bomb's first step."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
    msg = CompressedImage(format="png")
    msg.data = array.array("B", data)
    return msg


def test_compressed_image_too_large_is_refused_from_its_header_before_decoding(make_node, client):
    node = make_node(compressed_input=True)
    send_image(client, node, png_claiming(10_000, 10_000))  # 300 MB once decoded, from a 100-byte message
    result = command(client, "the red mug")
    assert (result.error_kind, result.error) == (
        "invalid_input", f"compressed image of 10000×10000 pixels is larger than max_image_pixels ({DEFAULT_MAX_PIXELS})")
    assert node.status().images_unusable == 1


def test_decoder_exceptions_become_invalid_input(make_node, client):
    # Beyond PIL's bomb limit the header is not read; OpenCV then raises (cv2.error) instead of returning None.
    node = make_node(compressed_input=True, max_image_pixels=2**31 - 1)
    send_image(client, node, png_claiming(50_000, 50_000))
    result = command(client, "the red mug")
    assert result.error_kind == "invalid_input"
    assert result.error.startswith("cannot decode compressed image (format 'png'): OpenCV")
    assert "CV_IO_MAX_IMAGE_PIXELS" in result.error
    assert node.status().images_unusable == 1


def test_8k_images_are_refused_by_default_without_holding_their_pixels(make_node, client):
    node = make_node()
    side = 8192
    reason = f"image of {side}×{side} pixels is larger than max_image_pixels ({DEFAULT_MAX_PIXELS})"

    def huge_image() -> Image:  # 192 MiB of rgb8
        msg = Image(encoding="rgb8", width=side, height=side, step=3 * side)
        msg.data = array.array("B", bytes(3 * side * side))
        return msg

    send_image(client, node, huge_image())
    baseline = rss_bytes()
    for _ in range(3):
        send_image(client, node, huge_image())
    grown = rss_bytes() - baseline
    # Had the node (or DDS) kept each refused image, this process would have grown by 3 × 192 MiB.
    assert grown < 96 * 2**20, f"grew by {grown / 2**20:.0f} MiB"
    status = node.status()
    assert (status.images_received, status.images_unusable, status.last_image_error) == (4, 4, reason)
    result = command(client, "the red mug")
    assert (result.error_kind, result.error) == ("invalid_input", f"image is unusable: {reason}")
    assert_recovers(client, node)


def test_8k_image_is_segmented_when_max_image_pixels_allows_it(make_node, client):
    side = 8192
    node = make_node(max_image_pixels=side * side)
    pixels = np.zeros((side, side), dtype=np.uint8)
    pixels[::512, ::512] = 200
    send_image(client, node, image_message(pixels, "mono8", frame_id="big_camera"))
    result = command(client, "the red mug")
    assert result.success, result.error
    # 840-frame box (105,175,420,525) × 8192/840: x 1024..4096, y 1706.67→1707..5120.
    assert list(result.box) == [1024, 1707, 4096, 5120]
    assert (result.mask.width, result.mask.height) == (side, side)
    assert result.mask_pixels == (4096 - 1024 + 1) * (5120 - 1707 + 1)
    assert node.status().images_unusable == 0


def test_segment_service_refuses_an_unusable_supplied_image_without_counting_it_as_a_camera_frame(
        make_node, client, harness):
    node = make_node()
    segment = harness.client.create_client(Segment, "/segzero/segment")
    assert segment.wait_for_service(timeout_sec=10)
    request = Segment.Request(command="the red mug", command_id="svc-1")
    request.image = raw_image("mono8", 100_000, 100_000, 100_000, 64)
    future = segment.call_async(request)
    wait_until(future.done, 20, "the service response")
    result = future.result().result
    assert (result.error_kind, result.error) == (
        "invalid_input",
        f"image is unusable: image of 100000×100000 pixels is larger than max_image_pixels ({DEFAULT_MAX_PIXELS})")
    assert result.header.frame_id == "broken_camera"
    assert client.results.wait_for(lambda m: m.command_id == "svc-1").error_kind == "invalid_input"
    assert (node.status().images_received, node.status().images_unusable) == (0, 0)
    harness.client.destroy_client(segment)
    assert_recovers(client, node)


def test_empty_blank_and_oversized_commands_are_refused_with_the_reason(make_node, client):
    node = make_node()
    send_image(client, node, image_message(rgb_test_image()))
    for text in ("", " \n\t "):
        result = command(client, text)
        assert (result.error_kind, result.error) == ("invalid_input", "command is empty")
    huge = "find the red mug " * (100 * 1024 // 17 + 1)
    assert len(huge) > 100 * 1024
    result = command(client, huge)
    assert result.error_kind == "invalid_input"
    assert result.error == f"command has {len(huge)} characters; at most {MAX_COMMAND_CHARS} are accepted"
    assert result.command == huge  # echoed in full, so the planner can match it
    longest = "x" * MAX_COMMAND_CHARS
    assert command(client, longest).success
    assert_recovers(client, node)
    assert len(client.results.messages) == 5


def test_non_utf8_command_bytes_are_replaced_not_fatal(make_node, client):
    """rclpy decodes wire strings with errors='replace' and stops at a NUL; the node must cope with both."""
    node = make_node()
    send_image(client, node, image_message(rgb_test_image()))
    cases = {
        b"\xff\xfe the red mug \xc3(": "\ufffd\ufffd the red mug \ufffd(",
        b"\x80\x81\x82": "\ufffd\ufffd\ufffd",
        b"the mug\x00 and a hidden tail": "the mug",
        b"\xed\xa0\x80 encoded surrogate": "\ufffd\ufffd\ufffd encoded surrogate",
    }
    for payload, decoded in cases.items():
        client.send_raw_command(payload)
        result = client.results.wait_for(lambda m, d=decoded: m.command == d)
        assert result.success, result.error
    client.send_raw_command(b"\x00\xff")  # the NUL ends the string at once: an empty command
    assert client.results.wait_for(lambda m: m.command == "").error == "command is empty"
    assert len(client.results.messages) == len(cases) + 1
    assert node.status().commands_received == len(cases) + 1


def test_text_that_ros_cannot_carry_still_gets_its_one_result(make_node, client):
    """Lone surrogates from an in-process caller or in model output would make publishing raise."""
    node = make_node()
    send_image(client, node, image_message(rgb_test_image()))
    node.submit("the \udcff mug")
    result = client.results.wait_for(lambda m: m.command == "the ? mug")
    assert result.success
    node.submit("odd model text")
    result = client.results.wait_for(lambda m: m.command == "odd model text")
    assert result.success and result.reasoning == "odd ? text"
    assert len(client.results.messages) == 2


def test_commands_before_any_image_each_get_no_image(make_node, client):
    make_node()
    texts = [f"early {index}" for index in range(20)]
    for text in texts:
        client.send_command(text)
    wait_until(lambda: len(client.results.messages) >= len(texts), 20, "20 results")
    results = client.results.messages
    assert sorted(r.command for r in results) == sorted(texts)
    assert {r.error_kind for r in results} == {"no_image"}


def test_burst_of_100_commands_gets_exactly_100_results(make_node, client):
    node = make_node()
    send_image(client, node, image_message(rgb_test_image()))
    texts = [f"burst {index}" for index in range(100)]
    for text in texts:
        client.send_command(text)
    wait_until(lambda: len(client.results.messages) >= 100, 30, "100 results")
    wait_until(lambda: not node.status().busy and node.status().queue_length == 0, 20, "the node to idle")
    results = client.results.messages
    assert len(results) == 100
    assert collections.Counter(r.command for r in results) == collections.Counter(texts)
    assert len({r.command_id for r in results}) == 100
    kinds = collections.Counter(r.error_kind for r in results)
    assert set(kinds) <= {"", "queue_full"}
    assert kinds[""] >= 1 + node.settings.node.queue_depth  # at least the running one and a full queue succeed
    status = node.status()
    assert status.commands_received == 100
    assert status.results_succeeded + status.results_failed == 100
    assert_recovers(client, node)
