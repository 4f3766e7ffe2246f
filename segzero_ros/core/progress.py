"""What a caller can follow and stop while one command runs: its stage, the reasoning as it is generated,
and a cancel flag. Shared by the pipeline, the scheduler and the ROS action; no ROS, no torch."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


class Stage(str, enum.Enum):
    """Where a command is. Values are stable strings (the action's feedback carries them)."""

    QUEUED = "queued"
    REASONING = "reasoning"
    SEGMENTING = "segmenting"


@dataclass(frozen=True)
class Progress:
    """Hooks for one command. Callbacks run on the inference thread: keep them short and never raise."""

    on_text: Callable[[str], None] | None = None
    """Called with each chunk of generated text, in order; their concatenation is the raw output."""
    on_stage: Callable[[Stage], None] | None = None
    """Called with each Stage as the command moves on."""
    on_queued: Callable[[str], None] | None = None
    """Called with the command's id once it is queued, before it can start (so before any text or stage)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set it to stop the command: generation stops at the next token, the answer is `canceled`."""

    @property
    def canceled(self) -> bool:
        return self.cancel.is_set()

    def stage(self, stage: Stage) -> None:
        if self.on_stage is not None:
            self.on_stage(stage)

    def queued(self, command_id: str) -> None:
        if self.on_queued is not None:
            self.on_queued(command_id)

    def text(self, chunk: str) -> None:
        if chunk and self.on_text is not None:
            self.on_text(chunk)
