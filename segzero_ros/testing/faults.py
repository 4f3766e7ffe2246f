"""Fault-injecting reasoner and segmenter backends, registered as the "faulty" backend of each kind.

A :class:`FaultScript` says what the next model calls do, in order: answer normally, raise, raise
``torch.OutOfMemoryError`` (what CUDA raises when a batch does not fit), or hang until the test releases
them. It can also make loading fail. A script is installed under a name, and a pipeline picks it with
``backend: faulty`` and ``model: <name>``, so the code under test builds its models exactly as in
production (through :func:`segzero_ros.backends.build_pipeline`).

Successful calls answer like a real reasoner would (the fixed :data:`FAULTY_ANSWER` text, parsed by the real
parser) and segment like the box segmenter (the mask is the box), so results can be checked by hand.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from segzero_ros.backends import register_reasoner, register_segmenter
from segzero_ros.config import ReasonerConfig, SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.errors import ModelLoadError
from segzero_ros.reasoning.base import BatchReasonerBase, ReasonerOutput, output_from_text
from segzero_ros.segmentation.base import SegmentOutput
from segzero_ros.segmentation.box import BoxSegmenter

FAULTY_BACKEND = "faulty"

FAULTY_ANSWER = ('<think>injected</think><answer>{"bbox": [210, 210, 630, 630], '
                 '"points_1": [380, 400], "points_2": [460, 450]}</answer>')
"""What a successful faulty reasoner call generates: the middle half of the image (reasoning frame)."""

HANG_LIMIT_S = 600.0
"""A hanging call returns by itself after this long, so a test that forgets to release it cannot leave a
thread behind forever."""


class Fault(str, enum.Enum):
    OK = "ok"
    RAISE = "raise"
    """RuntimeError, like a backend bug or a driver error."""
    OUT_OF_MEMORY = "out_of_memory"
    """torch.OutOfMemoryError, as CUDA raises it."""
    HANG = "hang"
    """Block until FaultScript.release is set (or HANG_LIMIT_S), then answer normally."""


@dataclass
class FaultScript:
    """The behaviour of the next calls, in order; once the list runs out, every call succeeds."""

    steps: deque[Fault] = field(default_factory=deque)
    load_error: str | None = None
    """When set, building the backend raises ModelLoadError with this message."""
    slow_load: bool = False
    """Building the backend blocks (`hanging` set) until `release` is set: a model that takes long to load."""
    release: threading.Event = field(default_factory=threading.Event)
    """Set it to let hanging calls return."""
    hanging: threading.Event = field(default_factory=threading.Event)
    """Set when a call starts to hang."""
    calls: int = 0
    closed: int = 0
    """How often close() was called on a backend built from this script."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, *steps: Fault | str, load_error: str | None = None) -> FaultScript:
        return cls(steps=deque(Fault(step) for step in steps), load_error=load_error)

    def next_fault(self) -> Fault:
        with self._lock:
            self.calls += 1
            return self.steps.popleft() if self.steps else Fault.OK

    def enact(self, fault: Fault, stage: str) -> None:
        """Raise or block as `fault` says; return normally for Fault.OK (and after a released hang)."""
        if fault is Fault.RAISE:
            raise RuntimeError(f"injected {stage} failure")
        if fault is Fault.OUT_OF_MEMORY:
            import torch  # only a test that asks for this fault pays for the import

            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB (injected in {stage})")
        if fault is Fault.HANG:
            self.hanging.set()
            self.release.wait(HANG_LIMIT_S)


_SCRIPTS: dict[str, FaultScript] = {}


def install_fault_script(name: str, script: FaultScript) -> FaultScript:
    """Make `script` what `backend: faulty, model: <name>` builds (reasoner and segmenter alike)."""
    _SCRIPTS[name] = script
    return script


def _script_for(name: str, kind: str) -> FaultScript:
    script = _SCRIPTS.get(name)
    if script is None:
        raise ModelLoadError(f"faulty {kind}: no fault script installed under {name!r}")
    if script.slow_load:
        script.hanging.set()
        script.release.wait(HANG_LIMIT_S)
    if script.load_error is not None:
        raise ModelLoadError(script.load_error)
    return script


class FaultyReasoner(BatchReasonerBase):
    def __init__(self, script: FaultScript, name: str) -> None:
        self._script = script
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def from_config(cls, config: ReasonerConfig) -> FaultyReasoner:
        return cls(_script_for(config.model or "", "reasoner"), name=f"faulty:{config.model}")

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        for _ in commands:
            self._script.enact(self._script.next_fault(), "reasoner")
        return [output_from_text(FAULTY_ANSWER, (int(image.shape[1]), int(image.shape[0]))) for image in images]

    def close(self) -> None:
        self._script.closed += 1


class FaultySegmenter:
    """The box segmenter, with the script's fault enacted in set_image (the heavy, memory-hungry call)."""

    def __init__(self, script: FaultScript, name: str) -> None:
        self._script = script
        self._name = name
        self._box = BoxSegmenter()

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> FaultySegmenter:
        return cls(_script_for(config.model or "", "segmenter"), name=f"faulty:{config.model}")

    def set_image(self, image: np.ndarray) -> None:
        self._script.enact(self._script.next_fault(), "segmenter")
        self._box.set_image(image)

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        return self._box.segment(prompt)

    def close(self) -> None:
        self._script.closed += 1
        self._box.close()


def register_fault_backends() -> None:
    """Register FaultyReasoner and FaultySegmenter as the "faulty" backends (idempotent)."""
    register_reasoner(FAULTY_BACKEND, FaultyReasoner.from_config)
    register_segmenter(FAULTY_BACKEND, FaultySegmenter.from_config)

