"""Trainer checkpoints: which one to resume, whether its run is already finished, and loading its weights
strictly.

transformers' Trainer restores the optimizer, the scheduler, the RNG states and the data position itself;
its weight loading does not survive transformers 5's renamed Qwen-VL modules (a checkpoint is saved under
the checkpoint names — ``model.layers.*`` — and read back into ``model.language_model.layers.*`` with
``strict=False``, so every key is "missing" and "unexpected" and training silently goes on from the base
weights). :func:`load_weights_strictly` reads the checkpoint through ``from_pretrained``, which knows the
renaming, and copies it in with ``strict=True``: a checkpoint that does not fit is an error, never a warning.

Only file-system and JSON work happens at import; torch and transformers load inside the functions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.errors import SegZeroError

LATEST = "latest"
"""``resume_from_checkpoint: latest`` picks the newest ``checkpoint-N`` in output_dir."""
STATE_FILENAME = "trainer_state.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(SegZeroError):
    """A checkpoint cannot be resumed: missing, incomplete, or its weights do not fit the model."""


@dataclass(frozen=True)
class Checkpoint:
    """One ``checkpoint-N`` folder and the progress its trainer state records."""

    path: Path
    global_step: int
    max_steps: int
    """The run's planned optimizer steps when the checkpoint was written."""

    @property
    def finished(self) -> bool:
        return self.max_steps > 0 and self.global_step >= self.max_steps


def checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, oldest first (by N, not by name)."""
    if not output_dir.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in output_dir.iterdir()
             if path.is_dir() and (match := _CHECKPOINT_NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def find_checkpoint(output_dir: Path, spec: str) -> Checkpoint:
    """The checkpoint ``resume_from_checkpoint`` names (a folder, or ``latest`` in output_dir); CheckpointError
    with what was looked for when there is none."""
    if spec == LATEST:
        found = [path for path in checkpoints(output_dir) if (path / STATE_FILENAME).is_file()]
        if not found:
            raise CheckpointError(
                f"resume_from_checkpoint=latest: no checkpoint-N folder with a {STATE_FILENAME} in {output_dir}; "
                "drop resume_from_checkpoint to start afresh, or point it at a checkpoint folder"
            )
        return read_checkpoint(found[-1])
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"resume_from_checkpoint={spec}: no such folder")
    return read_checkpoint(path)


def read_checkpoint(path: Path) -> Checkpoint:
    state_path = path / STATE_FILENAME
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a complete trainer checkpoint (cannot read {STATE_FILENAME}: "
                              f"{exc})") from exc
    return Checkpoint(path, int(state.get("global_step", 0)), int(state.get("max_steps", 0)))


def has_full_weights(path: Path) -> bool:
    """A checkpoint holding the whole model (single file or sharded), as opposed to a LoRA adapter only."""
    names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    return any((path / name).is_file() for name in names)


def load_weights_strictly(model: Any, path: Path) -> None:
    """Copy a checkpoint's weights into ``model`` in place; CheckpointError naming the keys that do not fit.

    Reads the checkpoint with the model's own class (so transformers applies its key renaming), on the CPU in
    the model's dtype, then ``load_state_dict(strict=True)``: it briefly holds a second copy of the weights in
    host memory (15 GB for a 7B in bf16).
    """
    import torch

    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    try:
        loaded, info = type(model).from_pretrained(str(path), dtype=dtype, output_loading_info=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read the weights of {path}: {str(exc).splitlines()[0][:300]}") from exc
    problems = {kind: sorted(info.get(kind) or ()) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        raise CheckpointError(f"{path} does not fit the model: {_describe_keys(problems)}")
    state = loaded.state_dict()
    with torch.no_grad():
        result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model: "
                              f"{_describe_keys({'missing_keys': missing, 'unexpected_keys': unexpected})}")
    del loaded, state


def _describe_keys(problems: dict[str, list[Any]]) -> str:
    parts = []
    for kind, keys in problems.items():
        if keys:
            shown = ", ".join(str(key) for key in keys[:3])
            parts.append(f"{len(keys)} {kind.replace('_', ' ')} ({shown}{', …' if len(keys) > 3 else ''})")
    return "; ".join(parts)
