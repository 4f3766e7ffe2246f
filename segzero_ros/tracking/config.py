"""Tracking options (the node's `tracking.*` parameters), declared once; torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segzero_ros.options import check_options, option

REACQUIRE_CHOICES = ("none", "reason")


@dataclass(frozen=True)
class TrackingConfig:
    """Follow the commanded object on every new camera frame between commands (parameters tracking.*)."""

    enabled: bool = option(False, "After a successful command, keep tracking its object on each new camera frame "
                                  "(SAM2 memory, a second copy of the segmenter model on its own worker) and publish "
                                  "~/tracked and ~/mask per tracked frame.")
    max_rate_hz: float = option(15.0, "Track at most this many frames per second (newer frames replace older ones, "
                                      "never queued); 0 = as fast as frames arrive and the tracker allows.",
                                minimum=0.0, maximum=1000.0, applies="live")
    lost_after_s: float = option(1.0, "The track's state turns 'lost' after this long without the object present "
                                      "(tracking goes on: it may come back).", minimum=0.0, maximum=3600.0,
                                 applies="live")
    reacquire: str = option("none", "When the track is lost or ends on an unusable frame: 'none' keeps waiting, "
                                    "'reason' runs the original command again on the newest frame (its result "
                                    "restarts the track).", choices=REACQUIRE_CHOICES, applies="live")
    overlay_rate_hz: float = option(2.0, "Tracked frames also draw ~/overlay (when node publish_overlay is on and "
                                          "someone subscribes) at most this often; 0 = only command results.",
                                    minimum=0.0, maximum=1000.0, applies="live")
    memory_frames: int = option(0, "Past frames memory attention reads; 0 = the model's own (6, exactly SAM2). "
                                   "Fewer is faster and CHANGES the masks.", minimum=0, maximum=6)
    freeze_when_absent: bool = option(False, "Do not add frames where the object is absent to memory (keeps a lost "
                                             "object's memory clean; changes results, off = exactly SAM2).")

    def __post_init__(self) -> None:
        check_options(self, "tracking.")

    def tracker_options(self) -> dict[str, Any]:
        """Keyword options for build_tracker."""
        return {"memory_frames": self.memory_frames or None, "freeze_when_absent": self.freeze_when_absent}
