"""CommandScheduler with plain threads and stand-in pipelines: no ROS, no DDS, no models; seconds in all.

The stand-ins are the thing that cannot matter here (the models); admission, the worker thread, deadlines,
release and the exactly-once rule are the real code under test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.core.result import SegmentationResult, SegmentedObject
from segzero_ros.scheduler import CommandScheduler, Phase, Reply, SchedulerConfig

WAIT_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class StandInPipeline:
    """Answers every command with a mask of the whole image; `gate` (when given) holds each call."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.reasoner = SimpleNamespace(name="stand-in-reasoner")
        self.segmenter = SimpleNamespace(name="stand-in-segmenter")
        self.gate = gate
        self.fail = fail
        self.running = threading.Event()
        self.calls: list[str] = []
        self.closed = threading.Event()

    def run(self, image: np.ndarray, command: str) -> SegmentationResult:
        self.calls.append(command)
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S), "test never opened the gate"
        if self.fail:
            raise RuntimeError("boom")
        return SegmentationResult(command=command, image_size=(image.shape[1], image.shape[0]),
                                  objects=(SegmentedObject(ObjectPrompt(Box(0, 0, 1, 1), (Point(0, 0), Point(1, 1))),
                                                           np.ones(image.shape[:2], dtype=bool), 0.9),),
                                  mask=np.ones(image.shape[:2], dtype=bool))

    def close(self) -> None:
        self.closed.set()


class Recorder:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    def __call__(self, reply: Reply) -> None:
        with self.arrived:
            self.replies.append(reply)
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list[Reply]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.replies) >= count, WAIT_S), \
                f"{len(self.replies)} of {count} answers"
            return list(self.replies)

    def kinds(self) -> Counter[str]:
        with self.lock:
            return Counter(a.result.error_kind.value if a.result.error_kind else "ok" for a in self.replies)


def to_rgb(data: object) -> np.ndarray:
    if isinstance(data, str):
        raise ValueError(f"cannot convert {data}")
    assert isinstance(data, np.ndarray)
    return data


IMAGE = np.zeros((4, 6, 3), dtype=np.uint8)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make(recorder):
    made: list[CommandScheduler] = []

    def make(pipeline: StandInPipeline | None = None, *, clock=time.monotonic, watchdog: float | None = 0.01,
             **config) -> CommandScheduler:
        scheduler = CommandScheduler(recorder, convert=to_rgb, config=SchedulerConfig(**config), clock=clock,
                                     watchdog_period_s=watchdog)
        made.append(scheduler)
        if pipeline is not None:
            scheduler.load(lambda: pipeline).result(WAIT_S)
            scheduler.open_intake()
        return scheduler

    yield make
    for scheduler in made:
        scheduler.shutdown()


@pytest.fixture
def running(make):
    """running(command, **config) → (scheduler, pipeline, gate): `command` is inside a model call that
    returns only once the test sets `gate`."""

    def start(command: str, **config) -> tuple[CommandScheduler, StandInPipeline, threading.Event]:
        gate = threading.Event()
        pipeline = StandInPipeline(gate)
        scheduler = make(pipeline, **config)
        scheduler.offer_frame(IMAGE)
        scheduler.submit(command)
        assert pipeline.running.wait(WAIT_S)
        return scheduler, pipeline, gate

    return start


def test_a_command_runs_on_the_newest_frame_and_is_answered_once(make, recorder):
    pipeline = StandInPipeline()
    scheduler = make(pipeline)
    scheduler.offer_frame(np.zeros((2, 2, 3), dtype=np.uint8))
    scheduler.offer_frame(IMAGE)
    job = scheduler.submit("the mug", context="mine")
    [reply] = recorder.wait_for(1)
    assert reply.job is job and reply.job.context == "mine" and job.command_id == "1"
    assert reply.result.ok and reply.result.mask.shape == (4, 6) and reply.rgb is IMAGE
    assert reply.latency_s >= reply.queue_s >= 0
    status = scheduler.status()
    assert (status.commands_received, status.results_succeeded, status.results_failed) == (1, 1, 0)
    assert (status.reasoner_name, status.segmenter_name) == ("stand-in-reasoner", "stand-in-segmenter")


def test_admission_answers_at_once_with_the_reason(make, recorder):
    clock = FakeClock()
    scheduler = make(clock=clock, watchdog=None, max_image_age_s=1.0)
    scheduler.close_intake("closed", refusal="node is inactive")
    scheduler.submit("before any model")
    assert recorder.replies[-1].result.error == "node is inactive"
    scheduler.load(StandInPipeline).result(WAIT_S)
    scheduler.open_intake()
    scheduler.submit("no image yet")
    assert recorder.replies[-1].result.error_kind.value == "no_image"
    scheduler.offer_frame(IMAGE)
    clock.now += 1.5
    scheduler.submit("old image")
    assert recorder.replies[-1].result.error_kind.value == "stale_image"
    assert recorder.replies[-1].result.error == "newest image is 1.50 s old (max_image_age_s 1)"
    scheduler.offer_frame(None, problem="unknown encoding 'yuv9'")
    scheduler.submit("bad image")
    assert recorder.replies[-1].result.error == "image is unusable: unknown encoding 'yuv9'"
    scheduler.submit("   ")
    scheduler.submit("x" * 10_001)
    kinds = [a.result.error_kind.value for a in recorder.replies]
    assert kinds == ["not_ready", "no_image", "stale_image", "invalid_input", "invalid_input", "invalid_input"]
    assert scheduler.status().images_unusable == 1


def test_loading_runs_off_the_callers_thread_and_refuses_commands_meanwhile(make, recorder):
    clock = FakeClock()
    scheduler = make(clock=clock, watchdog=None)
    release = threading.Event()
    loader_thread: list[str] = []

    def slow_loader() -> StandInPipeline:
        loader_thread.append(threading.current_thread().name)
        release.wait(WAIT_S)
        return StandInPipeline()

    loaded = scheduler.load(slow_loader)  # returns at once
    scheduler.open_intake()
    clock.now += 3.0
    status = scheduler.status()
    assert (status.phase, status.loading_s, status.accepting) == (Phase.LOADING, 3.0, False)
    scheduler.offer_frame(IMAGE)
    scheduler.submit("during load")
    assert recorder.replies[-1].result.error == "models are loading (3.0 s so far)"
    release.set()
    loaded.result(WAIT_S)
    assert loader_thread == ["segzero-inference"]
    assert scheduler.status().phase is Phase.READY and scheduler.status().loading_s == -1.0
    scheduler.submit("after load")
    assert recorder.wait_for(2)[-1].result.ok


def test_a_failed_load_leaves_the_reason_and_refuses_with_it(make, recorder):
    scheduler = make()

    def broken() -> StandInPipeline:
        raise FileNotFoundError("no weights at /models/x")

    with pytest.raises(FileNotFoundError):
        scheduler.load(broken).result(WAIT_S)
    scheduler.close_intake("", refusal="node is unconfigured, not active")
    status = scheduler.status()
    assert status.phase is Phase.UNLOADED
    assert status.load_error == "cannot load models: FileNotFoundError: no weights at /models/x"
    scheduler.submit("anything")
    assert recorder.replies[-1].result.error == ("node is unconfigured, not active: cannot load models: "
                                                 "FileNotFoundError: no weights at /models/x")


def test_exactly_one_answer_per_command_under_bursts_from_many_threads(running, recorder):
    scheduler, _, gate = running("first", queue_depth=5)
    threads = [threading.Thread(target=lambda i=i: [scheduler.submit(f"{i}-{k}") for k in range(25)])
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gate.set()
    answers = recorder.wait_for(201)
    time.sleep(0.05)  # nothing more may arrive
    assert len(recorder.replies) == 201
    assert len({a.job.command_id for a in answers}) == 201
    kinds = recorder.kinds()
    assert kinds["ok"] == 6 and kinds["queue_full"] == 195  # the running one + queue_depth waiting
    status = scheduler.status()
    assert (status.commands_received, status.results_succeeded, status.results_failed) == (201, 6, 195)


def test_commands_run_first_in_first_out(running, recorder):
    scheduler, pipeline, gate = running("a", queue_depth=3)
    for name in ("b", "c", "d"):
        scheduler.submit(name)
    gate.set()
    answers = recorder.wait_for(4)
    assert pipeline.calls == ["a", "b", "c", "d"] and [a.job.command for a in answers] == ["a", "b", "c", "d"]
    assert answers[-1].queue_s > 0


def test_an_overrun_is_answered_timeout_and_the_late_result_is_dropped(running, recorder):
    clock = FakeClock()
    scheduler, _, gate = running("hangs", clock=clock, watchdog=None, inference_timeout_s=5.0, queue_depth=2)
    scheduler.submit("waits")
    clock.now += 4.0
    assert not scheduler.check_deadline()
    clock.now += 2.0
    assert scheduler.check_deadline()
    assert not scheduler.check_deadline()  # once
    timeout, waiting = recorder.wait_for(2)
    assert timeout.result.error_kind.value == "timeout" and "inference_timeout_s (5 s)" in timeout.result.error
    assert waiting.job.command == "waits" and waiting.result.error_kind.value == "not_ready"
    assert scheduler.status().stuck
    scheduler.submit("while stuck")
    assert "inference worker is stuck: command 1 overran" in recorder.replies[-1].result.error
    gate.set()  # the model call returns late
    deadline = time.monotonic() + WAIT_S
    while scheduler.status().busy and time.monotonic() < deadline:
        time.sleep(0.005)
    status = scheduler.status()
    assert not status.stuck and not status.busy and status.commands_timed_out == 1
    assert len(recorder.replies) == 3  # the late result was dropped
    scheduler.offer_frame(IMAGE)
    scheduler.submit("after")
    assert recorder.wait_for(4)[-1].result.ok


def test_the_watchdog_thread_enforces_the_deadline_by_itself(make, recorder):
    gate = threading.Event()
    scheduler = make(StandInPipeline(gate), inference_timeout_s=0.05)
    scheduler.offer_frame(IMAGE)
    scheduler.submit("hangs")
    [reply] = recorder.wait_for(1)
    assert reply.result.error_kind.value == "timeout"
    gate.set()


def test_release_waits_for_the_running_command_then_closes_the_pipeline(running, recorder):
    scheduler, pipeline, gate = running("running", queue_depth=3)
    scheduler.submit("waiting")
    threading.Timer(0.05, gate.set).start()
    assert scheduler.release("node deactivated before the command ran", refusal="node is unconfigured")
    running, waiting = sorted(recorder.wait_for(2), key=lambda a: a.job.command)
    assert running.result.ok
    assert (waiting.result.error_kind.value, waiting.result.error) == (
        "not_ready", "node deactivated before the command ran")
    assert pipeline.closed.is_set() and scheduler.status().phase is Phase.UNLOADED
    scheduler.submit("after release")
    assert recorder.replies[-1].result.error == "node is unconfigured"


def test_release_abandons_a_stuck_worker_which_closes_its_own_pipeline(running, recorder):
    scheduler, stuck, gate = running("hangs", inference_timeout_s=0.05, watchdog=None)
    assert not scheduler.release()  # waited until the deadline, then abandoned
    [reply] = recorder.wait_for(1)
    assert reply.result.error_kind.value == "timeout"
    assert not stuck.closed.is_set()
    fresh = StandInPipeline()
    scheduler.load(lambda: fresh).result(WAIT_S)  # a new worker serves while the old one hangs
    scheduler.open_intake()
    scheduler.offer_frame(IMAGE)
    scheduler.submit("fresh")
    assert recorder.wait_for(2)[-1].result.ok and not scheduler.status().stuck
    gate.set()
    assert stuck.closed.wait(WAIT_S)  # the abandoned worker freed its models when the call returned
    time.sleep(0.05)
    assert len(recorder.replies) == 2 and not fresh.closed.is_set()


def test_release_during_a_load_closes_the_models_when_the_load_returns(make, recorder):
    release = threading.Event()
    pipeline = StandInPipeline()

    def slow() -> StandInPipeline:
        release.wait(WAIT_S)
        return pipeline

    scheduler = make()
    loaded = scheduler.load(slow)
    assert not scheduler.release()  # does not wait for a load
    assert scheduler.status().phase is Phase.UNLOADED
    assert loaded.done()  # a configure waiting for this load hears at once, not when the load returns
    release.set()
    with pytest.raises(RuntimeError, match="released while loading"):
        loaded.result(WAIT_S)
    assert pipeline.closed.wait(WAIT_S)


def test_unconvertible_frames_and_raising_pipelines_still_get_one_answer(make, recorder):
    scheduler = make(StandInPipeline(fail=True))
    scheduler.offer_frame("corrupt jpeg")
    scheduler.submit("bad frame")
    scheduler.submit("same frame again")
    first, _ = recorder.wait_for(2)
    assert first.result.error == "cannot convert corrupt jpeg" and first.result.error_kind.value == "invalid_input"
    assert scheduler.status().images_unusable == 1  # counted once, however many commands found it so
    scheduler.offer_frame(IMAGE)
    scheduler.submit("raises")
    assert recorder.wait_for(3)[-1].result.error == "RuntimeError: boom"


def test_an_on_result_that_raises_does_not_stop_the_worker(make):
    calls: list[str] = []

    def explode(reply: Reply) -> None:
        calls.append(reply.job.command)
        raise RuntimeError("publisher gone")

    scheduler = CommandScheduler(explode, convert=to_rgb, watchdog_period_s=None)
    scheduler.load(StandInPipeline).result(WAIT_S)
    scheduler.open_intake()
    scheduler.offer_frame(IMAGE)
    scheduler.submit("one")
    scheduler.submit("two")
    deadline = time.monotonic() + WAIT_S
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    scheduler.shutdown()
    assert calls == ["one", "two"]


def test_options_change_live(running, recorder):
    scheduler, _, gate = running("runs", queue_depth=0)
    scheduler.submit("refused")
    assert recorder.wait_for(1)[0].result.error_kind.value == "queue_full"
    scheduler.config = SchedulerConfig(queue_depth=1)
    scheduler.submit("waits now")
    gate.set()
    answers = recorder.wait_for(3)
    assert [a.result.ok for a in answers] == [False, True, True]
    with pytest.raises(ValueError, match="queue_depth must be >= 0"):
        SchedulerConfig(queue_depth=-1)
