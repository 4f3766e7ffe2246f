"""Watching and stopping a command: ~/reasoning_stream (the reasoning as it is generated) and the ~/segment
action (goal = command, feedback = stage + reasoning so far, cancel stops generation, result = the one
ReasoningSegmentation). Plain glue between rclpy and the scheduler's Progress hooks; no node state.

Threading: goals are accepted and canceled on the executor thread (both only touch the scheduler, never
wait). Feedback and stream chunks are published from the inference worker. The goal finishes when the
command's answer arrives: the worker hands the stored result to `goal_handle.execute`, whose callback only
sets the terminal state, so nothing ever blocks the executor. A goal therefore reports ACCEPTED while it
queues and runs (its feedback's `stage` tells which) and EXECUTING only for that final instant.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rclpy.action.server import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from segzero_ros.action import Segment as SegmentAction
from segzero_ros.core.progress import QUEUED, Progress
from segzero_ros.core.result import ErrorKind

STREAM_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
FEEDBACK_PERIOD_S = 0.1
"""Reasoning feedback is sent at most this often (stage changes always at once)."""

Submit = Callable[[str, str, Any, Callable[[Any], None] | None, Progress], str]
"""(command, command_id, request image or None, reply, progress) → the command's id."""


@dataclass
class StreamedCommand:
    """The streaming state of one command; its id is known once the scheduler has numbered it."""

    command_id: str = ""
    sequence: int = 0
    text: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReasoningStream:
    """~/reasoning_stream: std_msgs/String, each a JSON object ``{"command_id", "seq", "text"}`` (``"done":
    true`` with empty text closes a command's stream); group by command_id, order by seq."""

    def __init__(self, node: Any) -> None:
        self._publisher = node.create_publisher(String, "~/reasoning_stream", STREAM_QOS)
        self._open: dict[str, StreamedCommand] = {}
        self._lock = threading.Lock()

    def finish(self, command_id: str) -> None:
        """Close the stream of a command that has been answered (nothing when it never streamed)."""
        with self._lock:
            command = self._open.pop(command_id, None)
        if command is not None and command.sequence > 0:
            self.chunk(command, "", done=True)

    def chunk(self, command: StreamedCommand, text: str, done: bool = False) -> None:
        with command.lock:
            if not done:
                command.text.append(text)
            payload: dict[str, Any] = {"command_id": command.command_id, "seq": command.sequence, "text": text}
            command.sequence += 1
        if done:
            payload["done"] = True
        if self._publisher.get_subscription_count() > 0:
            try:
                self._publisher.publish(String(data=json.dumps(payload, ensure_ascii=False)))
            except Exception:  # only after the context is shut down
                return

    def progress(self, command: StreamedCommand | None = None, on_stage: Callable[[str], None] | None = None,
                 on_text: Callable[[str], None] | None = None,
                 on_queued: Callable[[str], None] | None = None) -> Progress:
        """Hooks that stream a command's text here (and to `on_text`), learning its id when it is queued."""
        streamed = command if command is not None else StreamedCommand()

        def queued(command_id: str) -> None:
            with streamed.lock:
                streamed.command_id = command_id
            with self._lock:
                self._open[command_id] = streamed
            if on_queued is not None:
                on_queued(command_id)

        def text(chunk: str) -> None:
            self.chunk(streamed, chunk)
            if on_text is not None:
                on_text(chunk)

        return Progress(on_text=text, on_stage=on_stage, on_queued=queued)


class SegmentActionServer:
    """~/segment (segzero_ros/action/Segment): one scheduler job per goal, with feedback and cancel."""

    def __init__(self, node: Any, stream: ReasoningStream, submit: Submit, cancel: Callable[[str], bool]) -> None:
        self._stream, self._submit, self._cancel = stream, submit, cancel
        self._server: Any = ActionServer(
            node, SegmentAction, "~/segment", execute_callback=self._finish, goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted, cancel_callback=self._on_cancel,
            callback_group=MutuallyExclusiveCallbackGroup())
        self._results: dict[bytes, Any] = {}
        self._ids: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def destroy(self) -> None:
        if self._server is not None:
            self._server.destroy()
            self._server = None

    def _on_goal(self, goal: Any) -> Any:
        return GoalResponse.ACCEPT  # every goal is answered, a refused one with its error result

    def _on_accepted(self, goal_handle: Any) -> None:
        goal = goal_handle.request
        command = StreamedCommand()
        started = time.monotonic()
        last = [0.0]

        def feedback(stage: str) -> None:
            with command.lock:
                reasoning = "".join(command.text)
            message = SegmentAction.Feedback(command_id=command.command_id, stage=stage, reasoning=reasoning,
                                             elapsed_s=float(time.monotonic() - started))
            try:
                goal_handle.publish_feedback(message)
            except Exception:  # the goal already ended (e.g. canceled while a chunk was in flight)
                return
            last[0] = time.monotonic()

        stage = [QUEUED]

        def on_stage(name: str) -> None:
            stage[0] = name
            if name != QUEUED:  # QUEUED is sent once the goal's id is known, below
                feedback(name)

        def on_text(chunk: str) -> None:
            if time.monotonic() - last[0] >= FEEDBACK_PERIOD_S:
                feedback(stage[0])

        def reply(result: Any) -> None:
            if not goal.include_mask:
                result = copy.copy(result)
                result.mask = Image()
            with self._lock:
                self._results[bytes(goal_handle.goal_id.uuid)] = result
            goal_handle.execute()  # runs _finish on the executor, which only sets the terminal state

        key = bytes(goal_handle.goal_id.uuid)

        def on_queued(command_id: str) -> None:
            with self._lock:
                self._ids[key] = command_id

        image = goal.image if goal.image.width > 0 and goal.image.height > 0 else None
        progress = self._stream.progress(command, on_stage=on_stage, on_text=on_text, on_queued=on_queued)
        self._submit(goal.command, goal.command_id, image, reply, progress)
        with self._lock:
            queued = key in self._ids and key not in self._results
        if queued:
            feedback(QUEUED)

    def _on_cancel(self, goal_handle: Any) -> Any:
        """Accepted while the command waits or runs (it then ends `canceled`); rejected once answered."""
        with self._lock:
            command_id = self._ids.get(bytes(goal_handle.goal_id.uuid))
        return CancelResponse.ACCEPT if command_id is not None and self._cancel(command_id) else CancelResponse.REJECT

    def _finish(self, goal_handle: Any) -> Any:
        key = bytes(goal_handle.goal_id.uuid)
        with self._lock:
            result = self._results.pop(key)
            self._ids.pop(key, None)
        if result.success:
            goal_handle.succeed()
        elif result.error_kind == ErrorKind.CANCELED.value and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return SegmentAction.Result(result=result)
