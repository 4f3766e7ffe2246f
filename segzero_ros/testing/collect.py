"""Collecting messages from an executor thread and waiting on them: shared by node tests, the soak script
and the test harness. Imports no rclpy, so it is usable before a test decides whether ROS can run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WAIT_S = 20.0
"""Default upper bound for anything a test waits for; only reached when something is broken."""


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


@dataclass(frozen=True)
class Arrival:
    received: float
    """time.monotonic() when the message reached the client."""
    msg: Any


class Collector:
    """Every message of one topic, with its arrival time; filled on the executor thread."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        arrival = Arrival(time.monotonic(), msg)
        with self._lock:
            self._arrivals.append(arrival)

    @property
    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    @property
    def messages(self) -> list[Any]:
        return [arrival.msg for arrival in self.arrivals]

    def latest(self) -> Any | None:
        with self._lock:
            return self._arrivals[-1].msg if self._arrivals else None

    def wait_for(self, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = WAIT_S) -> Any:
        """The first message received so far or later that satisfies `predicate`."""
        found: list[Any] = []

        def check() -> bool:
            found[:] = [m for m in self.messages if predicate(m)][:1]
            return bool(found)

        wait_until(check, timeout, f"a matching message on {self.topic}")
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self._arrivals.clear()
