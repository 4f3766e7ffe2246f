"""Checks a GRPO run passes before anything heavy loads: what a config alone cannot know (the number of
processes, the installed packages, the checkpoint on disk). Each failure is one line naming the fix; the CLI
turns it into exit code 2 seconds after start, not minutes later after the model has loaded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from segzero_ros.errors import SegZeroError
from segzero_ros.training.checkpoints import Checkpoint, find_checkpoint
from segzero_ros.training.config import TINY_MODEL, GRPOTrainingConfig

PACKAGES_OF_TRACKERS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "comet_ml": ("comet_ml",),
    "trackio": ("trackio",),
    "swanlab": ("swanlab",),
    "clearml": ("clearml",),
    "dvclive": ("dvclive",),
}
"""report_to names → the modules transformers needs for them (any one of them)."""

EXTRAS = {"deepspeed": "train-deepspeed", "tensorboard": "train-tensorboard", "vllm": "train-vllm", "peft": "train"}
"""Package → the setup.py extra that installs it."""

Installed = Callable[[str], bool]


class PreflightError(SegZeroError):
    """A run that would fail after loading, caught before: the message says what to change."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def preflight(config: GRPOTrainingConfig, processes: int, *, is_installed: Installed = installed) -> Checkpoint | None:
    """Raise PreflightError for the first problem; return the checkpoint to resume (None: a fresh run)."""
    try:
        config.gradient_accumulation_steps(processes)
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    _check_packages(config, is_installed)
    _check_paths(config)
    if config.extra_rewards:
        from segzero_ros.training.rewards_trl import load_extra_rewards

        try:
            load_extra_rewards(config.extra_rewards)  # imports and callables now; the probe call comes with data
        except ValueError as exc:
            raise PreflightError(str(exc)) from None
    if config.resume_from_checkpoint is None:
        return None
    return find_checkpoint(Path(config.output_dir), config.resume_from_checkpoint)


def _missing(package: str, why: str) -> PreflightError:
    extra = EXTRAS.get(package)
    how = f"pip install 'segzero-ros[{extra}]'" if extra else f"pip install {package}"
    return PreflightError(f"{why} needs the {package} package, which is not installed ({how})")


def _check_packages(config: GRPOTrainingConfig, is_installed: Installed) -> None:
    if config.lora and not is_installed("peft"):
        raise _missing("peft", "lora: true")
    if config.use_vllm and not is_installed("vllm"):
        raise _missing("vllm", "use_vllm: true")
    for tracker in config.report_to:
        modules = PACKAGES_OF_TRACKERS.get(tracker)
        if modules and not any(is_installed(module) for module in modules):
            raise _missing(modules[0], f"report_to: {tracker}")
    if _uses_deepspeed(config) and not is_installed("deepspeed"):
        raise _missing("deepspeed", "a DeepSpeed launch (accelerate's deepspeed config or trl_args.deepspeed)")


def _uses_deepspeed(config: GRPOTrainingConfig) -> bool:
    """accelerate exports ACCELERATE_USE_DEEPSPEED for a deepspeed config; trl_args may name a JSON."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true") or "deepspeed" in config.trl_args


def _check_paths(config: GRPOTrainingConfig) -> None:
    from segzero_ros.files import looks_like_local_path

    for option, value in (("model", config.model), ("dataset", config.dataset)):
        if value == TINY_MODEL or value.startswith("synthetic"):
            continue
        if looks_like_local_path(value) and not Path(value).expanduser().exists():
            raise PreflightError(f"{option}: no such local path {value!r}")
