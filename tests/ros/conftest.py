"""Fixtures every DDS test module shares: one rclpy context per module (its own ROS_DOMAIN_ID, from the
module's DOMAIN_ID), the public client over it, and a factory for nodes in that context that are cleaned up
after each test. Modules whose runtime is missing skip before anything imports rclpy (harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def harness(request: pytest.FixtureRequest) -> Iterator[Any]:
    from tests.ros.harness import RosHarness

    harness = RosHarness(request.module.DOMAIN_ID, name=f"{request.module.__name__.rpartition('.')[2]}_client")
    yield harness
    harness.shutdown()


@pytest.fixture(scope="module")
def client(harness: Any) -> Any:
    """segzero_ros.testing.node_client.NodeClient: the public SegZeroClient plus camera publishers and
    collectors of every result and status."""
    from segzero_ros.testing.node_client import NodeClient

    return NodeClient(harness.client)


@pytest.fixture
def node_factory(harness: Any) -> Iterator[Callable[..., Any]]:
    """node_factory(**parameters) → a SegZeroNode in the harness's context (not started, not spun);
    after the test each is removed from the executor, released and destroyed."""
    from rclpy.parameter import Parameter

    from segzero_ros.ros.node import SegZeroNode

    created: list[Any] = []

    def make(**parameters: Any) -> Any:
        # Tests send a frame, then commands that may wait on slow steps (a first tracking step took > 2 s on a
        # loaded CI machine); any image age is accepted unless a test sets one (stale_image has its own test).
        parameters.setdefault("max_image_age_s", 0.0)
        node = SegZeroNode(context=harness.context,
                           parameter_overrides=[Parameter(name, value=value) for name, value in parameters.items()])
        created.append(node)
        return node

    yield make
    for node in created:
        harness.executor.remove_node(node)
        node.release()
        node.destroy_node()


@pytest.fixture(autouse=True)
def executor_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which a callback raised on the module's spinning thread, with its traceback."""
    if "harness" not in request.fixturenames:
        yield
        return
    harness = request.getfixturevalue("harness")
    before = len(harness.errors)
    yield
    raised = harness.errors[before:]
    if raised:
        pytest.fail("a callback raised on the test executor's thread:\n" + "\n".join(raised), pytrace=False)
