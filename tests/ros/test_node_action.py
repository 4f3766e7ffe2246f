"""The ~/segment action and ~/reasoning_stream over DDS, with an rclpy ActionClient: feedback stages and the
reasoning arriving chunk by chunk, a cancel mid-reasoning, and two goals queued (the second canceled while it
waits), each with the goal status transitions a client sees on the action's status topic (ACCEPTED →
EXECUTING while the command runs → SUCCEEDED / CANCELED / ABORTED; a goal canceled while queued never EXECUTING). The reasoner is a stand-in that streams a scripted answer slowly (so a cancel can land mid-way; real
token streaming of the transformers and openai backends is tested in tests/test_transformers_reasoner.py and
tests/test_openai_reasoner.py); the segmenter fills the box."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.ros.harness import image_message, rgb_test_image, skip_module_unless_ros_runtime, wait_until

pytestmark = [pytest.mark.ros]
skip_module_unless_ros_runtime()

from action_msgs.msg import GoalStatus, GoalStatusArray  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.action import Segment as SegmentAction  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from segzero_ros.backends import register_reasoner  # noqa: E402
from segzero_ros.config import ReasonerConfig  # noqa: E402
from segzero_ros.errors import CanceledError  # noqa: E402
from segzero_ros.reasoning.scripted import ScriptedReasoner  # noqa: E402
from segzero_ros.testing.collect import Collector  # noqa: E402

DOMAIN_ID = 82
ANSWER = ('<think>the red mug is left of the plate</think><answer>'
          '{"bbox": [105, 175, 420, 525], "points_1": [210, 350], "points_2": [315, 437]}</answer>')
CHUNK = 8
CHUNK_DELAY_S = 0.05  # ~17 chunks: ~0.85 s of "generation"


class SlowStreamingReasoner(ScriptedReasoner):
    """Streams its scripted answer CHUNK characters at a time and stops at a cancel, like a real model."""

    def reason_stream(self, image, command, progress):
        text = self._outputs["*"]
        for start in range(0, len(text), CHUNK):
            if progress.cancel.wait(CHUNK_DELAY_S):
                raise CanceledError(f"canceled after {start} characters")
            progress.text(text[start:start + CHUNK])
        return super().reason(image, command)


def _slow_from_config(config: ReasonerConfig) -> SlowStreamingReasoner:
    return SlowStreamingReasoner(json.loads(Path(config.model).read_text(encoding="utf-8")), name="slow-stream")


register_reasoner("test-slow-stream", _slow_from_config)


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("scripted") / "outputs.json"
    path.write_text(json.dumps({"*": ANSWER}))
    return path


NAMES = {GoalStatus.STATUS_ACCEPTED: "ACCEPTED", GoalStatus.STATUS_EXECUTING: "EXECUTING",
         GoalStatus.STATUS_CANCELING: "CANCELING", GoalStatus.STATUS_SUCCEEDED: "SUCCEEDED",
         GoalStatus.STATUS_ABORTED: "ABORTED", GoalStatus.STATUS_CANCELED: "CANCELED"}
RANK = {"ACCEPTED": 0, "EXECUTING": 1, "CANCELING": 2, "SUCCEEDED": 3, "ABORTED": 3, "CANCELED": 3}


class StatusRecorder:
    """Every goal's states in the order the action's status topic reports them (what ActionClient reads)."""

    def __init__(self) -> None:
        self.seen: dict[bytes, list[str]] = {}

    def __call__(self, msg) -> None:
        for status in msg.status_list:
            states = self.seen.setdefault(bytes(status.goal_info.goal_id.uuid), [])
            name = NAMES.get(status.status, str(status.status))
            if not states or states[-1] != name:
                states.append(name)

    def of(self, handle) -> list[str]:
        """The goal's states so far, checked to only ever move forward."""
        states = list(self.seen.get(bytes(handle.goal_id.uuid), []))
        ranks = [RANK[state] for state in states]
        assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), f"states out of order: {states}"
        return states


@pytest.fixture(scope="module")
def statuses(harness) -> StatusRecorder:
    recorder = StatusRecorder()
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    harness.client.create_subscription(GoalStatusArray, "/segzero/segment/_action/status", recorder, qos)
    return recorder


@pytest.fixture(scope="module")
def topics(harness):
    collectors = {"results": Collector("result"), "stream": Collector("reasoning_stream")}
    harness.client.create_subscription(ReasoningSegmentation, "/segzero/result", collectors["results"], 100)
    harness.client.create_subscription(String, "/segzero/reasoning_stream", collectors["stream"], 200)
    return collectors


@pytest.fixture
def node(node_factory, harness, topics, outputs_file):
    node = node_factory(**{"reasoner.backend": "test-slow-stream", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box"})
    assert node.start(), node.status().configure_error
    harness.executor.add_node(node)
    camera = harness.publisher(Image, "/image")
    wait_until(lambda: camera.get_subscription_count() >= 1, what="the node's image subscription")
    camera.publish(image_message(rgb_test_image(), frame_id="camera_optical"))
    wait_until(lambda: node.status().image_age_s >= 0, what="the node to receive the image")
    for collector in topics.values():
        collector.clear()
    return node


@pytest.fixture(scope="module")
def action(harness):
    client = ActionClient(harness.client, SegmentAction, "/segzero/segment")
    yield client
    client.destroy()


def send(action, command: str, feedback: list) -> object:
    assert action.wait_for_server(timeout_sec=10)
    future = action.send_goal_async(SegmentAction.Goal(command=command), feedback_callback=feedback.append)
    wait_until(future.done, what="the goal to be accepted")
    handle = future.result()
    assert handle.accepted
    return handle


def result_of(handle, timeout: float = 20.0):
    future = handle.get_result_async()
    wait_until(future.done, timeout=timeout, what="the goal's result")
    return future.result()


def stream_of(topics, command_id: str) -> list[dict]:
    return [json.loads(m.data) for m in topics["stream"].messages if json.loads(m.data)["command_id"] == command_id]


def test_goal_streams_feedback_and_reasoning_then_succeeds(node, action, topics, statuses):
    feedback: list = []
    handle = send(action, "the red mug", feedback)
    wait_until(lambda: any(f.feedback.stage == "reasoning" for f in feedback), what="reasoning feedback")
    wait_until(lambda: statuses.of(handle)[-1:] == ["EXECUTING"], what="EXECUTING while the model reasons")
    outcome = result_of(handle)
    assert outcome.status == GoalStatus.STATUS_SUCCEEDED
    wait_until(lambda: statuses.of(handle)[-1:] == ["SUCCEEDED"], what="the SUCCEEDED status")
    assert statuses.of(handle)[-2:] == ["EXECUTING", "SUCCEEDED"]
    result = outcome.result.result
    assert result.success and list(result.box) == [8, 10, 32, 30] and result.raw_output == ANSWER
    messages = [entry.feedback for entry in feedback]
    stages = [m.stage for m in messages]
    assert stages[0] == "queued" and "reasoning" in stages and stages[-1] == "segmenting"
    assert all(m.command_id == result.command_id for m in messages)
    reasoning = [m.reasoning for m in messages if m.stage == "reasoning"]
    assert len(reasoning) >= 3 and all(ANSWER.startswith(text) for text in reasoning)
    assert len(set(reasoning)) >= 3  # it grew while the model generated
    assert [m.elapsed_s for m in messages] == sorted(m.elapsed_s for m in messages)

    topics["stream"].wait_for(lambda m: json.loads(m.data).get("done"))
    chunks = stream_of(topics, result.command_id)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert "".join(c["text"] for c in chunks) == ANSWER and chunks[-1] == {
        "command_id": result.command_id, "seq": len(chunks) - 1, "text": "", "done": True}
    topics["results"].wait_for(lambda m: m.command_id == result.command_id)
    assert [m.command_id for m in topics["results"].messages].count(result.command_id) == 1


def test_cancel_mid_reasoning_stops_generation_and_answers_once(node, action, topics, statuses):
    feedback: list = []
    handle = send(action, "the red mug", feedback)
    wait_until(lambda: any(f.feedback.stage == "reasoning" and len(f.feedback.reasoning) >= 2 * CHUNK
                           for f in feedback), what="reasoning feedback")
    asked = time.monotonic()
    cancel = handle.cancel_goal_async()
    wait_until(cancel.done, what="the cancel response")
    assert len(cancel.result().goals_canceling) == 1
    outcome = result_of(handle)
    assert time.monotonic() - asked < 2.0
    assert outcome.status == GoalStatus.STATUS_CANCELED
    wait_until(lambda: statuses.of(handle)[-1:] == ["CANCELED"], what="the CANCELED status")
    assert statuses.of(handle)[-3:] == ["EXECUTING", "CANCELING", "CANCELED"]
    result = outcome.result.result
    assert not result.success and result.error_kind == "canceled" and "canceled after" in result.error
    published = topics["results"].wait_for(lambda m: m.command_id == result.command_id)
    assert published.error_kind == "canceled"
    time.sleep(0.3)
    assert [m.command_id for m in topics["results"].messages].count(result.command_id) == 1
    streamed = "".join(c["text"] for c in stream_of(topics, result.command_id))
    assert ANSWER.startswith(streamed) and len(streamed) < len(ANSWER)  # generation stopped part-way


def test_two_goals_queue_and_the_waiting_one_can_be_canceled(node, action, topics, statuses):
    first_feedback: list = []
    second_feedback: list = []
    third_feedback: list = []
    first = send(action, "the red mug", first_feedback)
    second = send(action, "the red mug", second_feedback)
    third = send(action, "the red mug", third_feedback)
    wait_until(lambda: second_feedback and third_feedback, what="queued feedback")
    assert second_feedback[0].feedback.stage == "queued"
    cancel = third.cancel_goal_async()
    wait_until(cancel.done, what="the cancel response")
    third_outcome = result_of(third)
    assert third_outcome.status == GoalStatus.STATUS_CANCELED
    assert third_outcome.result.result.error == "canceled while queued"
    assert not any(f.feedback.stage == "reasoning" for f in third_feedback)
    wait_until(lambda: statuses.of(third)[-1:] == ["CANCELED"], what="the CANCELED status")
    assert "EXECUTING" not in statuses.of(third)  # canceled while it waited: ACCEPTED → CANCELING → CANCELED
    outcomes = [result_of(first), result_of(second)]
    assert [o.status for o in outcomes] == [GoalStatus.STATUS_SUCCEEDED] * 2
    first_id, second_id = (o.result.result.command_id for o in outcomes)
    assert int(second_id) == int(first_id) + 1  # FIFO: the second ran after the first
    # Canceling a goal that has finished is refused.
    late = first.cancel_goal_async()
    wait_until(late.done, what="the late cancel response")
    assert late.result().goals_canceling == []


def test_goal_with_its_own_image_and_include_mask_false(node, action):
    feedback: list = []
    assert action.wait_for_server(timeout_sec=10)
    goal = SegmentAction.Goal(command="the red mug", command_id="mine-1", include_mask=False,
                              image=image_message(rgb_test_image(), frame_id="gripper_camera"))
    future = action.send_goal_async(goal, feedback_callback=feedback.append)
    wait_until(future.done, what="the goal to be accepted")
    outcome = result_of(future.result())
    result = outcome.result.result
    assert outcome.status == GoalStatus.STATUS_SUCCEEDED and result.command_id == "mine-1"
    assert result.header.frame_id == "gripper_camera" and result.mask.width == 0 and result.mask_pixels > 0
    assert result.labels.width == 0 and len(result.labels.data) == 0  # no image at all in a mask-less answer
    assert all(f.feedback.command_id == "mine-1" for f in feedback)


def test_a_goal_the_node_cannot_run_is_aborted_with_its_error(node_factory, harness, action, outputs_file, statuses):
    idle = node_factory(**{"reasoner.backend": "test-slow-stream", "reasoner.model": str(outputs_file),
                           "segmenter.backend": "box", "autostart": False})
    harness.executor.add_node(idle)
    feedback: list = []
    handle = send(action, "the red mug", feedback)
    outcome = result_of(handle)
    assert outcome.status == GoalStatus.STATUS_ABORTED
    assert outcome.result.result.error_kind == "not_ready"
    wait_until(lambda: statuses.of(handle)[-1:] == ["ABORTED"], what="the ABORTED status")


@pytest.mark.slow
def test_a_goal_served_by_a_real_transformers_serve_streams_its_tokens(node_factory, harness, topics, action,
                                                                       tiny_qwen_dir, tmp_path):
    """End to end: node (reasoner.backend openai) → real `transformers serve` on 127.0.0.1 → SSE tokens →
    action feedback and ~/reasoning_stream → the result with the tiny model's fixed answer."""
    pytest.importorskip("fastapi")
    from segzero_ros.testing.servers import transformers_serve
    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION

    with transformers_serve(tiny_qwen_dir, tmp_path / "serve.log") as server:
        node = node_factory(**{"reasoner.backend": "openai", "reasoner.base_url": server.base_url,
                               "reasoner.model": "", "reasoner.max_new_tokens": 96, "segmenter.backend": "box"})
        assert node.start(), node.status().configure_error
        harness.executor.add_node(node)
        camera = harness.publisher(Image, "/image")
        wait_until(lambda: camera.get_subscription_count() >= 1, what="the node's image subscription")
        camera.publish(image_message(rgb_test_image(), frame_id="camera_optical"))
        wait_until(lambda: node.status().image_age_s >= 0, what="the node to receive the image")
        topics["stream"].clear()
        feedback: list = []
        outcome = result_of(send(action, "the red mug", feedback), timeout=60)
    result = outcome.result.result
    assert outcome.status == GoalStatus.STATUS_SUCCEEDED and result.raw_output == TINY_COMPLETION
    assert result.reasoner_name == str(tiny_qwen_dir)
    topics["stream"].wait_for(lambda m: json.loads(m.data).get("done"))
    chunks = stream_of(topics, result.command_id)
    assert len(chunks) > 10 and "".join(c["text"] for c in chunks) == TINY_COMPLETION  # token by token
