"""The command scheduler: every command in, exactly one reply out. No ROS, no torch.

What a perception front end (the ROS node, a test, a future HTTP server) needs around a pipeline, in one
place that plain threads can test:

- **admission**: a command is answered at once (`not_ready`, `no_image`, `stale_image`, `invalid_input`,
  `queue_full`) or queued FIFO, paired with the newest frame at its arrival;
- **one worker thread** that owns the pipeline from load to close: loading runs on it, so the caller's thread
  (an executor) stays free, and the pipeline is closed by the thread that used it;
- **deadlines**: a model call cannot be killed, so one that overruns `inference_timeout_s` gets its command
  answered `timeout`, the waiting ones `not_ready`, and the scheduler is `stuck` (refusing commands) until the
  call returns; its late result is dropped;
- **release** that waits for a running command at most until its deadline, then abandons the worker, which
  closes its own pipeline once the model call returns.

Exactly-once is structural: every job is answered through one test-and-set under the lock.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segzero_ros.core.progress import Progress, Stage
from segzero_ros.core.result import ErrorKind, SegmentationResult, error_result
from segzero_ros.options import check_options, option

LOG = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 10_000
"""Longer commands are refused (invalid_input): a real one is a sentence, and a huge prompt only costs the
reasoner time and GPU memory."""
WATCHDOG_PERIOD_S = 0.1
"""How often the watchdog thread compares the running command with inference_timeout_s."""


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler's options; all of them may change while it runs."""

    queue_depth: int = option(4, "Commands that may wait behind the running one; more fail at once with "
                                 "queue_full.", minimum=0, maximum=1000, applies="live")
    max_image_age_s: float = option(2.0, "Newest camera image must have arrived at most this many seconds "
                                         "before the command (else stale_image); 0 = any age.",
                                    minimum=0.0, maximum=3600.0, applies="live")
    inference_timeout_s: float = option(
        60.0, "A command whose inference runs longer is answered with error_kind timeout; until the stuck model "
              "call returns, the node reports `stuck` and refuses commands (not_ready). 0 = no limit.",
        minimum=0.0, maximum=86400.0, applies="live")

    def __post_init__(self) -> None:
        check_options(self)


class Named(Protocol):
    @property
    def name(self) -> str: ...


class Pipeline(Protocol):
    """What the scheduler runs: SegZeroPipeline, or a stand-in in tests."""

    @property
    def reasoner(self) -> Named: ...

    @property
    def segmenter(self) -> Named: ...

    def run(self, image: np.ndarray, command: str, progress: Progress | None = None) -> SegmentationResult: ...

    def close(self) -> None: ...


class Phase(str, enum.Enum):
    """Where the models are. Values are stable strings (they appear on status)."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    RELEASING = "releasing"


@dataclass(frozen=True)
class Frame:
    """An image as it arrived. `data` is converted to RGB only when a command runs on it."""

    data: Any
    received: float
    """The scheduler's clock at arrival."""
    problem: str | None = None
    """Why the frame cannot be used (found cheaply at arrival), or None."""


@dataclass(frozen=True)
class Job:
    command_id: str
    command: str
    received: float
    """The scheduler's clock when the command was submitted."""
    frame: Frame | None
    context: Any = None
    """The caller's own data for this command (e.g. a ROS stamp and a reply future), handed back unchanged."""
    progress: Progress | None = None
    """Stage and streamed-reasoning hooks, and the cancel flag `cancel()` sets; None runs it plainly."""


@dataclass(frozen=True)
class Reply:
    """The scheduler's one reply to a job: the job and its result (the model's answer is inside the result)."""

    job: Job
    result: SegmentationResult
    rgb: np.ndarray | None = None
    """The image the result was computed on (None when the command never ran)."""
    queue_s: float = 0.0
    latency_s: float = 0.0
    """Submit → answer, on the scheduler's clock."""


@dataclass(frozen=True)
class SchedulerStatus:
    """A consistent snapshot. Field names match SegZeroStatus where the message has them."""

    phase: Phase
    accepting: bool
    """Intake open and models ready: a command submitted now will be run."""
    busy: bool
    stuck: bool
    running_s: float
    """How long the running command has run; -1 when idle."""
    loading_s: float
    """How long the models have been loading; -1 when not loading."""
    loading_step: str
    """What loading is doing now ("waiting for reasoner server at …", "loading segmenter …"); "" otherwise."""
    queue_length: int
    queue_depth: int
    commands_received: int
    results_succeeded: int
    results_failed: int
    commands_timed_out: int
    images_received: int
    images_unusable: int
    last_image_error: str
    image_age_s: float
    last_latency_s: float
    last_error_kind: str
    last_error: str
    load_error: str
    reasoner_name: str
    segmenter_name: str


FrameConverter = Callable[[Any], np.ndarray]
"""Frame.data → RGB H×W×3 uint8; raises ValueError with the reason when it cannot."""
ReplyCallback = Callable[[Reply], None]


@dataclass
class _Ticket:
    job: Job
    replied: bool = False


@dataclass
class _Run:
    ticket: _Ticket
    started: float
    overran: bool = False


@dataclass
class _Counters:
    commands_received: int = 0
    results_succeeded: int = 0
    results_failed: int = 0
    commands_timed_out: int = 0
    images_received: int = 0
    images_unusable: int = 0
    last_image_error: str = ""
    last_latency_s: float = -1.0
    last_error_kind: str = ""
    last_error: str = ""


def _settle(future: Future[None], error: BaseException | None) -> None:
    """Complete `future` once: a release may have settled it already while the worker was still loading."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


class _Worker:
    """One thread, one pipeline: loads it, serves commands, closes it."""

    def __init__(self, loader: Callable[[], Pipeline]) -> None:
        self.loader = loader
        self.loaded: Future[None] = Future()
        self.closed = threading.Event()
        self.released = False
        self.pipeline: Pipeline | None = None
        self.thread: threading.Thread | None = None


class CommandScheduler:
    """Admission, one worker thread, deadlines; `on_result` is called exactly once per submitted command.

    `on_result` and `on_change` are called from whichever thread decides (the submitter's for immediate
    errors, the worker's, the watchdog's), never with the scheduler's lock held.
    """

    def __init__(self, on_result: ReplyCallback, *, convert: FrameConverter,
                 config: SchedulerConfig | None = None, on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, image_source: str = "the camera",
                 watchdog_period_s: float | None = WATCHDOG_PERIOD_S) -> None:
        self._on_result = on_result
        self._convert = convert
        self._on_change = on_change
        self._clock = clock
        self.image_source = image_source
        """Named in no_image answers (e.g. the camera topic)."""
        self._config = config or SchedulerConfig()
        self._condition = threading.Condition()
        self._pending: collections.deque[_Ticket] = collections.deque()
        self._running: _Run | None = None
        self._worker: _Worker | None = None
        self._phase = Phase.UNLOADED
        self._loading_since = 0.0
        self._loading_step = ""
        self._load_error = ""
        self._names = ("", "")
        self._open = False
        self._closed_reason = "not started"
        self._latest: Frame | None = None
        self._counted_unusable: Frame | None = None
        self._counters = _Counters()
        self._ids = 0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if watchdog_period_s is not None:
            self._watchdog = threading.Thread(target=self._watch, args=(watchdog_period_s,),
                                              name="segzero-watchdog", daemon=True)
            self._watchdog.start()

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> SchedulerConfig:
        return self._config

    @config.setter
    def config(self, config: SchedulerConfig) -> None:
        with self._condition:
            self._config = config
        self._changed()

    # ------------------------------------------------------------------ models

    def load(self, loader: Callable[[], Pipeline]) -> Future[None]:
        """Start loading on a new worker thread; the future completes when it is ready (or holds the error).

        Models already loaded are released first (see :meth:`release`)."""
        self.release("models are being replaced")
        worker = _Worker(loader)
        with self._condition:
            self._worker = worker
            self._phase, self._loading_since, self._load_error = Phase.LOADING, self._clock(), ""
            self._loading_step = ""
        worker.thread = threading.Thread(target=self._serve, args=(worker,), name="segzero-inference", daemon=True)
        worker.thread.start()
        self._changed()
        return worker.loaded

    def report_loading(self, step: str) -> None:
        """The loader says what it is doing now (shown in the status while loading); any thread."""
        with self._condition:
            self._loading_step = step
        self._changed()

    def release(self, reason: str = "models released", refusal: str | None = None) -> bool:
        """Close intake (answering waiting commands not_ready with `reason`), let a running command finish
        until its deadline, then close the pipeline. Returns False when a model call was still running and
        its worker was abandoned (it closes its pipeline itself when the call returns)."""
        self.close_intake(reason, refusal)
        with self._condition:
            worker = self._worker
            if worker is None:
                return True
            worker.released = True
            loading = self._phase is Phase.LOADING
            self._phase = Phase.RELEASING
            self._condition.notify_all()
        self._changed()
        if loading:  # whoever waits for this load (a configure transition) hears now, not when loading ends
            _settle(worker.loaded, RuntimeError("released while loading"))
        closed = worker.closed.wait(0.0 if loading else self._seconds_until_deadline())
        if not closed:
            self._expire_running(abandoned=True)
        with self._condition:
            if self._worker is worker:
                self._worker, self._phase, self._names = None, Phase.UNLOADED, ("", "")
            if not closed:
                self._running = None  # the abandoned worker's command was answered; a new worker starts clean
        self._changed()
        return closed

    def shutdown(self, reason: str = "shutting down before the command ran") -> None:
        """release() and stop the watchdog. The scheduler answers nothing new afterwards but not_ready."""
        self.release(reason)
        self._stop.set()

    # ------------------------------------------------------------------ intake

    def open_intake(self) -> None:
        with self._condition:
            self._open = True
        self._changed()

    def close_intake(self, reason: str, refusal: str | None = None) -> None:
        """Reply the waiting commands not_ready with `reason`, refuse new ones with `refusal` (default the same
        reason), forget the newest frame."""
        with self._condition:
            self._open, self._closed_reason, self._latest = False, refusal or reason, None
            waiting = list(self._pending)
            self._pending.clear()
        for ticket in waiting:
            self._reply(ticket, self._error(ticket.job, ErrorKind.NOT_READY, reason))
        self._changed()

    def offer_frame(self, data: Any, problem: str | None = None) -> Frame:
        """Record the newest frame (commands pair with it); an unusable one is counted once."""
        frame = Frame(data, self._clock(), problem)
        with self._condition:
            self._latest = frame
            self._counters.images_received += 1
            if problem is not None:
                self._count_unusable(frame, problem)
        return frame

    def frame(self, data: Any, problem: str | None = None) -> Frame:
        """A frame for one command (submit(frame=…)), stamped now, not recorded as the newest."""
        return Frame(data, self._clock(), problem)

    def submit(self, command: str, *, frame: Frame | None = None, command_id: str = "",
               context: Any = None, progress: Progress | None = None) -> Job:
        """Queue a command with `frame` (default: the newest offered frame). Exactly one reply follows: now,
        for problems found at admission, or later from the worker or the watchdog."""
        with self._condition:
            self._ids += 1
            job = Job(command_id or str(self._ids), command, self._clock(),
                      frame if frame is not None else self._latest, context, progress)
            ticket = _Ticket(job)
            self._counters.commands_received += 1
            problem = self._admission_problem(job)
            if problem is None:
                if progress is not None:
                    progress.queued(job.command_id)  # before the worker can see it: ids precede any text
                self._pending.append(ticket)
                self._condition.notify_all()
        if problem is not None:
            self._reply(ticket, self._error(job, *problem))
        else:
            if progress is not None:
                progress.stage(Stage.QUEUED)
            self._changed()
        return job

    def cancel(self, command_id: str) -> bool:
        """Cancel a command: a waiting one is answered `canceled` now; a running one is stopped (its generation
        ends at the next token) and answered `canceled` by the worker. False when no such command is waiting
        or running (it has been answered already), or when it runs without a Progress to stop it through."""
        with self._condition:
            waiting = next((t for t in self._pending if t.job.command_id == command_id), None)
            if waiting is not None:
                self._pending.remove(waiting)
            run = self._running
            running = run.ticket.job if run is not None and run.ticket.job.command_id == command_id else None
        if waiting is not None:
            self._reply(waiting, self._error(waiting.job, ErrorKind.CANCELED, "canceled while queued"))
            self._changed()
            return True
        if running is not None and running.progress is not None:
            running.progress.cancel.set()
            return True
        return False

    def _admission_problem(self, job: Job) -> tuple[ErrorKind, str] | None:
        """Why `job` cannot be queued (caller holds the lock), or None."""
        if self._phase is Phase.LOADING:
            return ErrorKind.NOT_READY, f"models are loading ({self._clock() - self._loading_since:.1f} s so far)"
        if not self._open or self._phase is not Phase.READY:
            detail = f": {self._load_error}" if self._load_error else ""
            return ErrorKind.NOT_READY, f"{self._closed_reason}{detail}"
        if self._running is not None and self._running.overran:
            return ErrorKind.NOT_READY, self._stuck_reason()
        if not job.command.strip():
            return ErrorKind.INVALID_INPUT, "command is empty"
        if len(job.command) > MAX_COMMAND_CHARS:
            return ErrorKind.INVALID_INPUT, (
                f"command has {len(job.command)} characters; at most {MAX_COMMAND_CHARS} are accepted")
        if job.frame is None:
            return ErrorKind.NO_IMAGE, f"no camera image received yet on {self.image_source}"
        age = job.received - job.frame.received
        limit = self._config.max_image_age_s
        if limit > 0 and age > limit:
            return ErrorKind.STALE_IMAGE, f"newest image is {age:.2f} s old (max_image_age_s {limit:g})"
        if job.frame.problem is not None:
            return ErrorKind.INVALID_INPUT, f"image is unusable: {job.frame.problem}"
        idle = self._running is None and not self._pending
        if len(self._pending) >= self._config.queue_depth and not idle:
            return ErrorKind.QUEUE_FULL, f"{len(self._pending)} command(s) already waiting (queue_depth)"
        return None

    # ------------------------------------------------------------------ worker thread

    def _serve(self, worker: _Worker) -> None:
        try:
            pipeline = worker.loader()
        except BaseException as exc:  # any load failure leaves the scheduler unloaded with the reason
            with self._condition:
                if self._worker is worker:
                    self._worker, self._phase = None, Phase.UNLOADED
                    self._load_error = f"cannot load models: {type(exc).__name__}: {exc}"
            worker.closed.set()
            _settle(worker.loaded, exc)
            self._changed()
            return
        with self._condition:
            released = worker.released
            if not released:
                worker.pipeline, self._phase = pipeline, Phase.READY
                self._names = (pipeline.reasoner.name, pipeline.segmenter.name)
        if released:
            self._close(worker, pipeline)
            _settle(worker.loaded, RuntimeError("released while loading"))
            return
        _settle(worker.loaded, None)
        self._changed()
        try:
            self._serve_commands(worker, pipeline)
        finally:
            self._close(worker, pipeline)

    def _serve_commands(self, worker: _Worker, pipeline: Pipeline) -> None:
        while True:
            with self._condition:
                while not self._pending and not worker.released:
                    self._condition.wait()
                if worker.released:
                    return  # release() has answered anything that was waiting
                ticket = self._pending.popleft()
                run = self._running = _Run(ticket, self._clock())
            self._changed()
            reply = self._execute(ticket, pipeline, run.started)
            with self._condition:
                mine = self._running is run
                if mine:
                    self._running = None
            if mine and not run.overran:
                self._reply(ticket, reply.result, rgb=reply.rgb, queue_s=reply.queue_s)
            else:
                LOG.warning("[%s] inference returned after %.1f s, past its deadline; its result is dropped",
                            ticket.job.command_id, self._clock() - ticket.job.received)
            self._changed()

    def _execute(self, ticket: _Ticket, pipeline: Pipeline, started: float) -> Reply:
        """Run one command; never raises."""
        job = ticket.job
        queue_s = started - job.received
        assert job.frame is not None  # admission refuses frameless jobs
        try:
            rgb = self._convert(job.frame.data)
        except ValueError as exc:
            with self._condition:
                self._count_unusable(job.frame, str(exc))
            return Reply(job, self._error(job, ErrorKind.INVALID_INPUT, str(exc)), queue_s=queue_s)
        try:
            result = pipeline.run(rgb, job.command, job.progress) if job.progress else pipeline.run(rgb, job.command)
        except Exception as exc:  # the pipeline is the error boundary; this is the last resort
            LOG.exception("pipeline raised")
            return Reply(job, self._error(job, ErrorKind.REASONER_FAILED, f"{type(exc).__name__}: {exc}"),
                          queue_s=queue_s)
        return Reply(job, result, rgb, queue_s)

    def _close(self, worker: _Worker, pipeline: Pipeline) -> None:
        try:
            pipeline.close()
        except Exception:
            LOG.exception("closing the models failed")
        finally:
            worker.closed.set()

    # ------------------------------------------------------------------ deadlines

    def _watch(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.check_deadline()

    def check_deadline(self) -> bool:
        """Reply the running command `timeout` if it overran inference_timeout_s; True when it did so now.
        Called by the watchdog thread; tests with a fake clock call it directly."""
        with self._condition:
            run, limit = self._running, self._config.inference_timeout_s
            overdue = (run is not None and not run.overran and limit > 0
                       and self._clock() - run.started > limit)
        if overdue:
            self._expire_running(abandoned=False)
        return overdue

    def _expire_running(self, *, abandoned: bool) -> None:
        with self._condition:
            run = self._running
            if run is None or run.overran:
                return
            run.overran = True
            self._counters.commands_timed_out += 1
            running_s = self._clock() - run.started
            limit = self._config.inference_timeout_s
            waiting = list(self._pending)
            self._pending.clear()
        LOG.error("[%s] inference has run %.1f s, past inference_timeout_s (%g s); %s", run.ticket.job.command_id,
                  running_s, limit, "the worker is abandoned" if abandoned
                  else "commands are refused until the model call returns")
        self._reply(run.ticket, self._error(
            run.ticket.job, ErrorKind.TIMEOUT,
            f"inference did not finish within inference_timeout_s ({limit:g} s); the model call was still "
            f"running after {running_s:.1f} s"))
        reason = self._stuck_reason()
        for ticket in waiting:
            self._reply(ticket, self._error(ticket.job, ErrorKind.NOT_READY, reason))

    def _stuck_reason(self) -> str:
        run = self._running
        command = f"command {run.ticket.job.command_id}" if run is not None else "a command"
        since = run.started if run is not None else self._clock()
        return (f"inference worker is stuck: {command} overran inference_timeout_s and its model call has not "
                f"returned after {self._clock() - since:.1f} s")

    def _seconds_until_deadline(self) -> float | None:
        """Time left for the running command; None = no limit."""
        with self._condition:
            limit = self._config.inference_timeout_s
            if limit <= 0:
                return None
            if self._running is None:
                return limit  # a command may be starting right now
            return max(0.0, self._running.started + limit - self._clock())

    # ------------------------------------------------------------------ answers and status

    def _error(self, job: Job, kind: ErrorKind, message: str) -> SegmentationResult:
        reasoner, segmenter = self._names
        return error_result(job.command, (0, 0), kind, message, reasoner_name=reasoner, segmenter_name=segmenter)

    def _reply(self, ticket: _Ticket, result: SegmentationResult, *, rgb: np.ndarray | None = None,
                queue_s: float = 0.0) -> None:
        with self._condition:
            if ticket.replied:
                return
            ticket.replied = True
            latency_s = self._clock() - ticket.job.received
            counters = self._counters
            if result.ok:
                counters.results_succeeded += 1
            else:
                counters.results_failed += 1
                kind = result.error_kind.value if result.error_kind is not None else ""
                counters.last_error_kind, counters.last_error = kind, result.error or ""
            counters.last_latency_s = latency_s
        try:
            self._on_result(Reply(ticket.job, result, rgb, queue_s, latency_s))
        except Exception:  # a publishing problem must not kill the worker
            LOG.exception("[%s] on_result raised", ticket.job.command_id)

    def _count_unusable(self, frame: Frame, problem: str) -> None:
        """Count an unusable frame once, however many commands found it so (caller holds the lock)."""
        if frame is not self._counted_unusable:
            self._counted_unusable = frame
            self._counters.images_unusable += 1
        self._counters.last_image_error = problem

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                LOG.exception("on_change raised")

    def status(self) -> SchedulerStatus:
        with self._condition:
            now = self._clock()
            run, latest = self._running, self._latest
            return SchedulerStatus(
                phase=self._phase,
                accepting=self._open and self._phase is Phase.READY,
                busy=run is not None,
                stuck=run is not None and run.overran,
                running_s=now - run.started if run is not None else -1.0,
                loading_s=now - self._loading_since if self._phase is Phase.LOADING else -1.0,
                loading_step=self._loading_step if self._phase is Phase.LOADING else "",
                queue_length=len(self._pending),
                queue_depth=self._config.queue_depth,
                image_age_s=now - latest.received if latest is not None else -1.0,
                load_error=self._load_error,
                reasoner_name=self._names[0],
                segmenter_name=self._names[1],
                **dataclasses.asdict(self._counters),
            )
