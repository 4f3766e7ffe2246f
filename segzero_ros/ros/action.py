"""Watching and stopping a command: ~/reasoning_stream (the reasoning as it is generated) and the ~/segment
action (goal = command, feedback = stage + reasoning so far, cancel stops generation, result = the one
ReasoningSegmentation). Glue between rclpy and the scheduler's Progress hooks; one small `_Goal` per goal.

Goal states follow the ROS convention (nav2-style clients rely on it):

    ACCEPTED ──(the command starts running)──► EXECUTING ──► SUCCEEDED | ABORTED | CANCELED
        └──(canceled while it waits)──► CANCELING ──► CANCELED

Threading: goals are accepted and canceled on the executor thread (both only touch the scheduler, never
wait). The inference worker reports stages and text: its first running stage calls `goal_handle.execute()`
(EXECUTING), whose callback is a coroutine awaiting the command's result future, so the executor never
blocks. A command answered before it ran (refused at once, canceled while queued) starts its goal's
execution through an executor task instead, after any cancel transition, so such a goal never passes
through EXECUTING on its way to CANCELED.
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
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import String

from segzero_ros.action import Segment as SegmentAction
from segzero_ros.core.progress import Progress, Stage

STREAM_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
FEEDBACK_PERIOD_S = 0.1
"""Reasoning feedback is sent at most this often (stage changes always at once)."""

Submit = Callable[[str, str, Any, Callable[[Any], None] | None, Progress], str]
"""(command, command_id, request image or None, reply, progress) → the command's id."""


def without_images(result: Any) -> Any:
    """A ReasoningSegmentation for a caller that asked for no mask: every image field emptied (mask_pixels and
    the boxes stay), so a service or action answer stays small."""
    small = copy.copy(result)
    small.mask, small.labels = Image(), Image()
    return small


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

    def progress(self, command: StreamedCommand | None = None, on_stage: Callable[[Stage], None] | None = None,
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


@dataclass
class _Goal:
    """One goal: its handle, the command it became, where that command is, and its result once answered."""

    handle: Any
    stream: StreamedCommand
    done: Future[Any]
    """Completed with the ReasoningSegmentation when the command is answered; the execute callback awaits it."""
    accepted: float = field(default_factory=time.monotonic)
    stage: Stage = Stage.QUEUED
    executing: bool = False
    """execute() has been called (or scheduled): at most once per goal."""
    last_feedback: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def command_id(self) -> str:
        with self.stream.lock:
            return self.stream.command_id


class SegmentActionServer:
    """~/segment (segzero_ros/action/Segment): one scheduler job per goal, with feedback and cancel."""

    def __init__(self, node: Any, stream: ReasoningStream, submit: Submit, cancel: Callable[[str], bool]) -> None:
        self._node, self._stream, self._submit, self._cancel = node, stream, submit, cancel
        self._goals: dict[bytes, _Goal] = {}
        self._lock = threading.Lock()
        self._server: Any = ActionServer(
            node, SegmentAction, "~/segment", execute_callback=self._execute, goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted, cancel_callback=self._on_cancel,
            callback_group=MutuallyExclusiveCallbackGroup())

    def destroy(self) -> None:
        if self._server is not None:
            self._server.destroy()
            self._server = None

    # ------------------------------------------------------------------ executor thread

    def _on_goal(self, goal: Any) -> Any:
        return GoalResponse.ACCEPT  # every goal is answered, a refused one with its error result

    def _on_accepted(self, handle: Any) -> None:
        request = handle.request
        goal = _Goal(handle, StreamedCommand(), Future(executor=self._node.executor))
        goal.done.add_done_callback(lambda _: None)  # wakes the executor when the worker completes the future
        with self._lock:
            self._goals[bytes(handle.goal_id.uuid)] = goal
        image = request.image if request.image.width > 0 and request.image.height > 0 else None
        progress = self._stream.progress(goal.stream, on_stage=lambda stage: self._on_stage(goal, stage),
                                         on_text=lambda _: self._on_text(goal))
        self._submit(request.command, request.command_id, image, lambda result: self._on_reply(goal, result),
                     progress)
        if not goal.done.done():
            self._feedback(goal)  # QUEUED, now that the command has its id

    def _on_cancel(self, handle: Any) -> Any:
        """Accepted while the command waits or reasons (it then ends CANCELED); refused once it is segmenting
        (a fraction of a second from its result) or answered."""
        with self._lock:
            goal = self._goals.get(bytes(handle.goal_id.uuid))
        if goal is None or goal.done.done():
            return CancelResponse.REJECT
        with goal.lock:
            segmenting = goal.stage is Stage.SEGMENTING
        if segmenting or not self._cancel(goal.command_id):
            return CancelResponse.REJECT
        return CancelResponse.ACCEPT

    async def _execute(self, handle: Any) -> Any:
        """Runs from EXECUTING (or CANCELING) until the command's result; sets the terminal state."""
        with self._lock:
            goal = self._goals[bytes(handle.goal_id.uuid)]
        result: Any = await goal.done
        with self._lock:
            self._goals.pop(bytes(handle.goal_id.uuid), None)
        if handle.is_cancel_requested:
            handle.canceled()  # an accepted cancel ends CANCELED, also when the command finished meanwhile
        elif result.success:
            handle.succeed()
        else:
            handle.abort()
        return SegmentAction.Result(result=result)

    # ------------------------------------------------------------------ inference worker (or the submitter)

    def _on_stage(self, goal: _Goal, stage: Stage) -> None:
        with goal.lock:
            goal.stage = stage
            start = stage is not Stage.QUEUED and not goal.executing
            goal.executing = goal.executing or start
        if start:
            goal.handle.execute()  # EXECUTING from the moment the command starts running
        if stage is not Stage.QUEUED:  # QUEUED is sent once the goal's command id is known
            self._feedback(goal)

    def _on_text(self, goal: _Goal) -> None:
        with goal.lock:
            due = time.monotonic() - goal.last_feedback >= FEEDBACK_PERIOD_S
        if due:
            self._feedback(goal)

    def _on_reply(self, goal: _Goal, result: Any) -> None:
        if not goal.handle.request.include_mask:
            result = without_images(result)
        with goal.lock:
            start = not goal.executing
            goal.executing = True
        goal.done.set_result(result)
        if start:  # answered before it ran: execute after the current callback (e.g. a cancel) has finished
            self._node.executor.create_task(goal.handle.execute)

    def _feedback(self, goal: _Goal) -> None:
        with goal.stream.lock:
            reasoning = "".join(goal.stream.text)
            command_id = goal.stream.command_id
        with goal.lock:
            stage, goal.last_feedback = goal.stage, time.monotonic()
        message = SegmentAction.Feedback(command_id=command_id, stage=stage.value, reasoning=reasoning,
                                         elapsed_s=float(time.monotonic() - goal.accepted))
        try:
            goal.handle.publish_feedback(message)
        except Exception:  # the goal already ended (e.g. canceled while a chunk was in flight)
            return
