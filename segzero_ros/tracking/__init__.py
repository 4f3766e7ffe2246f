"""Follow the object between commands: SAM2's memory propagates a prompted object through later frames.

    from segzero_ros.tracking import build_tracker
    tracker = build_tracker(segmenter_config)          # the config the segmenter is built from
    first = tracker.start(image, ObjectPrompt(box, points))  # the commanded object on its frame
    later = tracker.track(next_image)                   # its mask on each new frame, as frames arrive
    tracker.reset()

Frames arrive one at a time, forever: the tracker keeps the conditioning frame and a bounded window of
recent frames, never the whole video (sam2's own video predictor keeps every frame of a finite video).
"""

from __future__ import annotations

from segzero_ros.tracking.base import TrackedMask, Tracker, build_tracker

__all__ = ["TrackedMask", "Tracker", "build_tracker"]
