"""Keep following the commanded object on live camera frames, on a worker thread of its own, ROS-free.

The node offers every camera frame; the follower tracks only the NEWEST one when it is free (older frames
are dropped, never queued, so a slow tracker never falls behind the camera) and at most `max_rate_hz`. A new
target (a command's result) replaces the current one before the next frame. The tracker is built on the
worker thread on first use, so loading never blocks the caller. After `lost_after_s` without the object
present the state turns LOST (tracking continues: the object may come back).

Each event is one transition of the follower's state, under its lock:

| event | from | what changes |
|---|---|---|
| `follow(target)` | any thread | a new track: frames are kept for it from now on, a waiting frame is dropped |
| `offer(frame)` | any thread | kept when a track accepts frames (replacing, and counting as dropped, a waiting one) |
| `stop()` | any thread | no track: frames are ignored, state IDLE |
| started | worker | the track's target is in the tracker: state TRACKING, its command id, no error |
| tracked | worker | one frame done: TRACKING or LOST by the time since the object was last present |
| failed | worker | an unusable frame, a size change or a model error ended the track: FAILED, frames ignored |

Every track carries a generation number: the worker's outcome for a track that `follow` or `stop` has
replaced meanwhile is dropped, never published.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, ObjectPrompt, mask_box
from segzero_ros.tracking.base import TrackedMask, Tracker

LOG = logging.getLogger(__name__)


class TrackState(str, enum.Enum):
    IDLE = "idle"
    TRACKING = "tracking"
    LOST = "lost"
    FAILED = "failed"


@dataclass(frozen=True)
class CameraFrame:
    """A camera frame as the caller offers it: its header (stamp, camera frame), the message itself and, when
    it cannot be used, why (found cheaply on arrival). The commanded frame comes as RGB and has no message."""

    header: Any
    message: Any = None
    problem: str | None = None


@dataclass(frozen=True)
class TrackUpdate:
    """One tracked frame, for the caller to publish: every followed object, in the command's order."""

    command_id: str
    frame: CameraFrame
    """The frame the masks belong to."""
    objects: tuple[TrackedMask, ...]
    boxes: tuple[Box | None, ...]
    """Bounding box of each object's mask (None where the object is not present)."""
    state: TrackState
    convert_s: float
    """Turning the caller's frame into RGB (0 for the commanded frame, which comes as RGB)."""
    track_s: float
    """The tracker's call on this frame."""
    rgb: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The frame's pixels as the tracker saw them (for an overlay)."""

    @property
    def present(self) -> bool:
        return any(tracked.present for tracked in self.objects)

    @property
    def score(self) -> float:
        return max(tracked.score for tracked in self.objects)

    @property
    def frame_index(self) -> int:
        return self.objects[0].frame_index

    @property
    def mask(self) -> np.ndarray:
        """The union of the objects' masks."""
        union: np.ndarray = self.objects[0].mask.copy()
        for tracked in self.objects[1:]:
            union |= tracked.mask
        return union

    @property
    def box(self) -> Box | None:
        """Bounding box of the union mask (None when no object is present)."""
        present = [box for box in self.boxes if box is not None]
        if not present:
            return None
        return Box(min(b.x1 for b in present), min(b.y1 for b in present), max(b.x2 for b in present),
                   max(b.y2 for b in present))


@dataclass(frozen=True)
class FollowStatus:
    state: TrackState
    command_id: str
    frames_tracked: int
    frames_dropped: int
    error: str


@dataclass(frozen=True)
class _Target:
    command_id: str
    rgb: np.ndarray
    prompts: tuple[ObjectPrompt, ...]
    frame: CameraFrame


@dataclass
class _Track:
    """The current track. `follow` and `stop` replace it (a new generation); the worker's transitions change it
    only while the generation they worked for is still current."""

    generation: int = 0
    accepting: bool = False
    """Frames are kept for this track (a target was given and the track has not failed or stopped)."""
    state: TrackState = TrackState.IDLE
    command_id: str = ""
    error: str = ""
    last_present: float = 0.0


@dataclass
class _Pending:
    """What the worker has still to do (start a target, track the newest frame), and what it has done."""

    target: _Target | None = None
    frame: CameraFrame | None = None
    frames_tracked: int = 0
    frames_dropped: int = 0


class TrackFollower:
    def __init__(self, build: Callable[[], Tracker], convert: Callable[[CameraFrame], np.ndarray],
                 publish: Callable[[TrackUpdate], None], *, max_rate_hz: float = 10.0, lost_after_s: float = 2.0,
                 on_failed: Callable[[FollowStatus], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`convert` (raising ValueError for an unusable frame), `publish` and `on_failed` (the track ended:
        an unusable frame, a size change or a model error) are called on the follower's thread."""
        self._build, self._convert, self._publish, self._clock = build, convert, publish, clock
        self._on_failed = on_failed
        self.max_rate_hz, self.lost_after_s = max_rate_hz, lost_after_s
        self._condition = threading.Condition()
        self._track = _Track()
        self._pending = _Pending()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="segzero-tracking", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ events from the caller

    def follow(self, command_id: str, rgb: np.ndarray, prompts: Sequence[ObjectPrompt],
               frame: CameraFrame | None = None) -> None:
        """Track these objects (found on `rgb`) from now on, replacing any current target."""
        if not prompts:
            raise ValueError("follow needs at least one object prompt")
        target = _Target(command_id, rgb, tuple(prompts), frame or CameraFrame(header=None))
        with self._condition:
            previous = self._track
            self._track = _Track(previous.generation + 1, accepting=True, state=previous.state,
                                 command_id=previous.command_id, error=previous.error)
            self._pending.target, self._pending.frame = target, None  # older frames are of no use to it
            self._condition.notify_all()

    def offer(self, frame: CameraFrame) -> None:
        """A new camera frame; the previous one is dropped if it was not tracked yet."""
        with self._condition:
            if not self._track.accepting:
                return
            if self._pending.frame is not None:
                self._pending.frames_dropped += 1
            self._pending.frame = frame
            self._condition.notify_all()

    def stop(self) -> bool:
        """Stop following (True when something was being followed)."""
        with self._condition:
            was = self._track.accepting
            self._track = _Track(self._track.generation + 1)
            self._pending.target = self._pending.frame = None
        return was

    def status(self) -> FollowStatus:
        with self._condition:
            return self._status()

    def _status(self) -> FollowStatus:
        track, pending = self._track, self._pending
        return FollowStatus(track.state, track.command_id, pending.frames_tracked, pending.frames_dropped, track.error)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ transitions from the worker

    def _started(self, target: _Target, generation: int, when: float) -> bool:
        with self._condition:
            if generation != self._track.generation:
                return False  # stopped or replaced while this target was being started
            track = self._track
            track.state, track.command_id, track.error, track.last_present = \
                TrackState.TRACKING, target.command_id, "", when
            return True

    def _tracked(self, frame: CameraFrame, rgb: np.ndarray, tracked: Sequence[TrackedMask], *, convert_s: float,
                 track_s: float, generation: int) -> TrackUpdate | None:
        now = self._clock()
        boxes = tuple(mask_box(item.mask) if item.present else None for item in tracked)
        with self._condition:
            track = self._track
            if not track.accepting or generation != track.generation:
                return None  # stop() or a new target came while this frame was being tracked
            if any(item.present for item in tracked):
                track.last_present = now
            track.state = TrackState.TRACKING if now - track.last_present <= self.lost_after_s else TrackState.LOST
            self._pending.frames_tracked += 1
            return TrackUpdate(track.command_id, frame, tuple(tracked), boxes, track.state, convert_s, track_s, rgb)

    def _failed(self, error: str, generation: int, command_id: str | None = None) -> FollowStatus | None:
        with self._condition:
            track = self._track
            if generation != track.generation:
                return None  # a new target or stop() came meanwhile: this failure no longer concerns anyone
            track.accepting, track.state, track.error = False, TrackState.FAILED, error
            track.command_id = command_id if command_id is not None else track.command_id
            return self._status()

    # ------------------------------------------------------------------ worker

    def _next(self, last_track: float) -> tuple[_Target | None, CameraFrame | None, int] | None:
        """Wait for work: a target to start, else the newest frame once the rate limit allows; None = closed."""
        with self._condition:
            while True:
                pending = self._pending
                while not self._closed and pending.target is None and (not self._track.accepting
                                                                       or pending.frame is None):
                    self._condition.wait()
                if self._closed:
                    return None
                generation = self._track.generation
                if pending.target is not None:
                    target, pending.target = pending.target, None
                    return target, None, generation
                wait = 1.0 / self.max_rate_hz - (self._clock() - last_track) if self.max_rate_hz > 0 else 0.0
                if wait <= 0:
                    frame, pending.frame = pending.frame, None
                    return None, frame, generation
                self._condition.wait(wait)

    def _run(self) -> None:
        tracker: Tracker | None = None
        last_track = -float("inf")
        try:
            while (work := self._next(last_track)) is not None:
                target, frame, generation = work
                try:
                    if tracker is None:
                        tracker = self._build()
                    started = self._clock()
                    if target is not None:
                        tracked = tracker.start_objects(target.rgb, target.prompts)
                        if self._started(target, generation, started):
                            self._emit(target.frame, target.rgb, tracked, convert_s=0.0,
                                       track_s=self._clock() - started, generation=generation)
                    elif frame is not None:
                        last_track = started
                        try:
                            rgb = self._convert(frame)
                        except ValueError as exc:  # an unusable frame: the track ends clearly
                            tracker.reset()
                            self._fail(str(exc), generation)
                            continue
                        converted = self._clock()
                        self._emit(frame, rgb, tracker.track_objects(rgb), convert_s=converted - started,
                                   track_s=self._clock() - converted, generation=generation)
                except Exception as exc:  # a size change or a model failure ends this track, never the process
                    if not isinstance(exc, ValueError):
                        LOG.exception("tracking failed")
                    if tracker is not None:
                        tracker.reset()
                    self._fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc),
                               generation, target.command_id if target is not None else None)
        finally:
            if tracker is not None:
                tracker.close()

    def _emit(self, frame: CameraFrame, rgb: np.ndarray, tracked: Sequence[TrackedMask], *, convert_s: float,
              track_s: float, generation: int) -> None:
        update = self._tracked(frame, rgb, tracked, convert_s=convert_s, track_s=track_s, generation=generation)
        if update is not None:
            self._publish(update)

    def _fail(self, error: str, generation: int, command_id: str | None = None) -> None:
        status = self._failed(error, generation, command_id)
        if status is not None and self._on_failed is not None:
            self._on_failed(status)
