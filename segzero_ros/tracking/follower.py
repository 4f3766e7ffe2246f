"""Keep following the commanded object on live camera frames, on a worker thread of its own, ROS-free.

The node offers every camera frame; the follower tracks only the NEWEST one when it is free (older frames
are dropped, never queued, so a slow tracker never falls behind the camera) and at most `max_rate_hz`. A new
target (a command's result) replaces the current one before the next frame. The tracker is built on the
worker thread on first use, so loading never blocks the caller. After `lost_after_s` without the object
present the state turns LOST (tracking continues: the object may come back).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, Point
from segzero_ros.tracking.base import TrackedMask, Tracker

LOG = logging.getLogger(__name__)


class TrackState(str, enum.Enum):
    IDLE = "idle"
    TRACKING = "tracking"
    LOST = "lost"
    FAILED = "failed"


@dataclass(frozen=True)
class TrackUpdate:
    """One tracked frame, for the caller to publish: every followed object, in the command's order."""

    command_id: str
    frame: Any
    """The caller's frame object the masks belong to (e.g. the ROS image, for its header)."""
    objects: tuple[TrackedMask, ...]
    boxes: tuple[Box | None, ...]
    """Bounding box of each object's mask (None where the object is not present)."""
    state: TrackState
    convert_s: float
    """Turning the caller's frame into RGB (0 for the commanded frame, which comes as RGB)."""
    track_s: float
    """The tracker's call on this frame."""

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


def mask_box(mask: np.ndarray) -> Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


Prompt = tuple[Box, Sequence[Point]]


@dataclass
class _Target:
    command_id: str
    rgb: np.ndarray
    prompts: tuple[Prompt, ...]
    frame: Any


class TrackFollower:
    def __init__(self, build: Callable[[], Tracker], convert: Callable[[Any], np.ndarray],
                 publish: Callable[[TrackUpdate], None], *, max_rate_hz: float = 10.0, lost_after_s: float = 2.0,
                 on_failed: Callable[[FollowStatus], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`convert` (raising ValueError for an unusable frame), `publish` and `on_failed` (the track ended:
        an unusable frame, a size change or a model error) are called on the follower's thread."""
        self._build, self._convert, self._publish, self._clock = build, convert, publish, clock
        self._on_failed = on_failed
        self.max_rate_hz, self.lost_after_s = max_rate_hz, lost_after_s
        self._condition = threading.Condition()
        self._target: _Target | None = None
        self._frame: Any = None
        self._command_id = ""
        self._state = TrackState.IDLE
        self._tracked = self._dropped = 0
        self._error = ""
        self._last_present = 0.0
        self._closed = False
        self._stopped = True
        self._generation = 0
        """Bumped by follow() and stop(): a target the worker started is only kept if nothing came since."""
        self._thread = threading.Thread(target=self._run, name="segzero-tracking", daemon=True)
        self._thread.start()

    def follow(self, command_id: str, rgb: np.ndarray, prompts: Sequence[Prompt], frame: Any = None) -> None:
        """Track these objects (box + points each, found on `rgb`) from now on, replacing any current target."""
        if not prompts:
            raise ValueError("follow needs at least one (box, points) prompt")
        with self._condition:
            self._target = _Target(command_id, rgb, tuple((box, tuple(points)) for box, points in prompts), frame)
            self._generation += 1
            self._frame = None  # frames before the new target's are of no use to it
            self._stopped = False  # frames offered while the target is being started are kept for it
            self._condition.notify_all()

    def offer(self, frame: Any) -> None:
        """A new camera frame; the previous one is dropped if it was not tracked yet."""
        with self._condition:
            if self._stopped and self._target is None:
                return
            if self._frame is not None:
                self._dropped += 1
            self._frame = frame
            self._condition.notify_all()

    def stop(self) -> bool:
        """Stop following (True when something was being followed)."""
        with self._condition:
            was = not self._stopped or self._target is not None
            self._target, self._frame, self._stopped = None, None, True
            self._state, self._command_id = TrackState.IDLE, ""
            self._generation += 1
        return was

    def status(self) -> FollowStatus:
        with self._condition:
            return FollowStatus(self._state, self._command_id, self._tracked, self._dropped, self._error)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        tracker: Tracker | None = None
        last_track = -float("inf")
        try:
            while True:
                with self._condition:
                    while not self._closed and self._target is None and (self._stopped or self._frame is None):
                        self._condition.wait()
                    if self._closed:
                        return
                    target, self._target = self._target, None
                    generation = self._generation
                    frame = None
                    if target is None:
                        wait = 1.0 / self.max_rate_hz - (self._clock() - last_track) if self.max_rate_hz > 0 else 0
                        if wait > 0:
                            self._condition.wait(wait)
                            continue
                        frame, self._frame = self._frame, None
                try:
                    if tracker is None:
                        tracker = self._build()
                    started = self._clock()
                    if target is not None:
                        self._start(tracker, target, generation, started)
                    elif frame is not None:
                        try:
                            rgb = self._convert(frame)
                        except ValueError as exc:  # an unusable frame: the track ends clearly
                            tracker.reset()
                            self._fail(str(exc), generation)
                            continue
                        converted = self._clock()
                        last_track = started
                        self._emit(frame, tracker.track_objects(rgb), converted - started, self._clock() - converted,
                                   generation)
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

    def _start(self, tracker: Tracker, target: _Target, generation: int, started: float) -> None:
        tracked = tracker.start_objects(target.rgb, target.prompts)
        with self._condition:
            if generation != self._generation:
                return  # stopped or replaced while this target was being started
            self._stopped, self._command_id, self._error = False, target.command_id, ""
            self._last_present = started
        self._emit(target.frame, tracked, 0.0, self._clock() - started, generation)

    def _fail(self, error: str, generation: int, command_id: str | None = None) -> None:
        with self._condition:
            if generation != self._generation:
                return  # a new target or stop() came meanwhile: this failure no longer concerns anyone
            self._stopped, self._state, self._error = True, TrackState.FAILED, error
            self._command_id = command_id if command_id is not None else self._command_id
            status = FollowStatus(self._state, self._command_id, self._tracked, self._dropped, error)
        if self._on_failed is not None:
            self._on_failed(status)

    def _emit(self, frame: Any, tracked: Sequence[TrackedMask], convert_s: float, track_s: float,
              generation: int) -> None:
        now = self._clock()
        boxes = tuple(mask_box(item.mask) if item.present else None for item in tracked)
        with self._condition:
            if self._stopped or generation != self._generation:
                return  # stop() or a new target came while this frame was being tracked
            if any(item.present for item in tracked):
                self._last_present = now
            self._state = TrackState.TRACKING if now - self._last_present <= self.lost_after_s else TrackState.LOST
            self._tracked += 1
            update = TrackUpdate(self._command_id, frame, tuple(tracked), boxes, self._state, convert_s, track_s)
        self._publish(update)
