"""An executor for nodes whose lifecycle transitions block (the segzero node's configure loads the models).

Run inline, a transition that waits for a model load stalls everything else the node does: status,
commands, parameters and `ros2 lifecycle get`. rclpy's MultiThreadedExecutor avoids that but costs the hot
path: with instant stand-in models, command → result at a client measured 18-60 ms median (spikes to
1.3 s) on two busy cores, against 8.6 ms with the SingleThreadedExecutor (benchmarks/bench_node.py). So
this one runs every callback inline, like SingleThreadedExecutor, except those of the callback groups it is
told to offload (the lifecycle services and the autostart timer), which go to a small thread pool.
Only public rclpy API (spin_once, wait_for_ready_callbacks), the same on Humble and later.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.executors import ShutdownException, SingleThreadedExecutor, TimeoutException

OFFLOAD_THREADS = 2
"""One for a transition that waits for a load, one for the lifecycle queries that arrive meanwhile."""


class TransitionExecutor(SingleThreadedExecutor):
    """SingleThreadedExecutor that runs the callbacks of offloaded callback groups on a thread pool."""

    def __init__(self, *, context: Any = None, threads: int = OFFLOAD_THREADS) -> None:
        super().__init__(context=context)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="segzero-transition")
        self._offloaded: list[CallbackGroup] = []
        self._running: list[Future[Any]] = []

    def offload(self, group: CallbackGroup) -> None:
        """Run `group`'s callbacks on the pool (give it a ReentrantCallbackGroup so its callbacks overlap)."""
        self._offloaded.append(group)

    def spin_once(self, timeout_sec: float | None = None) -> None:
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec=timeout_sec)
        except (ShutdownException, TimeoutException):
            return
        group_of_entity = getattr(entity, "callback_group", None)
        if any(group_of_entity is group for group in self._offloaded):
            self._running.append(self._pool.submit(_run, handler))
        else:
            _run(handler)
        for future in [f for f in self._running if f.done()]:
            self._running.remove(future)
            future.result()  # raise what an offloaded callback raised, as the inline ones do

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        done = bool(super().shutdown(timeout_sec))
        self._pool.shutdown(wait=False)
        return done


def _run(handler: Any) -> None:
    handler()
    exception = handler.exception()
    if exception is not None:
        raise exception
