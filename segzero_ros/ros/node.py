"""The segzero perception node: camera image + text command in, mask + box + points + reasoning out.

A lifecycle (managed) node. configure loads the models chosen by parameters, activate subscribes to the
camera, deactivate stops it, cleanup frees the models (GPU memory included). Commands are answered in every
state, so a planner always hears back: each command produces exactly ONE ReasoningSegmentation on
~/result, a success or an error with an explicit kind (not_ready, no_image, stale_image, queue_full,
invalid_input, unparseable_output, reasoner_failed, segmenter_failed, timeout).

Threading: executor callbacks only record images and queue commands; one worker thread runs inference,
converts images and publishes results, so a slow model never stalls the executor. A command is paired
with the newest camera image at the moment it arrives, then waits FIFO in a bounded queue.

Bounded by construction: incoming images are checked (metadata against data length, no conversion) when
they arrive; an unusable one (also one larger than `max_image_pixels`) is counted on ~/status, its pixels are
dropped at once, and a command paired with it is answered invalid_input. Memory therefore holds at most the
newest image plus one per queued command, and commands longer than MAX_COMMAND_CHARS are refused.

Timeout: a Python thread cannot be killed, so a model call that overruns `inference_timeout_s` is not
stopped. A watchdog timer on the executor answers its command with `timeout`, answers the waiting ones
with not_ready, and marks the node `stuck`; while stuck every new command is answered not_ready at once.
When the call finally returns its late result is dropped (the command was already answered) and the node
serves commands again.

Only the Humble subset of rclpy is used (no context managers on init/node, no EventsExecutor).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from segzero_ros.backends import build_pipeline
from segzero_ros.core.result import ErrorKind, SegmentationResult
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.ros.image_conversion import (
    ImageConversionError,
    array_to_image,
    compressed_to_rgb8,
    image_to_array,
    image_to_rgb8,
    mask_to_image,
)
from segzero_ros.ros.params import (
    NODE_PARAMETERS,
    SPECS_BY_NAME,
    NodeSettings,
    parameter_problems,
    settings_from_parameters,
    validate_value,
)
from segzero_ros.srv import Segment
from segzero_ros.visualize import overlay_image

DEFAULT_NODE_NAME = "segzero"

MAX_COMMAND_CHARS = 10_000
"""Longer commands are refused (invalid_input): a real one is a sentence, and a huge prompt only costs
the reasoner time and GPU memory."""
WATCHDOG_PERIOD_S = 0.1
"""How often the executor checks the running command against inference_timeout_s."""
LOG_TEXT_CHARS = 80
"""Commands are shortened to this in log lines (results carry them in full)."""

IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
"""Sensor-data QoS keeping only the newest frame: a command always pairs with the latest image anyway."""
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
"""Reliable and deep, so a burst of commands reaches the node (which then answers each one)."""
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

ResultCallback = Callable[[Any], None]
"""Receives the finished ReasoningSegmentation of a command (used by the Segment service)."""


@dataclass(frozen=True)
class ImageSample:
    msg: Any
    """sensor_msgs/Image or sensor_msgs/CompressedImage, converted only when a command uses it."""
    received: float
    """time.monotonic() at arrival."""
    problem: str | None = None
    """Why the image cannot be used (then `msg` keeps only its header), or None."""


@dataclass(frozen=True)
class CommandJob:
    command_id: str
    command: str
    command_stamp: Any
    """builtin_interfaces/Time on the node clock when the command arrived."""
    received: float
    """time.monotonic() at arrival."""
    image: ImageSample | None
    reply: ResultCallback | None = None


@dataclass
class NodeCounters:
    commands_received: int = 0
    results_succeeded: int = 0
    results_failed: int = 0
    commands_timed_out: int = 0
    last_latency_s: float = -1.0
    last_error_kind: str = ""
    last_error: str = ""
    images_received: int = 0
    images_unusable: int = 0
    last_image_error: str = ""


class SegZeroNode(LifecycleNode):
    """Lifecycle node wrapping a SegZeroPipeline; see the module docstring for the contract."""

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._parameter_problems = self._declare_parameters()
        self._warn_about_unknown_overrides()
        self._settings = self._read_settings_or_defaults()

        self._condition = threading.Condition()
        self._pending: collections.deque[CommandJob] = collections.deque()
        self._running: CommandJob | None = None
        self._running_since = 0.0
        self._overran = False
        """The running command was answered `timeout`; its late result is dropped and the node is stuck."""
        self._worker: threading.Thread | None = None
        self._worker_token: object | None = None
        """Identifies the current worker; a worker whose token is no longer current exits (or, when it was
        abandoned while stuck, closes its own pipeline once its model call returns)."""
        self._in_call: set[object] = set()
        """Tokens of workers that are inside a command right now."""
        self._orphans: dict[object, SegZeroPipeline] = {}
        """Pipelines of abandoned workers (by token), closed by those workers when their model call returns."""
        self._counted_unusable: ImageSample | None = None
        self._pipeline: SegZeroPipeline | None = None
        self._state_label = "unconfigured"
        self._latest_image: ImageSample | None = None
        self._image_subscription: Any = None
        self._command_ids = itertools.count(1)
        self._counters = NodeCounters()
        self._configure_error = ""

        # Commands, results and status exist in every lifecycle state: a command sent to an inactive node
        # still gets its (not_ready) result instead of silence.
        self._result_pub = self.create_publisher(ReasoningSegmentation, "~/result", RESULT_QOS)
        self._mask_pub = self.create_publisher(Image, "~/mask", IMAGE_OUT_QOS)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", IMAGE_OUT_QOS)
        self._reasoning_pub = self.create_publisher(String, "~/reasoning", RESULT_QOS)
        self._status_pub = self.create_publisher(SegZeroStatus, "~/status", STATUS_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._command_sub = self.create_subscription(String, "~/command", self._on_command, COMMAND_QOS)
        self._segment_srv = self.create_service(Segment, "~/segment", self._on_segment)
        self._status_timer = self.create_timer(self._settings.status_period_s, self._publish_status)
        self._watchdog_timer = self.create_timer(WATCHDOG_PERIOD_S, self._check_deadline)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._publish_status()

    # ------------------------------------------------------------------ parameters

    def _declare_parameters(self) -> dict[str, str]:
        """Declare every parameter typed, described and ranged. A bad override is recorded (configure fails
        listing it until the parameter is set to a valid value) instead of crashing the process, so a
        lifecycle manager sees a clear failure."""
        problems: dict[str, str] = {}
        for spec in NODE_PARAMETERS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=False)
            if spec.choices:
                descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
            if not spec.runtime:
                descriptor.additional_constraints += " (read at configure)"
            if spec.type is int and spec.minimum is not None and spec.maximum is not None:
                descriptor.integer_range = [
                    IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=0)
                ]
            elif spec.type is float and spec.minimum is not None and spec.maximum is not None:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
                ]
            try:
                self.declare_parameter(spec.name, spec.default, descriptor)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                problems[spec.name] = f"{spec.name}: {exc}"
                self.get_logger().error(f"rejected parameter {spec.name}: {exc}; using {spec.default!r}")
                self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True)
        return problems

    def _warn_about_unknown_overrides(self) -> None:
        # rclpy ignores overrides nobody declares, which hides typos in a params file.
        overrides: dict[str, Any] = getattr(self, "_parameter_overrides", {})
        unknown = sorted(name for name in overrides if name not in SPECS_BY_NAME and name != "use_sim_time")
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s): {', '.join(unknown)}")

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in NODE_PARAMETERS}

    def _read_settings_or_defaults(self) -> NodeSettings:
        try:
            return settings_from_parameters(self._parameter_values())
        except ValueError as exc:  # configure re-checks and refuses; until then the defaults stand in
            self.get_logger().error(f"{exc}; configure will fail until they are fixed")
            return settings_from_parameters({})

    def _on_set_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        problems = [p for param in parameters if param.name in SPECS_BY_NAME
                    if (p := validate_value(param.name, param.value))]
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        changes = {param.name: param.value for param in parameters if param.name in SPECS_BY_NAME}
        for name in changes:
            self._parameter_problems.pop(name, None)  # a rejected override has now been replaced
        live = {name: value for name, value in changes.items() if SPECS_BY_NAME[name].runtime}
        if live:
            with self._condition:
                self._settings = dataclasses.replace(self._settings, **live)
        deferred = sorted(set(changes) - set(live))
        if deferred and self._state_label != "unconfigured":
            self.get_logger().info(f"{', '.join(deferred)} take effect at the next configure")
        return SetParametersResult(successful=True)

    @property
    def settings(self) -> NodeSettings:
        return self._settings

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> bool:
        """Configure and activate (what `autostart` does); False, with the reason logged, if either fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return bool(self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = self._parameter_values()
        problems = [*self._parameter_problems.values(), *parameter_problems(values)]
        if problems:
            self._configure_error = "invalid parameters: " + "; ".join(problems)
            self.get_logger().error(f"{self._configure_error}; staying unconfigured")
            self._publish_status()
            return TransitionCallbackReturn.FAILURE
        settings = settings_from_parameters(values)
        config = settings.pipeline
        self.get_logger().info(
            f"loading reasoner {config.reasoner.backend}:{config.reasoner.model} and "
            f"segmenter {config.segmenter.backend}:{config.segmenter.model}"
        )
        started = time.monotonic()
        try:
            pipeline = build_pipeline(config)
        except Exception as exc:  # any load failure must leave the node unconfigured, not dead
            self._configure_error = f"cannot load models: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"{self._configure_error}; staying unconfigured (fix parameters, configure again)")
            self._publish_status()
            return TransitionCallbackReturn.FAILURE
        if settings.status_period_s != self._settings.status_period_s:
            self.destroy_timer(self._status_timer)
            self._status_timer = self.create_timer(settings.status_period_s, self._publish_status)
        token = object()
        with self._condition:
            self._settings = settings
            self._pipeline = pipeline
            self._worker_token = token
            self._state_label = "inactive"
            self._configure_error = ""
        self._worker = threading.Thread(target=self._work, args=(token,), name="segzero-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"models loaded in {time.monotonic() - started:.1f} s "
            f"({pipeline.reasoner.name} + {pipeline.segmenter.name})"
        )
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._settings.compressed_input:
            self._image_subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, IMAGE_QOS
            )
        else:
            self._image_subscription = self.create_subscription(Image, "image", self._on_image, IMAGE_QOS)
        with self._condition:
            self._state_label = "active"
        self.get_logger().info(f"active: waiting for images on {self._image_subscription.topic_name}")
        self._publish_status()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_intake("node deactivated before the command ran")
        self._publish_status()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_models()
        self._publish_status()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while leaving {state.label}; freeing models and returning to unconfigured")
        self._stop_intake("node failed")
        self._release_models()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop intake, let a running command finish and publish, free the models. Safe to call twice;
        also used when the process exits without a clean lifecycle shutdown (e.g. Ctrl-C)."""
        self._stop_intake("node shutting down before the command ran")
        self._release_models()
        with self._condition:
            self._state_label = "finalized"

    def _stop_intake(self, reason: str) -> None:
        if self._image_subscription is not None:
            self.destroy_subscription(self._image_subscription)
            self._image_subscription = None
        with self._condition:
            if self._state_label == "active":
                self._state_label = "inactive"
            self._latest_image = None
            cancelled = list(self._pending)
            self._pending.clear()
        for job in cancelled:
            self._finish(job, self._error_msg(job, ErrorKind.NOT_READY, reason))

    def _release_models(self) -> None:
        with self._condition:
            token, self._worker_token = self._worker_token, None
            self._condition.notify_all()
        worker, self._worker = self._worker, None
        if worker is not None:
            # A running command finishes and publishes its result first, but a model call that hangs must
            # not hang the lifecycle transition too: wait at most until the command's deadline.
            worker.join(self._seconds_until_deadline())
            if worker.is_alive():
                self._expire_running_command(abandoned=True)
        with self._condition:
            pipeline, self._pipeline = self._pipeline, None
            if self._state_label != "finalized":
                self._state_label = "unconfigured"
            # Decided under the lock the worker takes when its call returns, so exactly one side closes it.
            handed_over = pipeline is not None and token in self._in_call
            if pipeline is not None and handed_over:
                self._orphans[token] = pipeline
        if handed_over:
            self.get_logger().error("the inference worker is stuck in a model call; it is abandoned and frees "
                                    "its models when the call returns")
        elif pipeline is not None:
            self._close_pipeline(pipeline)

    def _close_pipeline(self, pipeline: SegZeroPipeline) -> None:
        # Each backend's close() frees what it holds, CUDA cache included: the node owns no GPU memory itself.
        pipeline.close()
        self.get_logger().info("models released")

    def _seconds_until_deadline(self) -> float | None:
        """Time left for the running command under inference_timeout_s; None = wait without limit."""
        with self._condition:
            limit = self._settings.inference_timeout_s
            if limit <= 0:
                return None
            if self._running is None:
                return limit  # a command may just be starting
            return max(0.0, self._running_since + limit - time.monotonic())

    # ------------------------------------------------------------------ intake (executor thread)

    def _on_image(self, msg: Any) -> None:
        sample = self._checked_sample(msg, time.monotonic())
        with self._condition:
            self._latest_image = sample
            self._counters.images_received += 1
            if sample.problem is not None:
                self._count_unusable_image(sample, sample.problem)
        if sample.problem is not None:
            self.get_logger().warning(f"unusable camera image: {sample.problem}", throttle_duration_sec=10.0)

    def _checked_sample(self, msg: Any, received: float) -> ImageSample:
        problem = self._image_problem(msg)
        if problem is None:
            return ImageSample(msg, received)
        return ImageSample(type(msg)(header=msg.header), received, problem)  # the header only: pixels go now

    def _image_problem(self, msg: Any) -> str | None:
        """Why an image cannot be used, or None. Cheap enough for every camera frame: it checks the metadata
        against the data's length through numpy views (copying only in rare layouts: byte-swapped 16-bit
        data, or a last row sent without its padding)."""
        if isinstance(msg, CompressedImage):
            return "compressed image is empty" if len(msg.data) == 0 else None
        limit = self._settings.max_image_pixels
        if int(msg.width) * int(msg.height) > limit:
            return f"image of {msg.width}×{msg.height} pixels is larger than max_image_pixels ({limit})"
        try:
            image_to_array(msg)  # validates encoding, sizes, step and data length; views, does not copy
        except ImageConversionError as exc:
            return str(exc)
        return None

    def _count_unusable_image(self, sample: ImageSample, problem: str) -> None:
        """Count an unusable image once, however many commands found it so (caller holds the lock)."""
        if sample is not self._counted_unusable:
            self._counted_unusable = sample
            self._counters.images_unusable += 1
        self._counters.last_image_error = problem

    def _on_command(self, msg: String) -> None:
        self.submit(msg.data)

    async def _on_segment(self, request: Any, response: Any) -> Any:
        image = None
        if request.image.width > 0 and request.image.height > 0:
            image = self._checked_sample(request.image, time.monotonic())
        future: Future[Any] = Future(executor=self.executor)
        # A done callback makes the executor wake up when the worker thread completes the future.
        future.add_done_callback(lambda _: None)
        self.submit(request.command, command_id=request.command_id, image=image, reply=future.set_result)
        response.result = await future
        return response

    def submit(self, command: str, *, command_id: str = "", image: ImageSample | None = None,
               reply: ResultCallback | None = None) -> str:
        """Queue a command (paired with `image`, default the newest camera image); returns its command_id.
        Exactly one result follows: right away for errors found now, from the worker otherwise."""
        received = time.monotonic()
        job_id = command_id or str(next(self._command_ids))
        stamp = self.get_clock().now().to_msg()
        with self._condition:
            self._counters.commands_received += 1
            paired = image if image is not None else self._latest_image
            job = CommandJob(job_id, command, stamp, received, paired, reply)
            problem = self._admission_problem(job)
            if problem is None:
                self._pending.append(job)
                self._condition.notify_all()
        if problem is not None:
            self._finish(job, self._error_msg(job, *problem))
        else:
            self._publish_status()
        return job_id

    def _admission_problem(self, job: CommandJob) -> tuple[ErrorKind, str] | None:
        """Why the command cannot be queued (caller holds the lock), or None."""
        if self._state_label != "active" or self._pipeline is None:
            detail = f": {self._configure_error}" if self._configure_error else ""
            return ErrorKind.NOT_READY, f"node is {self._state_label}, not active{detail}"
        if self._overran and self._running is not None:
            return ErrorKind.NOT_READY, self._stuck_reason()
        if not job.command.strip():
            return ErrorKind.INVALID_INPUT, "command is empty"
        if len(job.command) > MAX_COMMAND_CHARS:
            return ErrorKind.INVALID_INPUT, (
                f"command has {len(job.command)} characters; at most {MAX_COMMAND_CHARS} are accepted"
            )
        if job.image is None:
            topic = self._image_subscription.topic_name if self._image_subscription is not None else "image"
            return ErrorKind.NO_IMAGE, f"no camera image received yet on {topic}"
        age = job.received - job.image.received
        limit = self._settings.max_image_age_s
        if limit > 0 and age > limit:
            return ErrorKind.STALE_IMAGE, f"newest image is {age:.2f} s old (max_image_age_s {limit:g})"
        if job.image.problem is not None:
            return ErrorKind.INVALID_INPUT, f"image is unusable: {job.image.problem}"
        idle = self._running is None and not self._pending
        if len(self._pending) >= self._settings.queue_depth and not idle:
            return ErrorKind.QUEUE_FULL, f"{len(self._pending)} command(s) already waiting (queue_depth)"
        return None

    # ------------------------------------------------------------------ inference (worker thread)

    def _work(self, token: object) -> None:
        while True:
            with self._condition:
                while not self._pending and self._worker_token is token:
                    self._condition.wait()
                if self._worker_token is not token:
                    return  # released; _stop_intake has answered anything that was waiting
                job = self._pending.popleft()
                self._running, self._running_since, self._overran = job, time.monotonic(), False
                self._in_call.add(token)
                pipeline = self._pipeline
            self._publish_status()
            outcome: JobOutcome | None = None
            try:
                assert pipeline is not None
                outcome = self._run_job(job, pipeline)
            except Exception as exc:  # a bug here must still not leave the command unanswered
                self.get_logger().error(f"[{job.command_id}] internal error: {exc!r}")
                outcome = JobOutcome(self._error_msg(job, ErrorKind.NOT_READY, f"internal node error: {exc!r}"))
            finally:
                with self._condition:
                    # After an abandonment a new worker may be running its own command: touch only our own.
                    answered_already = self._overran if self._running is job else True
                    if self._running is job:
                        self._running, self._overran = None, False
                    abandoned = self._worker_token is not token
                    self._in_call.discard(token)
                    orphan = self._orphans.pop(token, None)
            if answered_already:
                late = time.monotonic() - job.received
                self.get_logger().warning(f"[{job.command_id}] inference returned after {late:.1f} s, past its "
                                          "timeout; its result is dropped and commands are accepted again")
            elif outcome is not None:
                self._finish(job, outcome.msg, rgb=outcome.rgb, result=outcome.result)
            if outcome is not None and outcome.msg.error_kind in _BACKEND_FAILURES:
                _trim_gpu_cache_after_failure()
            if orphan is not None:
                self._close_pipeline(orphan)
            if abandoned:
                return
            self._publish_status()

    def _run_job(self, job: CommandJob, pipeline: SegZeroPipeline) -> JobOutcome:
        assert job.image is not None
        queue_s = time.monotonic() - job.received
        header = job.image.msg.header
        try:
            rgb = self._to_rgb(job.image.msg)
        except ImageConversionError as exc:
            with self._condition:
                self._count_unusable_image(job.image, str(exc))
            return JobOutcome(self._error_msg(job, ErrorKind.INVALID_INPUT, str(exc)))
        try:
            result = pipeline.run(rgb, job.command)
        except Exception as exc:  # the pipeline catches backend errors; this is a last resort
            self.get_logger().error(f"pipeline raised: {exc!r}")
            return JobOutcome(self._error_msg(job, ErrorKind.REASONER_FAILED, f"{type(exc).__name__}: {exc}"))
        if result.mask is not None and result.mask.shape != rgb.shape[:2]:
            problem = f"segmenter returned a {result.mask.shape} mask for a {rgb.shape[:2]} image"
            return JobOutcome(self._error_msg(job, ErrorKind.SEGMENTER_FAILED, problem))
        return JobOutcome(self._result_msg(job, result, header, queue_s), rgb, result)

    def _to_rgb(self, image_msg: Any) -> np.ndarray:
        if not isinstance(image_msg, CompressedImage):
            return image_to_rgb8(image_msg)
        limit = self._settings.max_image_pixels
        declared = _compressed_image_size(image_msg.data)  # before decoding: a small file can unpack to GBs
        if declared is not None and declared[0] * declared[1] > limit:
            raise ImageConversionError(f"compressed image of {declared[0]}×{declared[1]} pixels is larger than "
                                       f"max_image_pixels ({limit})")
        try:
            rgb = compressed_to_rgb8(image_msg)
        except ImageConversionError:
            raise
        except Exception as exc:  # cv2.error, e.g. a header claiming more than OpenCV's own pixel limit
            raise ImageConversionError(f"cannot decode compressed image (format {image_msg.format!r}): "
                                       f"{_first_line(str(exc))}") from exc
        if rgb.shape[0] * rgb.shape[1] > limit:
            raise ImageConversionError(f"decoded image of {rgb.shape[1]}×{rgb.shape[0]} pixels is larger than "
                                       f"max_image_pixels ({limit})")
        return rgb

    # ------------------------------------------------------------------ timeout (executor thread)

    def _check_deadline(self) -> None:
        """Watchdog: answer a command whose inference overran inference_timeout_s (see the module docstring)."""
        with self._condition:
            limit = self._settings.inference_timeout_s
            overdue = (self._running is not None and not self._overran and limit > 0
                       and time.monotonic() - self._running_since > limit)
        if overdue:
            self._expire_running_command(abandoned=False)

    def _expire_running_command(self, *, abandoned: bool) -> None:
        """Answer the running command with `timeout` and everything waiting with not_ready; mark stuck."""
        with self._condition:
            job = self._running
            if job is None or self._overran:
                return
            self._overran = True
            self._counters.commands_timed_out += 1
            running_s = time.monotonic() - self._running_since
            limit = self._settings.inference_timeout_s
            waiting = list(self._pending)
            self._pending.clear()
        self.get_logger().error(
            f"[{job.command_id}] inference has run {running_s:.1f} s, past inference_timeout_s ({limit:g} s); "
            + ("the worker is abandoned" if abandoned else "commands are refused until the model call returns")
        )
        self._finish(job, self._error_msg(
            job, ErrorKind.TIMEOUT,
            f"inference did not finish within inference_timeout_s ({limit:g} s); the model call was still "
            f"running after {running_s:.1f} s",
        ))
        for waiting_job in waiting:
            self._finish(waiting_job, self._error_msg(waiting_job, ErrorKind.NOT_READY, self._stuck_reason()))
        self._publish_status()

    def _stuck_reason(self) -> str:
        with self._condition:
            job, since = self._running, self._running_since
        command = f"command {job.command_id}" if job is not None else "a command"
        return (f"inference worker is stuck: {command} overran inference_timeout_s and its model call has not "
                f"returned after {time.monotonic() - since:.1f} s")

    # ------------------------------------------------------------------ results

    def _result_msg(self, job: CommandJob, result: SegmentationResult, header: Any, queue_s: float) -> Any:
        msg = self._base_msg(job, header)
        msg.success = result.ok
        if result.error_kind is not None:
            msg.error_kind = result.error_kind.value
        msg.error = _wire_text(result.error or "")
        msg.reasoning = _wire_text(result.think)
        msg.raw_output = _wire_text(result.raw_output)
        if result.box is not None and result.points is not None:
            msg.has_prompt = True
            msg.box = result.box.as_list()
            msg.point_1 = result.points[0].as_list()
            msg.point_2 = result.points[1].as_list()
        if result.ok and result.mask is not None:
            msg.mask = mask_to_image(result.mask, header)
            msg.mask_pixels = int(np.count_nonzero(result.mask))
        msg.score = float(result.score or 0.0)
        msg.queue_s = queue_s
        msg.reason_s = result.timings.reason_s
        msg.encode_s = result.timings.encode_s
        msg.decode_s = result.timings.decode_s
        msg.reasoner_name = result.reasoner_name
        msg.segmenter_name = result.segmenter_name
        msg.prompt_tokens = result.prompt_tokens
        msg.completion_tokens = result.completion_tokens
        return msg

    def _error_msg(self, job: CommandJob, kind: ErrorKind, error: str) -> Any:
        msg = self._base_msg(job, job.image.msg.header if job.image is not None else Header())
        msg.error_kind = kind.value
        msg.error = _wire_text(error)
        pipeline = self._pipeline
        if pipeline is not None:
            msg.reasoner_name = pipeline.reasoner.name
            msg.segmenter_name = pipeline.segmenter.name
        return msg

    @staticmethod
    def _base_msg(job: CommandJob, header: Any) -> Any:
        msg = ReasoningSegmentation()
        msg.header = header
        msg.command_id = _wire_text(job.command_id)
        msg.command = _wire_text(job.command)
        msg.command_stamp = job.command_stamp
        if job.image is not None:
            msg.image_age_s = max(0.0, job.received - job.image.received)
        return msg

    def _finish(self, job: CommandJob, msg: Any, *, rgb: np.ndarray | None = None,
                result: SegmentationResult | None = None) -> None:
        """Publish a command's one result (and its mask, reasoning, overlay), update counters, reply."""
        if result is not None and result.ok and self._mask_pub.get_subscription_count() > 0:
            self._publish(self._mask_pub, msg.mask)
        if result is not None and result.raw_output:
            self._publish(self._reasoning_pub, String(data=msg.reasoning))
        if rgb is not None and result is not None and self._settings.publish_overlay \
                and self._overlay_pub.get_subscription_count() > 0:
            try:
                drawn = overlay_image(rgb, result.mask, result.box, result.points)
                self._publish(self._overlay_pub, array_to_image(drawn, "rgb8", msg.header))
            except Exception as exc:  # a drawing problem must not cost the command its result
                self.get_logger().error(f"overlay failed: {exc!r}")
        msg.latency_s = time.monotonic() - job.received
        with self._condition:
            counters = self._counters
            if msg.success:
                counters.results_succeeded += 1
            else:
                counters.results_failed += 1
                counters.last_error_kind, counters.last_error = msg.error_kind, msg.error
            counters.last_latency_s = msg.latency_s
        command = _short_text(msg.command)
        if msg.success:
            self.get_logger().info(f"[{msg.command_id}] {command}: mask of {msg.mask_pixels} px "
                                   f"in {msg.latency_s:.2f} s")
        else:
            self.get_logger().warning(f"[{msg.command_id}] {command}: {msg.error_kind}: {msg.error}")
        self._publish(self._result_pub, msg)
        if job.reply is not None:
            job.reply(msg)

    def _publish(self, publisher: Any, msg: Any) -> None:
        try:
            publisher.publish(msg)
        except Exception as exc:  # only when the context is already shut down (process exit)
            self.get_logger().debug(f"not published on {publisher.topic_name}: {exc!r}")

    # ------------------------------------------------------------------ status

    def status(self) -> Any:
        """The current SegZeroStatus (what ~/status carries)."""
        msg = SegZeroStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        with self._condition:
            msg.lifecycle_state = self._state_label
            msg.ready = self._state_label == "active" and self._pipeline is not None
            msg.busy = self._running is not None
            msg.stuck = self._overran and self._running is not None
            msg.running_s = time.monotonic() - self._running_since if self._running is not None else -1.0
            msg.queue_length = len(self._pending)
            msg.queue_depth = self._settings.queue_depth
            counters = self._counters
            msg.commands_received = counters.commands_received
            msg.results_succeeded = counters.results_succeeded
            msg.results_failed = counters.results_failed
            msg.commands_timed_out = counters.commands_timed_out
            msg.images_received = counters.images_received
            msg.images_unusable = counters.images_unusable
            msg.last_image_error = _wire_text(counters.last_image_error)
            msg.last_latency_s = counters.last_latency_s
            msg.last_error_kind = counters.last_error_kind
            msg.last_error = counters.last_error
            msg.configure_error = self._configure_error
            latest = self._latest_image
            msg.image_age_s = time.monotonic() - latest.received if latest is not None else -1.0
            if self._pipeline is not None:
                msg.reasoner_name = self._pipeline.reasoner.name
                msg.segmenter_name = self._pipeline.segmenter.name
        return msg

    def _publish_status(self) -> None:
        status = self.status()
        self._publish(self._status_pub, status)
        self._publish(self._diagnostics_pub, self._diagnostics(status))

    def _diagnostics(self, status: Any) -> Any:
        entry = DiagnosticStatus()
        entry.name = f"{self.get_fully_qualified_name()}: reasoning segmentation"
        entry.hardware_id = status.reasoner_name or "segzero"
        if status.stuck:
            entry.level = DiagnosticStatus.ERROR
            entry.message = f"inference stuck for {status.running_s:.0f} s (past inference_timeout_s)"
        elif status.ready:
            entry.level = DiagnosticStatus.OK
            entry.message = f"busy, {status.queue_length} queued" if status.busy else "ready"
        elif self._configure_error:
            entry.level = DiagnosticStatus.ERROR
            entry.message = self._configure_error
        else:
            entry.level = DiagnosticStatus.WARN
            entry.message = status.lifecycle_state
        values: Sequence[tuple[str, object]] = (
            ("lifecycle_state", status.lifecycle_state),
            ("queue_length", status.queue_length),
            ("commands_received", status.commands_received),
            ("results_succeeded", status.results_succeeded),
            ("results_failed", status.results_failed),
            ("commands_timed_out", status.commands_timed_out),
            ("images_received", status.images_received),
            ("images_unusable", status.images_unusable),
            ("last_image_error", status.last_image_error),
            ("image_age_s", f"{status.image_age_s:.3f}"),
            ("last_latency_s", f"{status.last_latency_s:.3f}"),
            ("last_error", f"{status.last_error_kind}: {status.last_error}" if status.last_error else ""),
            ("reasoner", status.reasoner_name),
            ("segmenter", status.segmenter_name),
        )
        entry.values = [KeyValue(key=key, value=str(value)) for key, value in values]
        array = DiagnosticArray()
        array.header.stamp = status.header.stamp
        array.status = [entry]
        return array


def main(args: list[str] | None = None) -> int:
    """Console entry point `segzero_node`: spin the node; with `autostart` it configures and activates."""
    _init_without_rclpy_signal_handlers(args)
    # SIGTERM (sent by launch after SIGINT) ends the process the same orderly way as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    executor = SingleThreadedExecutor()
    node: SegZeroNode | None = None
    try:
        node = SegZeroNode()
        executor.add_node(node)
        if node.settings.autostart and not node.start():
            node.get_logger().error("autostart failed; the node stays up for a lifecycle manager to retry")
        while True:
            # A bounded wait, so Ctrl-C (a KeyboardInterrupt between waits) is handled within a fraction
            # of a second even when nothing arrives.
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()  # while the context is still valid: the last results and logs still go out
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


SPIN_WAKE_S = 0.25

_BACKEND_FAILURES = (ErrorKind.REASONER_FAILED.value, ErrorKind.SEGMENTER_FAILED.value)


@dataclass(frozen=True)
class JobOutcome:
    """What the worker computed for one command, published only if the command was not answered meanwhile."""

    msg: Any
    rgb: np.ndarray | None = None
    result: SegmentationResult | None = None


def _trim_gpu_cache_after_failure() -> None:
    """After a failed command (e.g. CUDA out of memory) hand the failed call's cached blocks back to the driver,
    so the next command, or another process on the GPU, starts clean. Not for shutdown: close() does that."""
    torch = sys.modules.get("torch")  # never import torch just to free memory it does not hold
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _wire_text(text: str) -> str:
    """`text` as a ROS string can carry it: lone surrogates (possible in Python strings, e.g. from a JSON
    escape in model output) would make publishing raise and lose the command's result."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _compressed_image_size(data: Any) -> tuple[int, int] | None:
    """(width, height) from a compressed image's header without decoding it; None when PIL cannot tell."""
    import io
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(bytes(data))) as image:
                width, height = image.size
                return int(width), int(height)
    except Exception:  # unknown format, or beyond PIL's own bomb limit: OpenCV decides (and limits) then
        return None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _short_text(text: str) -> str:
    return repr(text) if len(text) <= LOG_TEXT_CHARS else f"{text[:LOG_TEXT_CHARS]!r}… ({len(text)} chars)"


def _init_without_rclpy_signal_handlers(args: list[str] | None) -> None:
    """rclpy's own SIGINT handler shuts the context down at once, before the node could publish the answer
    of a running command or release its models cleanly; Python's KeyboardInterrupt lets main() do both."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # very old rclpy: keep its handlers
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


if __name__ == "__main__":
    sys.exit(main())
