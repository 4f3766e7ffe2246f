"""Fault injection into a running node: backends that raise, run out of GPU memory, hang, or fail to load.

The node runs in this process and builds its models through the real backend registry, with the "faulty"
backends of segzero_ros.testing.faults; each test checks the error result, then that the node serves the
next command normally.
"""

from __future__ import annotations

import collections
import itertools
import threading

import pytest

from tests.ros.harness import image_message, rgb_test_image, skip_module_unless_ros_runtime

pytestmark = pytest.mark.ros
skip_module_unless_ros_runtime()

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from segzero_ros.ros.node import SegZeroNode, add_to_executor  # noqa: E402
from segzero_ros.testing.faults import (  # noqa: E402
    FAULTY_BACKEND,
    Fault,
    FaultScript,
    install_fault_script,
    register_fault_backends,
)
from segzero_ros.testing.node_client import NodeClient, wait_until  # noqa: E402

DOMAIN_ID = 75
# FAULTY_ANSWER's 840-frame box (210,210,630,630) on the 64×48 test image: x × 64/840, y × 48/840.
EXPECTED_BOX = [16, 12, 48, 36]
_script_names = itertools.count()


register_fault_backends()


@pytest.fixture
def make_node(node_factory, harness, client):
    scripts: list[FaultScript] = []

    def make(reasoner: FaultScript | None = None, segmenter: FaultScript | None = None, *, start: bool = True,
             **overrides) -> SegZeroNode:
        values = {"reasoner.backend": FAULTY_BACKEND, "segmenter.backend": FAULTY_BACKEND,
                  "status_period_s": 0.1, "autostart": False}
        for stage, script in (("reasoner", reasoner), ("segmenter", segmenter)):
            name = f"{stage}-{next(_script_names)}"
            scripts.append(install_fault_script(name, script or FaultScript()))
            values[f"{stage}.model"] = name
        node = node_factory(**{**values, **overrides})
        if start:
            assert node.start(), node.status().configure_error
        harness.executor.add_node(node)
        client.wait_connected(camera=start)
        client.results.clear()
        client.status.clear()
        if start:
            publish_image(client, node)
        return node

    yield make
    for script in scripts:
        script.release.set()  # no hanging call outlives its test


def publish_image(client: NodeClient, node: SegZeroNode) -> None:
    before = node.status().images_received
    client.images.publish(image_message(rgb_test_image()))
    wait_until(lambda: node.status().images_received > before, 20, "the node to receive the image")


def command(client: NodeClient, text: str):
    client.send_command(text)
    return client.results.wait_for(lambda m: m.command == text)


def assert_serves_next_command(client: NodeClient, text: str = "the next command") -> None:
    result = command(client, text)
    assert result.success, result.error
    assert list(result.box) == EXPECTED_BOX


def test_reasoner_raising_gives_reasoner_failed_then_recovers(make_node, client):
    make_node(reasoner=FaultScript.of(Fault.RAISE))
    result = command(client, "the red mug")
    assert (result.success, result.error_kind) == (False, "reasoner_failed")
    assert result.error == "RuntimeError: injected reasoner failure"
    assert not result.has_prompt
    assert_serves_next_command(client)


def test_gpu_out_of_memory_in_the_reasoner_gives_reasoner_failed_then_recovers(make_node, client):
    make_node(reasoner=FaultScript.of(Fault.OUT_OF_MEMORY, Fault.OUT_OF_MEMORY))
    for text in ("the red mug", "the red mug again"):
        result = command(client, text)
        assert result.error_kind == "reasoner_failed"
        assert result.error.startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB")
    assert_serves_next_command(client)


@pytest.mark.parametrize("fault", [Fault.RAISE, Fault.OUT_OF_MEMORY])
def test_segmenter_failure_keeps_the_prompt_and_recovers(make_node, client, fault):
    make_node(segmenter=FaultScript.of(fault))
    result = command(client, "the red mug")
    assert (result.success, result.error_kind) == (False, "segmenter_failed")
    expected = ("RuntimeError: injected segmenter failure" if fault is Fault.RAISE
                else "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB (injected in segmenter)")
    assert result.error == expected
    assert result.has_prompt and list(result.box) == EXPECTED_BOX  # the reasoner's answer is still reported
    assert result.mask.width == 0
    assert_serves_next_command(client)


def test_hanging_reasoner_times_out_node_reports_stuck_and_recovers_when_it_returns(make_node, client):
    script = FaultScript.of(Fault.HANG)
    node = make_node(reasoner=script, inference_timeout_s=0.5)

    client.send_command("hangs")
    assert script.hanging.wait(20)
    client.send_command("queued behind it")
    wait_until(lambda: node.status().queue_length == 1, 20, "the second command to queue")

    timed_out = client.results.wait_for(lambda m: m.command == "hangs")
    assert (timed_out.success, timed_out.error_kind) == (False, "timeout")
    assert timed_out.error.startswith("inference did not finish within inference_timeout_s (0.5 s)")
    queued = client.results.wait_for(lambda m: m.command == "queued behind it")
    assert queued.error_kind == "not_ready"
    assert queued.error.startswith("inference worker is stuck: command 1 overran inference_timeout_s")

    stuck = client.status.wait_for(lambda m: m.stuck)
    assert stuck.busy and stuck.commands_timed_out == 1 and stuck.running_s >= 0.5
    refused = command(client, "while stuck")
    assert refused.error_kind == "not_ready" and "inference worker is stuck" in refused.error

    script.release.set()  # the model call returns; its late result must not be published
    wait_until(lambda: not node.status().stuck and not node.status().busy, 20, "the worker to come back")
    client.status.wait_for(lambda m: m.commands_timed_out == 1 and not m.stuck and m.running_s == -1.0)
    assert_serves_next_command(client)
    results = client.results.messages
    assert collections.Counter(r.command for r in results) == {
        "hangs": 1, "queued behind it": 1, "while stuck": 1, "the next command": 1}
    status = node.status()
    assert (status.commands_received, status.results_failed, status.results_succeeded) == (4, 3, 1)


def test_cleanup_with_a_hanging_model_call_abandons_the_worker_instead_of_hanging(make_node, client):
    reasoner, segmenter = FaultScript.of(Fault.HANG), FaultScript()
    node = make_node(reasoner=reasoner, segmenter=segmenter, inference_timeout_s=60.0)
    client.send_command("hangs")
    assert reasoner.hanging.wait(20)
    node.set_parameters([Parameter("inference_timeout_s", value=0.3)])  # live parameter

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS  # returns at the deadline
    assert node.status().lifecycle_state == "unconfigured"
    assert client.results.wait_for(lambda m: m.command == "hangs").error_kind == "timeout"
    assert (reasoner.closed, segmenter.closed) == (0, 0)  # never closed under a running call

    reasoner.release.set()
    wait_until(lambda: (reasoner.closed, segmenter.closed) == (1, 1), 20, "the abandoned worker to free its models")
    assert node.start()
    publish_image(client, node)
    assert_serves_next_command(client)
    assert [r.command for r in client.results.messages] == ["hangs", "the next command"]


def test_reasoner_load_failure_leaves_the_node_unconfigured_with_a_clear_log(make_node, client, capfd):
    node = make_node(reasoner=FaultScript(load_error="no weights in /models/seg-zero-7b"), start=False)
    assert not node.start()
    status = node.status()
    assert (status.lifecycle_state, status.ready) == ("unconfigured", False)
    expected = "cannot load models: ModelLoadError: no weights in /models/seg-zero-7b"
    assert status.configure_error == expected
    assert f"{expected}; staying unconfigured" in capfd.readouterr().err
    refused = command(client, "the red mug")
    assert refused.error_kind == "not_ready" and expected in refused.error


def test_segmenter_load_failure_frees_the_loaded_reasoner_and_a_retry_can_succeed(make_node, client, capfd):
    reasoner, segmenter = FaultScript(), FaultScript(load_error="sam2 checkpoint is corrupt")
    node = make_node(reasoner=reasoner, segmenter=segmenter, start=False)
    assert not node.start()
    assert node.status().lifecycle_state == "unconfigured"
    assert "cannot load models: ModelLoadError: sam2 checkpoint is corrupt" in capfd.readouterr().err
    assert reasoner.closed == 1  # not leaked on the GPU

    segmenter.load_error = None  # e.g. the operator fixed the checkpoint; configure again
    assert node.start()
    publish_image(client, node)
    assert_serves_next_command(client)


def test_lifecycle_state_status_and_commands_are_answered_while_the_models_load(harness, client, node_factory):
    """Autostart as segzero_node runs it (TransitionExecutor); the load hangs until released."""
    import time

    from lifecycle_msgs.srv import GetState

    from segzero_ros.ros.executor import TransitionExecutor

    slow_name, segmenter_name = f"slow-{next(_script_names)}", f"segmenter-{next(_script_names)}"
    slow = install_fault_script(slow_name, FaultScript(slow_load=True))
    install_fault_script(segmenter_name, FaultScript())
    values = {"reasoner.backend": FAULTY_BACKEND, "reasoner.model": slow_name, "segmenter.backend": FAULTY_BACKEND,
              "segmenter.model": segmenter_name, "status_period_s": 0.1}
    node = node_factory(**values)
    executor = TransitionExecutor(context=harness.context)
    add_to_executor(node, executor)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert slow.hanging.wait(20), "the load never started"
        get_state = harness.client.create_client(GetState, "/segzero/get_state")
        assert get_state.wait_for_service(20)
        asked = time.monotonic()
        answer = get_state.call_async(GetState.Request())
        wait_until(answer.done, 10, "get_state during the load")
        assert time.monotonic() - asked < 0.5
        assert answer.result().current_state.label == "configuring"
        loading = client.status.wait_for(lambda m: m.lifecycle_state == "configuring" and m.loading_s > 0.2)
        assert not loading.ready and loading.configure_error == ""
        client.wait_connected(camera=False)
        client.results.clear()
        client.send_command("during the load")
        refused = client.results.wait_for(lambda m: m.command == "during the load")
        assert refused.error_kind == "not_ready" and refused.error.startswith("models are loading (")
        slow.release.set()
        ready = client.status.wait_for(lambda m: m.lifecycle_state == "active" and m.ready)
        assert ready.loading_s == -1.0
    finally:
        slow.release.set()
        executor.remove_node(node)
        executor.shutdown()

