"""A reasoner that replays recorded model outputs instead of running a model.

Useful to re-score recorded generations against another segmenter, to reproduce a field report from its
logged raw output, and as a deterministic stand-in for the model in tests of the code around it.
Outputs are looked up by normalised command; "*" is the fallback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segzero_ros.config import ReasonerConfig
from segzero_ros.core.families import SEG_ZERO_FRAME, AnswerFrame
from segzero_ros.core.formats import SEG_ZERO, answer_format
from segzero_ros.core.prompt import normalize_command
from segzero_ros.errors import ModelLoadError
from segzero_ros.reasoning.base import BatchReasonerBase, ReasonerOutput, output_from_text, resolve_answer_frame

FALLBACK_KEY = "*"


class ScriptedReasoner(BatchReasonerBase):
    def __init__(self, outputs: Mapping[str, str], name: str = "scripted", format: str = SEG_ZERO,
                 frame: AnswerFrame = SEG_ZERO_FRAME) -> None:
        self._outputs = {normalize_command(k) if k != FALLBACK_KEY else k: v for k, v in outputs.items()}
        self._name = name
        self._format = answer_format(format)
        self.answer_frame = frame
        """The coordinates the recorded outputs are in (reasoner.family / coordinates / frame_size)."""

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def from_config(cls, config: ReasonerConfig) -> ScriptedReasoner:
        """`model` is a JSON file {command: raw model output, "*": fallback}."""
        if not config.model:
            raise ModelLoadError("the scripted reasoner replays a JSON file of recorded outputs: set reasoner.model "
                                 "(--reasoner FILE.json) to one")
        path = Path(config.model)
        try:
            outputs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"scripted reasoner: cannot read outputs file {path}: {exc}") from exc
        if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
            raise ModelLoadError(f"scripted reasoner: {path} must hold a JSON object of strings")
        return cls(outputs, name=f"scripted:{path.name}", format=config.answer_format,
                   frame=resolve_answer_frame(config))

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        results = []
        for image, command in zip(images, commands, strict=True):
            text = self._outputs.get(normalize_command(command), self._outputs.get(FALLBACK_KEY))
            if text is None:
                raise KeyError(f"scripted reasoner has no output for {command!r} and no '*' fallback")
            results.append(output_from_text(text, (int(image.shape[1]), int(image.shape[0])), format=self._format,
                                            frame=self.answer_frame))
        return results
