"""Scheduler answers, status and parameter specs → the node's ROS messages. No node state: plain functions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from std_msgs.msg import Header

from segzero_ros.core.result import SegmentationResult
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus
from segzero_ros.options import FlatOption
from segzero_ros.ros.image_conversion import labels_to_image, mask_to_image
from segzero_ros.scheduler import Job, Reply, SchedulerStatus

_STATUS_FIELDS = frozenset(f.name for f in dataclasses.fields(SchedulerStatus)) & set(
    SegZeroStatus.get_fields_and_field_types())
"""Scheduler status fields the message carries under the same name (listed once: here, by name)."""


@dataclass(frozen=True)
class CommandContext:
    """What the node attaches to each job and needs back with its answer."""

    stamp: Any
    """builtin_interfaces/Time on the node clock when the command arrived."""
    reply: Any = None
    """Called with the result message (the Segment service), or None."""


def publish_quietly(publisher: Any, msg: Any, logger: Any) -> None:
    """Publish from any thread; a failure (only when the context is already shut down, at process exit) is
    logged at debug level instead of raising into a worker."""
    try:
        publisher.publish(msg)
    except Exception as exc:
        logger.debug(f"not published on {publisher.topic_name}: {exc!r}")


def parameter_descriptor(parameter: FlatOption) -> Any:
    """The ROS declaration of one parameter: description, the rule in words, and its range, so ROS itself
    refuses values outside it (`ros2 param describe` shows all of it)."""
    # dynamic_typing: the node checks the type itself (NodeConfig/config validation), so a wrong-typed
    # `ros2 param set` is refused with "queue_depth must be of type int, got float 2.5" instead of rclpy's
    # "Wrong parameter type, expected '2' got '3'"; the declared type stays in additional_constraints.
    info = parameter.option
    descriptor = ParameterDescriptor(description=parameter.description, additional_constraints=info.constraints(),
                                     dynamic_typing=True)
    if info.minimum is not None and info.maximum is not None:
        if info.kind is int:
            descriptor.integer_range = [IntegerRange(from_value=int(info.minimum), to_value=int(info.maximum),
                                                     step=0)]
        elif info.kind is float:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(info.minimum),
                                                                  to_value=float(info.maximum), step=0.0)]
    return descriptor


def wire_text(text: str) -> str:
    """`text` as a ROS string can carry it: lone surrogates (possible in Python strings, e.g. from a JSON escape
    in model output) would make publishing raise and lose the command's result."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def source_header(job: Job) -> Any:
    """The paired image's header (stamp and camera frame), or an empty one when none was paired."""
    return job.frame.data.header if job.frame is not None else Header()


def fill_objects(msg: Any, result: SegmentationResult) -> None:
    """The first object's prompt in the single-object fields and every object in the per-object arrays."""
    objects = result.objects
    if objects:
        first = objects[0]
        msg.has_prompt = True
        msg.box = first.box.as_list()
        box = first.box  # a box-only object: its centre stands in for the points it lacks
        points = [p.as_list() for p in first.points] or [[(box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2]]
        msg.point_1, msg.point_2 = points[0], points[min(1, len(points) - 1)]
    msg.score = float(result.score or 0.0)
    msg.object_count = len(objects)
    msg.object_ids = list(range(1, len(objects) + 1))
    msg.object_boxes = [value for found in objects for value in found.box.as_list()]
    msg.object_point_counts = [len(found.points) for found in objects]
    msg.object_points = [value for found in objects for point in found.points for value in point.as_list()]
    msg.object_scores = [float(found.score or 0.0) for found in objects]


def result_message(reply: Reply, header: Any, answer_format: str = "") -> Any:
    """The one ReasoningSegmentation of a command, success or error."""
    job, result = reply.job, reply.result
    context: CommandContext = job.context
    msg = ReasoningSegmentation()
    msg.header = header
    msg.command_id = wire_text(job.command_id)
    msg.command = wire_text(job.command)
    msg.command_stamp = context.stamp
    if job.frame is not None:
        msg.image_age_s = max(0.0, job.received - job.frame.received)
    msg.success = result.ok
    msg.error_kind = result.error_kind.value if result.error_kind is not None else ""
    msg.error = wire_text(result.error or "")
    msg.reasoning = wire_text(result.reasoning)
    msg.raw_output = wire_text(result.raw_output)
    msg.answer_format = answer_format
    fill_objects(msg, result)
    if result.ok and result.mask is not None:
        msg.mask = mask_to_image(result.mask, header)
        msg.mask_pixels = int(np.count_nonzero(result.mask))
        labels = result.labels()
        if labels is not None:
            msg.labels = labels_to_image(labels, header)
    msg.queue_s = reply.queue_s
    msg.reason_s = result.timings.reason_s
    msg.encode_s = result.timings.encode_s
    msg.decode_s = result.timings.decode_s
    msg.latency_s = reply.latency_s
    msg.reasoner_name = result.reasoner_name
    msg.segmenter_name = result.segmenter_name
    msg.prompt_tokens = result.prompt_tokens
    msg.completion_tokens = result.completion_tokens
    return msg


def status_message(status: SchedulerStatus, lifecycle_state: str, configure_error: str, stamp: Any) -> Any:
    msg = SegZeroStatus()
    msg.header.stamp = stamp
    for name in _STATUS_FIELDS:
        value = getattr(status, name)
        setattr(msg, name, wire_text(value) if isinstance(value, str) else value)
    msg.lifecycle_state = lifecycle_state
    msg.ready = lifecycle_state == "active" and status.accepting
    msg.configure_error = wire_text(configure_error)  # the node's word: set once configure has failed
    return msg


def diagnostics_message(status: Any, name: str) -> Any:
    """/diagnostics mirror of a SegZeroStatus message."""
    entry = DiagnosticStatus()
    entry.name = f"{name}: reasoning segmentation"
    entry.hardware_id = status.reasoner_name or "segzero"
    if status.stuck:
        entry.level = DiagnosticStatus.ERROR
        entry.message = f"inference stuck for {status.running_s:.0f} s (past inference_timeout_s)"
    elif status.ready:
        entry.level = DiagnosticStatus.OK
        entry.message = f"busy, {status.queue_length} queued" if status.busy else "ready"
    elif status.configure_error:
        entry.level = DiagnosticStatus.ERROR
        entry.message = status.configure_error
    elif status.loading_s >= 0:
        entry.level = DiagnosticStatus.WARN
        step = f": {status.loading_step}" if status.loading_step else ""
        entry.message = f"loading models ({status.loading_s:.0f} s){step}"
    else:
        entry.level = DiagnosticStatus.WARN
        entry.message = status.lifecycle_state
    skip = {"header", "ready", "configure_error"}
    entry.values = [KeyValue(key=key, value=_text(getattr(status, key)))
                    for key in status.get_fields_and_field_types() if key not in skip]
    array = DiagnosticArray()
    array.header.stamp = status.header.stamp
    array.status = [entry]
    return array


def _text(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
