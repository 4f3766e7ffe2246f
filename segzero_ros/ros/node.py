"""The segzero perception node: camera image + text command in, mask + box + points + reasoning out.

A thin ROS adapter over :class:`segzero_ros.scheduler.CommandScheduler`, which owns admission, the
inference worker, deadlines and the exactly-one-reply rule. The node maps messages to jobs and replies to
messages, declares parameters (from the config classes, `segzero_ros.ros.params`), sets QoS and publishes.

A lifecycle (managed) node: configure loads the models chosen by parameters (on the scheduler's worker thread;
the transition waits for it on a thread of TransitionExecutor's pool, so status, commands and `ros2 lifecycle get`
keep being answered, with the state `configuring` and the seconds spent loading), activate subscribes to the
camera, deactivate stops it, cleanup frees the models. Commands are answered in every state: each gets exactly
ONE ReasoningSegmentation on ~/result, a success or an error with an explicit kind.

Only the Humble subset of rclpy is used (no context managers on init/node, no EventsExecutor).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from segzero_ros.backends import build_pipeline
from segzero_ros.config import PipelineConfig
from segzero_ros.core.progress import Progress
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus
from segzero_ros.ros.action import ReasoningStream, SegmentActionServer, without_images
from segzero_ros.ros.executor import TransitionExecutor
from segzero_ros.ros.image_conversion import array_to_image, frame_problem, frame_to_rgb8
from segzero_ros.ros.messages import (
    CommandContext,
    diagnostics_message,
    parameter_descriptor,
    publish_quietly,
    result_message,
    source_header,
    status_message,
)
from segzero_ros.ros.params import (
    NodeSettings,
    ignored_parameters,
    parameter_problems,
    parameters_by_name,
    settings_from_parameters,
    validate_value,
    with_live_changes,
)
from segzero_ros.ros.planning_scene import PlanningSceneOutputs
from segzero_ros.ros.spatial import SpatialOutputs, fill_spatial_status
from segzero_ros.ros.tracking import TrackingOutputs
from segzero_ros.scheduler import CommandScheduler, Reply, SchedulerConfig
from segzero_ros.srv import Segment
from segzero_ros.tiny import TINY_WARNING, tiny_pipeline_config
from segzero_ros.visualize import overlay_objects

DEFAULT_NODE_NAME = "segzero"
LOG_TEXT_CHARS = 80
"""Commands are shortened to this in log lines (results carry them in full)."""

IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
"""Sensor-data QoS keeping only the newest frame: a command always pairs with the latest image anyway."""
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
"""Reliable and deep, so a burst of commands reaches the node (which then answers each one)."""
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


def tiny_models(pipeline: PipelineConfig) -> PipelineConfig:
    """tiny:=true — the tiny models in place of the ones the node would load itself; a reasoner served elsewhere
    (openai: e.g. the launch file's managed server, serving the tiny model) stays as configured."""
    tiny = tiny_pipeline_config(family=pipeline.reasoner.family, segmenter=pipeline.segmenter.backend,
                                reasoner=pipeline.reasoner.backend)
    if pipeline.reasoner.served:
        return PipelineConfig(reasoner=pipeline.reasoner, segmenter=tiny.segmenter)
    return tiny


class SegZeroNode(LifecycleNode):
    """Lifecycle node over a CommandScheduler; see the module docstring for the contract."""

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs: Any) -> None:
        # LifecycleNode's own __init__ puts the lifecycle services in the default (mutually exclusive) group;
        # a group of their own lets `get_state` answer while a configure transition is loading models
        # (spun by TransitionExecutor, see add_to_executor).
        self.transition_group = ReentrantCallbackGroup()
        """The lifecycle services' group; TransitionExecutor runs it off the spinning thread."""
        Node.__init__(self, node_name, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True, callback_group=self.transition_group)
        self._parameter_problems = self._declare_parameters()
        self._settings = self._read_settings_or_defaults()
        self._models: PipelineConfig = self._settings.pipeline
        """What configure loaded: the configured models, or the tiny ones with `tiny`."""
        self._lock = threading.Lock()
        self._state_label = "unconfigured"
        self._configure_error = ""
        self._image_subscription: Any = None
        self._scheduler = CommandScheduler(self._publish_reply, convert=self._to_rgb, on_change=self._publish_status,
                                           config=self._scheduler_config(self._settings))
        self._scheduler.close_intake("node is unconfigured, not active")

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
        self._stream = ReasoningStream(self)
        self._spatial, self._scene = SpatialOutputs(self), PlanningSceneOutputs(self)
        self._newest_header: Any = None
        self._tracking = TrackingOutputs(self, {"mask": self._mask_pub, "overlay": self._overlay_pub}, self._to_rgb,
                                         self.submit, self._publish_status, spatial=self._spatial, scene=self._scene,
                                         overlay=self._overlay_wanted)
        self._action = SegmentActionServer(self, self._stream, self._submit, self._scheduler.cancel)
        self._status_timer = self.create_timer(self._settings.node.status_period_s, self._publish_status)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._publish_status()

    # ------------------------------------------------------------------ parameters

    def _declare_parameters(self) -> dict[str, str]:
        """Declare every parameter typed, described and ranged. A bad override is recorded (configure fails
        listing it until the parameter is set to a valid value) instead of crashing the process, so a
        lifecycle manager sees a clear failure."""
        problems: dict[str, str] = {}
        declared = parameters_by_name()
        for parameter in declared.values():
            descriptor, default = parameter_descriptor(parameter), parameter.option.flat_default
            try:
                self.declare_parameter(parameter.name, default, descriptor)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                problems[parameter.name] = f"{parameter.name}: {exc} ({parameter.option.constraints()})"
                self.get_logger().error(f"rejected parameter {parameter.name}: {exc}; using {default!r}")
                self.declare_parameter(parameter.name, default, descriptor, ignore_override=True)
        # rclpy ignores overrides nobody declares, which hides typos in a params file.
        overrides: dict[str, Any] = getattr(self, "_parameter_overrides", {})
        unknown = sorted(name for name in overrides if name not in declared and name != "use_sim_time")
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s): {', '.join(unknown)}")
        return problems

    def _parameter_values(self) -> dict[str, Any]:
        return {name: self.get_parameter(name).value for name in parameters_by_name()}

    def _read_settings_or_defaults(self) -> NodeSettings:
        try:
            return settings_from_parameters(self._parameter_values())
        except ValueError as exc:  # configure re-checks and refuses; until then the defaults stand in
            self.get_logger().error(f"{exc}; configure will fail until they are fixed")
            return settings_from_parameters({})

    @staticmethod
    def _scheduler_config(settings: NodeSettings) -> SchedulerConfig:
        fields = {f.name: getattr(settings.node, f.name) for f in dataclasses.fields(SchedulerConfig)}
        return SchedulerConfig(**fields)

    def _on_set_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        declared = parameters_by_name()
        changes = {param.name: param.value for param in parameters if param.name in declared}
        problems = [problem for name, value in changes.items() if (problem := validate_value(name, value, strict=True))]
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        for name in changes:
            self._parameter_problems.pop(name, None)  # a rejected override has now been replaced
        live = {name: value for name, value in changes.items() if declared[name].option.live}
        if live:
            self._settings = with_live_changes(self._settings, live)
            self._scheduler.config = self._scheduler_config(self._settings)
            self._spatial.config, self._tracking.config = self._settings.spatial, self._settings.tracking
            self._scene.config = self._settings.moveit
        deferred = sorted(set(changes) - set(live))
        if deferred and self._state_label != "unconfigured":
            verb = "takes" if len(deferred) == 1 else "take"
            self.get_logger().info(f"{', '.join(deferred)} {verb} effect at the next configure")
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
        try:
            settings = None if problems else settings_from_parameters(values)
        except ValueError as exc:
            problems = [str(exc)]
        if settings is None:
            self._configure_error = "invalid parameters: " + "; ".join(problems).removeprefix("invalid parameters: ")
            self.get_logger().error(f"{self._configure_error}; staying unconfigured")
            self._scheduler.close_intake(f"node is unconfigured, not active: {self._configure_error}")
            return TransitionCallbackReturn.FAILURE
        for ignored in ignored_parameters(values):
            self.get_logger().warning(f"{ignored} is set but the chosen backend does not read it")
        if settings.node.status_period_s != self._settings.node.status_period_s:
            self.destroy_timer(self._status_timer)
            self._status_timer = self.create_timer(settings.node.status_period_s, self._publish_status)
        self._settings, self._configure_error = settings, ""
        self._scheduler.config = self._scheduler_config(settings)
        self._set_label("configuring")
        if settings.node.tiny:
            self.get_logger().warning(f"tiny:=true: {TINY_WARNING.upper()}")
        else:
            self.get_logger().info(f"loading reasoner {settings.pipeline.reasoner.describe()} and segmenter "
                                   f"{settings.pipeline.segmenter.describe()}")

        def load() -> Any:  # on the scheduler's worker: building the tiny models takes a while the first time
            self._models = tiny_models(settings.pipeline) if settings.node.tiny else settings.pipeline
            return build_pipeline(self._models, report=self._scheduler.report_loading)

        try:
            self._scheduler.load(load).result()
        except Exception as exc:  # any load failure must leave the node unconfigured, not dead
            self._configure_error = f"cannot load models: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"{self._configure_error}; staying unconfigured (fix parameters, configure again)")
            self._set_label("unconfigured")
            self._scheduler.close_intake("node is unconfigured, not active")
            return TransitionCallbackReturn.FAILURE
        status = self._scheduler.status()
        self._scheduler.close_intake("node is inactive, not active")
        self.get_logger().info(f"models loaded ({status.reasoner_name} + {status.segmenter_name})")
        self._set_label("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._settings.node.compressed_input:
            self._image_subscription = self.create_subscription(CompressedImage, "image/compressed", self._on_image,
                                                                IMAGE_QOS)
        else:
            self._image_subscription = self.create_subscription(Image, "image", self._on_image, IMAGE_QOS)
        self._scheduler.image_source = self._image_subscription.topic_name
        self._spatial.start(self._settings.spatial)
        self._scene.start(self._settings.moveit, self._spatial.active)
        self._tracking.start(self._settings.tracking, self._models.segmenter)
        self._set_label("active")
        self._scheduler.open_intake()
        self.get_logger().info(f"active: waiting for images on {self._image_subscription.topic_name}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_intake("node deactivated before the command ran", "inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_models("unconfigured")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while leaving {state.label}; freeing models and returning to unconfigured")
        self._stop_intake("node failed", "inactive")
        self._release_models("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop intake, let a running command finish and publish, free the models. Safe to call twice;
        also used when the process exits without a clean lifecycle shutdown (e.g. Ctrl-C)."""
        self._stop_intake("node shutting down before the command ran", "inactive")
        self._release_models("finalized")
        self._scheduler.shutdown("node is finalized, not active")
        self._action.destroy()

    def _stop_intake(self, reason: str, label: str) -> None:
        self._tracking.stop()
        self._scene.stop(Header(stamp=self.get_clock().now().to_msg()))  # REMOVE this node's collision objects
        self._spatial.stop()
        if self._image_subscription is not None:
            self.destroy_subscription(self._image_subscription)
            self._image_subscription = None
        if self._state_label == "active":
            self._set_label(label)
        self._scheduler.close_intake(reason, refusal=f"node is {self._state_label}, not active")

    def _release_models(self, label: str) -> None:
        if not self._scheduler.release("node is releasing its models", refusal=f"node is {label}, not active"):
            self.get_logger().error("the inference worker is stuck in a model call; it is abandoned and frees "
                                    "its models when the call returns")
        else:
            self.get_logger().info("models released")
        self._set_label(label)

    def _set_label(self, label: str) -> None:
        with self._lock:
            self._state_label = label
        self._publish_status()

    # ------------------------------------------------------------------ intake (executor threads)

    def _on_image(self, msg: Any) -> None:
        problem = frame_problem(msg, self._settings.node.max_image_pixels)
        if problem is not None:
            msg = type(msg)(header=msg.header)  # keep the header only: the pixels go now
            self.get_logger().warning(f"unusable camera image: {problem}", throttle_duration_sec=10.0)
        self._scheduler.offer_frame(msg, problem)
        self._newest_header = msg.header
        self._tracking.offer(msg, problem)

    def _on_command(self, msg: String) -> None:
        self.submit(msg.data)

    async def _on_segment(self, request: Any, response: Any) -> Any:
        image = request.image if request.image.width > 0 and request.image.height > 0 else None
        future: Future[Any] = Future(executor=self.executor)
        future.add_done_callback(lambda _: None)  # wakes the executor when the worker completes the future
        self._submit(request.command, request.command_id, image, future.set_result)
        result: Any = await future
        # include_mask false (e.g. `ros2 service call`, which prints every byte of a 1.4 MB mask): no images
        response.result = result if request.include_mask else without_images(result)
        return response

    def submit(self, command: str, *, command_id: str = "") -> str:
        """Queue a command with the newest camera image; returns its command_id. Exactly one result follows."""
        return self._submit(command, command_id, None, None)

    def _submit(self, command: str, command_id: str, image: Any, reply: Any, progress: Progress | None = None) -> str:
        """Queue a command with `image` (a request's own) or the newest camera frame; its reasoning streams."""
        frame = None if image is None else self._scheduler.frame(
            image, frame_problem(image, self._settings.node.max_image_pixels))
        header = image.header if image is not None else self._newest_header
        if header is not None:  # its depth stays paired until the result is placed, however long that takes
            self._spatial.hold(header)
        context = CommandContext(self.get_clock().now().to_msg(), reply)
        progress = progress or self._stream.progress()
        return self._scheduler.submit(command, frame=frame, command_id=command_id, context=context,
                                      progress=progress).command_id

    def _to_rgb(self, msg: Any) -> Any:
        return frame_to_rgb8(msg, self._settings.node.max_image_pixels)

    # ------------------------------------------------------------------ publishing (any thread)

    def _publish_reply(self, reply: Reply) -> None:
        """Publish a command's one result (and its mask, reasoning, overlay); reply to a service caller."""
        result = reply.result
        msg = result_message(reply, source_header(reply.job), self._settings.pipeline.reasoner.answer_format)
        placement = self._spatial.fill(msg, reply)
        if placement is not None and result.ok:  # the command's objects replace the previous ones in MoveIt
            self._scene.command(reply.job.command_id, placement.objects, placement.frame_id, msg.header)
        if result.ok and self._mask_pub.get_subscription_count() > 0:
            self._publish(self._mask_pub, msg.mask)
        if result.raw_output:
            self._publish(self._reasoning_pub, String(data=msg.reasoning))
        if reply.rgb is not None and result.ok and self._overlay_wanted():
            try:
                drawn = overlay_objects(reply.rgb, result.objects)
                self._publish(self._overlay_pub, array_to_image(drawn, "rgb8", msg.header))
            except Exception as exc:  # a drawing problem must not cost the command its result
                self.get_logger().error(f"overlay failed: {exc!r}")
        command = _short_text(msg.command)
        if msg.success:
            self.get_logger().info(f"[{msg.command_id}] {command}: mask of {msg.mask_pixels} px "
                                   f"in {msg.latency_s:.2f} s")
        else:
            self.get_logger().warning(f"[{msg.command_id}] {command}: {msg.error_kind}: {msg.error}")
        self._tracking.follow(reply, msg.header)  # armed before anyone hears the result: no frame falls between
        self._publish(self._result_pub, msg)
        self._stream.finish(reply.job.command_id)
        if reply.job.context.reply is not None:
            reply.job.context.reply(msg)

    def _overlay_wanted(self) -> bool:
        return self._settings.node.publish_overlay and self._overlay_pub.get_subscription_count() > 0

    def _publish(self, publisher: Any, msg: Any) -> None:
        publish_quietly(publisher, msg, self.get_logger())

    def status(self) -> Any:
        """The current SegZeroStatus (what ~/status carries)."""
        with self._lock:
            label = self._state_label
        msg = status_message(self._scheduler.status(), label, self._configure_error, self.get_clock().now().to_msg())
        fill_spatial_status(msg, self._spatial.counters(), len(self._scene.object_ids))
        return self._tracking.fill_status(msg)

    def _publish_status(self) -> None:
        if not hasattr(self, "_status_pub"):
            return  # the scheduler reports a change before the publishers exist
        status = self.status()
        self._publish(self._status_pub, status)
        self._publish(self._diagnostics_pub, diagnostics_message(status, self.get_fully_qualified_name()))


def add_to_executor(node: SegZeroNode, executor: TransitionExecutor) -> None:
    """Add `node` so its lifecycle transitions run off the spinning thread, and, with `autostart`, configure
    and activate once the executor spins (status, commands and lifecycle queries are answered meanwhile)."""
    executor.add_node(node)
    executor.offload(node.transition_group)
    if not node.settings.node.autostart:
        return
    started = threading.Event()

    def autostart() -> None:
        timer.cancel()
        if started.is_set():
            return
        started.set()
        if not node.start():
            node.get_logger().error("autostart failed; the node stays up for a lifecycle manager to retry")

    timer = node.create_timer(0.0, autostart, callback_group=node.transition_group)


def _short_text(text: str) -> str:
    return repr(text) if len(text) <= LOG_TEXT_CHARS else f"{text[:LOG_TEXT_CHARS]!r}… ({len(text)} chars)"
