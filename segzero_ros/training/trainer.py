"""Seg-Zero GRPO on TRL's GRPOTrainer: config → trainer → checkpoint folder the node loads.

The GRPO algorithm itself is TRL's (generation, group-normalised advantages, clipped policy loss, k3 KL to a
frozen reference, accelerate/DeepSpeed for many GPUs, optional vLLM rollouts). This module only wires the
Seg-Zero parts into it: the five reward functions, the refCOCOg_2k_840 data with the node's exact prompt,
the reference hyper-parameters, progress and per-reward logging, and a final folder (weights + processor,
LoRA merged) that ``TransformersReasoner`` / ``segzero infer --reasoner`` / the ROS node load directly.

torch, transformers and trl are imported inside the functions (``from trl import GRPOTrainer`` alone takes
10–15 s), so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero_ros.core.families import SEG_ZERO_FRAME, AnswerFrame, resolve_frame
from segzero_ros.core.formats import SEG_ZERO
from segzero_ros.errors import ModelLoadError, SegZeroError
from segzero_ros.files import download_hint, hub_offline, looks_like_local_path
from segzero_ros.reasoning.chat import prepare_processor_for_generation, render_chat_text
from segzero_ros.training.checkpoints import Checkpoint
from segzero_ros.training.config import TINY_MODEL, GRPOTrainingConfig, dump_training_config
from segzero_ros.training.model_card import model_card, write_model_card
from segzero_ros.training.preflight import preflight
from segzero_ros.training.rewards_trl import load_extra_rewards, reward_functions, reward_names
from segzero_ros.training.trl_trainer import DROPPED_METRIC, segzero_trainer_class
from segzero_ros.training.validation import Validator

_LOG = logging.getLogger(__name__)

FINAL_DIRNAME = "final"
"""Subfolder of output_dir holding the finished model and processor."""
METRICS_FILENAME = "metrics.jsonl"
"""One JSON object per logging step (TRL's log entries plus ``step``), in output_dir."""
RESOLVED_CONFIG_FILENAME = "segzero_grpo_config.yaml"
SUMMARY_FILENAME = "segzero_training.json"

Log = Callable[[str], None]


class TrainingError(SegZeroError):
    """A training run cannot start or finish; the message says why and what to change."""


@dataclass
class TrainingOutcome:
    output_dir: Path
    final_model_dir: Path
    """Load with ``ReasonerConfig(model=str(final_model_dir))`` or ``segzero infer --reasoner``."""
    metrics_path: Path
    global_step: int
    log_history: list[dict[str, Any]] = field(default_factory=list)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def world_size() -> int:
    """Processes in this run: accelerate/torchrun export WORLD_SIZE; a plain ``python`` run is one."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def _main_process_only(log: Log) -> Log:
    """Every rank runs the same code; only rank 0 should talk."""
    return log if is_main_process() else (lambda message: None)


# --- model and processor ---------------------------------------------------------------------------------------


def resolve_model_source(model: str, family: str = "auto") -> str:
    """``tiny`` → the offline tiny model of `family` (Qwen2.5-VL unless qwen3_vl; built once); a local path must
    exist; hub ids pass through."""
    if model == TINY_MODEL:
        from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

        return str(ensure_tiny_qwen(family="qwen2_5_vl" if family == "auto" else family))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"training model {model!r}: the folder has no config.json (not a transformers model)")
        return str(path)
    if looks_like_local_path(model):
        raise ModelLoadError(f"training model {model!r}: no such local folder")
    return model


def load_processor(source: str) -> Any:
    """The model's processor, left-padded for generation; load failures become one clear ModelLoadError."""
    try:
        import transformers

        hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
        processor = hf.AutoProcessor.from_pretrained(source)
    except Exception as exc:
        offline = hub_offline()
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else str(exc).splitlines()[0][:300]
        raise ModelLoadError(
            f"Could not load the processor of training model {source!r} ({why}). Pass a local folder with "
            f"`--override model=/path/to/Qwen2.5-VL-7B-Instruct`, or download it on a connected machine with "
            f"{download_hint(source)}."
        ) from exc
    # TRL left-pads its rollout prompts itself, and sets the same side on processors it loads; match it.
    return prepare_processor_for_generation(processor)


def model_init_kwargs(config: GRPOTrainingConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": config.model_dtype}
    if config.attn_implementation is not None:
        kwargs["attn_implementation"] = config.attn_implementation
    return kwargs


def lora_config(config: GRPOTrainingConfig) -> Any:
    """peft LoraConfig for the language model's projections, or None without ``lora``."""
    if not config.lora:
        return None
    from peft import LoraConfig

    pattern = config.lora_target_modules
    targets: str | list[str] = pattern
    if "," in pattern or not any(symbol in pattern for symbol in "*.$^|()"):
        targets = [name.strip() for name in pattern.split(",") if name.strip()]
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


# --- TRL arguments --------------------------------------------------------------------------------------------


def grpo_arguments(config: GRPOTrainingConfig, processes: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``trl.GRPOConfig`` (a plain dict: inspectable without importing trl)."""
    processes = world_size() if processes is None else processes
    arguments: dict[str, Any] = {
        "output_dir": config.output_dir,
        "per_device_train_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps(processes),
        "num_generations": config.num_generations,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "optim": config.optim,
        "max_grad_norm": config.max_grad_norm,
        "beta": config.beta,
        "epsilon": config.epsilon,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_completion_length": config.max_completion_length,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "loss_type": config.loss_type,
        "scale_rewards": config.scale_rewards,
        "reward_weights": config.reward_weights,
        "seed": config.seed,
        "bf16": config.bf16,
        "gradient_checkpointing": config.gradient_checkpointing,
        "use_cpu": config.use_cpu,
        "model_init_kwargs": model_init_kwargs(config),
        "use_vllm": config.use_vllm,
        "vllm_mode": config.vllm_mode,
        "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": config.vllm_tensor_parallel_size,
        "vllm_server_host": config.vllm_server_host,
        "vllm_server_port": config.vllm_server_port,
        "logging_steps": config.logging_steps,
        "save_strategy": "steps" if config.save_steps > 0 else "no",
        "save_steps": max(config.save_steps, 1),
        "save_total_limit": config.save_total_limit,
        "report_to": config.report_to,
        "run_name": config.run_name,
        "log_completions": config.log_completions,
        "dataloader_num_workers": config.dataloader_num_workers,
        "remove_unused_columns": False,  # the rewards need the "solution" column
    }
    if config.extra_rewards:
        builtin = config.reward_weights or [1.0] * len(reward_names(config.soft_rewards, config.answer_format))
        arguments["reward_weights"] = [*builtin, *(float(weight) for weight in config.extra_rewards.values())]
    if config.validation_steps:
        # transformers schedules it and keeps the best checkpoint; our evaluate() does the scoring.
        arguments.update(eval_strategy="steps", eval_steps=config.validation_steps,
                         metric_for_best_model=f"eval_{config.best_metric}", greater_is_better=True)
    arguments.update(config.trl_args)
    return arguments


# --- data -----------------------------------------------------------------------------------------------------


def training_frame(config: GRPOTrainingConfig, source: str) -> AnswerFrame:
    """The frame and coordinates the model is trained in: its family (from its config.model_type unless
    `family` says), `coordinates` and `frame_size` as the reasoner reads them at inference."""
    import transformers

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    model_type = None
    if config.family == "auto":
        try:
            model_type = hf.AutoConfig.from_pretrained(source).model_type
        except Exception as exc:
            raise ModelLoadError(f"training model {source!r}: cannot read its config ({exc}); set family") from exc
    return resolve_frame(config.family, config.coordinates, config.frame_size, model_type)


def prepare_dataset(config: GRPOTrainingConfig, frame: AnswerFrame = SEG_ZERO_FRAME) -> Any:
    """The configured data in the refCOCOg_2k_840 schema (mask data converted under output_dir, in `frame`)."""
    from segzero_ros.training.datasets import load_training_dataset

    return load_training_dataset(
        config.dataset,
        config.dataset_format,
        split=config.dataset_split,
        max_samples=config.max_samples,
        resample=config.resample,
        cache_dir=Path(config.output_dir) / "dataset_cache",
        answer_format=config.answer_format,
        frame=frame,
    )


def prompt_token_count(processor: Any, command: str, image: Any, format: str = SEG_ZERO,
                       frame_size: int = SEG_ZERO_FRAME.frame_size) -> int:
    """Tokens of one chat-formatted prompt with its image in the model's frame, exactly as TRL will build it."""
    from segzero_ros.training.datasets import as_reasoning_frame

    text = render_chat_text(processor, command, format)
    inputs = processor(text=[text], images=[as_reasoning_frame(image, frame_size)], return_tensors="pt")
    return int(inputs["input_ids"].shape[1])


def check_prompt_length(processor: Any, dataset: Any, limit: int, format: str = SEG_ZERO,
                        frame_size: int = SEG_ZERO_FRAME.frame_size) -> int:
    """Longest prompt (the longest command; the image always costs the same) must fit ``limit`` tokens."""
    commands = dataset.select_columns(["problem"])["problem"]  # the reference schema's name for the command
    if not commands:
        raise TrainingError("the training dataset is empty")
    longest = max(range(len(commands)), key=lambda index: len(commands[index]))
    count = prompt_token_count(processor, commands[longest], dataset[longest]["image"], format, frame_size)
    if count > limit:
        raise TrainingError(
            f"the longest prompt (row {longest}) is {count} tokens, over max_prompt_length={limit}; shorten the "
            "command or raise max_prompt_length"
        )
    return count


# --- callbacks ------------------------------------------------------------------------------------------------


def _callbacks(metrics_path: Path, names: Sequence[str], log: Log) -> list[Any]:
    """Metrics JSONL writer and a one-line-per-log progress printer, as transformers TrainerCallbacks."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):  # type: ignore[misc]
        """Every TRL log entry (rewards per function, KL, loss, lengths, …) as one JSON line."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, **{k: _jsonable(v) for k, v in logs.items()}}
            with metrics_path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(entry) + "\n")

    class Progress(TrainerCallback):  # type: ignore[misc]
        """``step 3/125 | reward 2.41 | thinking_format 1.00 … | kl 0.0012 | 9.8 s/step | eta 0:20:13``."""

        def __init__(self) -> None:
            self._started = time.monotonic()
            self._first_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self._started = time.monotonic()
            self._first_step = state.global_step  # > 0 when resumed: time per step counts this run's steps only
            if state.is_world_process_zero:
                log(f"training: {state.max_steps} steps of {args.per_device_train_batch_size} completions × "
                    f"{args.gradient_accumulation_steps} accumulation × {world_size()} process(es)")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            if "eval_gIoU" in logs:
                log(validation_line(state.global_step, logs))
                return
            if "reward" not in logs:
                return
            step, total = state.global_step, max(state.max_steps, 1)
            per_step = (time.monotonic() - self._started) / max(step - self._first_step, 1)
            parts = [f"step {step}/{total}", f"reward {logs['reward']:.3f}"]
            parts += [f"{name} {logs[f'rewards/{name}/mean']:.2f}" for name in names if f"rewards/{name}/mean" in logs]
            if "kl" in logs:
                parts.append(f"kl {logs['kl']:.4f}")
            if logs.get(DROPPED_METRIC) is not None:
                parts.append(f"dropped {logs[DROPPED_METRIC]:.0%}")
            parts.append(f"{per_step:.1f} s/step")
            parts.append(f"eta {_duration(per_step * max(total - step, 0))}")
            log(" | ".join(parts))

    return [MetricsFile(), Progress()]


def validation_line(step: int, logs: dict[str, Any]) -> str:
    """``validation at step 20: gIoU 0.412 | cIoU 0.455 | 2/64 failed | 38.1 s``."""
    parts = [f"validation at step {step}: gIoU {logs['eval_gIoU']:.3f}", f"cIoU {logs['eval_cIoU']:.3f}"]
    if logs.get("eval_not_found_accuracy") is not None:
        parts.append(f"not-found accuracy {logs['eval_not_found_accuracy']:.3f}")
    parts.append(f"{int(logs.get('eval_failed', 0))}/{int(logs.get('eval_samples', 0))} failed")
    parts.append(f"{logs.get('eval_seconds', 0.0):.1f} s")
    return " | ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# --- the trainer ----------------------------------------------------------------------------------------------


def build_grpo_trainer(
    config: GRPOTrainingConfig,
    dataset: Any = None,
    *,
    processor: Any = None,
    log: Log = _stderr,
    callbacks: Sequence[Any] = (),
    rollout_func: Callable[..., dict[str, Any]] | None = None,
) -> Any:
    """A ready ``trl.GRPOTrainer`` for ``config``.

    ``dataset``: rows in the refCOCOg_2k_840 schema (default: loaded from ``config.dataset``).
    ``rollout_func``: TRL's hook to replace generation (custom samplers, scripted groups in tests).
    """
    log = _main_process_only(log)
    source = resolve_model_source(config.model, config.family)
    frame = training_frame(config, source)
    processor = load_processor(source) if processor is None else processor
    if dataset is None:
        dataset = prepare_dataset(config, frame)
    tokens = check_prompt_length(processor, dataset, config.max_prompt_length, config.answer_format,
                                 frame.frame_size)
    log(f"data: {len(dataset)} rows from {config.dataset}; longest prompt {tokens} tokens; trained in the "
        f"{frame.describe()}")

    import trl

    from segzero_ros.training.datasets import to_trl_dataset

    hf_trl: Any = trl  # its partial annotations trip mypy --strict; use it untyped

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / METRICS_FILENAME
    names = [*reward_names(config.soft_rewards, config.answer_format), *config.extra_reward_names]
    train_dataset = to_trl_dataset(dataset, config.answer_format, frame)
    rewards = reward_functions(config.soft_rewards, config.answer_format, frame.extent)
    if config.extra_rewards:
        probe = {name: value for name, value in train_dataset[0].items() if name not in ("prompt", "image")}
        try:
            rewards += load_extra_rewards(config.extra_rewards, probe={**probe, "extent": frame.extent})
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        log(f"extra rewards: {', '.join(f'{name} ×{weight:g}' for name, weight in config.extra_rewards.items())}")
    args = hf_trl.GRPOConfig(**grpo_arguments(config))
    trainer: Any = segzero_trainer_class()(
        model=source,
        reward_funcs=rewards,
        args=args,
        train_dataset=train_dataset,
        # transformers wants an eval_dataset to schedule evaluation; the validator reads its own data.
        eval_dataset=train_dataset.select(range(1)) if config.validation_steps else None,
        processing_class=processor,
        callbacks=[*_callbacks(metrics_path, names, log), *callbacks],
        peft_config=lora_config(config),
        rollout_func=rollout_func,
    )
    trainer.dynamic_sampling = config.dynamic_sampling
    if config.validation_steps:
        trainer.validator = Validator(
            config.eval_dataset or "", split=config.eval_split, samples=config.eval_samples,
            segmenter_options=config.eval_segmenter, frame=frame, answer_format=config.answer_format,
            max_new_tokens=config.max_completion_length, output_dir=output_dir)
        log(f"validation: every {config.validation_steps} steps on {config.eval_dataset}"
            f"{f' (first {config.eval_samples})' if config.eval_samples else ''}; best checkpoint by "
            f"{config.best_metric}")
    # One line per logging step from our Progress callback replaces the bar and the raw log dicts.
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if config.freeze_vision_tower:
        frozen = 0
        for name, parameter in trainer.model.named_parameters():
            if ".visual." in f".{name}" and parameter.requires_grad:
                parameter.requires_grad_(False)
                frozen += parameter.numel()
        log(f"vision tower frozen ({frozen:,} parameters)")
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log(f"model: {source} ({trainable:,} trainable parameters{', LoRA' if config.lora else ''})")
    return trainer


def train_grpo(
    config: GRPOTrainingConfig,
    dataset: Any = None,
    *,
    log: Log = _stderr,
    rollout_func: Callable[..., dict[str, Any]] | None = None,
) -> TrainingOutcome:
    """Run the whole recipe: train, then write ``output_dir/final`` (model + processor) and a summary."""
    log = _main_process_only(log)
    output_dir = Path(config.output_dir)
    try:
        checkpoint = preflight(config, world_size())
    except SegZeroError as exc:
        raise TrainingError(str(exc)) from None
    final_dir = output_dir / FINAL_DIRNAME
    if checkpoint is not None and finished(config, checkpoint) and (final_dir / "config.json").is_file():
        log(f"already finished: {checkpoint.path.name} is step {checkpoint.global_step} of "
            f"{planned_steps(config, checkpoint)} and {final_dir} exists; nothing to do")
        return TrainingOutcome(output_dir, final_dir, output_dir / METRICS_FILENAME, checkpoint.global_step)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / METRICS_FILENAME
    if is_main_process():
        dump_training_config(config, output_dir / RESOLVED_CONFIG_FILENAME)
        if checkpoint is None:
            metrics_path.unlink(missing_ok=True)  # a fresh run starts a fresh metrics file
        else:
            keep_metrics_until(metrics_path, checkpoint.global_step)
    trainer = build_grpo_trainer(config, dataset, log=log, rollout_func=rollout_func)
    if checkpoint is not None and finished(config, checkpoint):
        log(f"{checkpoint.path.name} finished the run (step {checkpoint.global_step}); writing its final model")
        trainer._load_from_checkpoint(str(checkpoint.path))
        trainer.state.global_step = checkpoint.global_step
    else:
        if checkpoint is not None:
            log(f"resuming from {checkpoint.path} (step {checkpoint.global_step}): weights, optimizer, scheduler, "
                "random state and data position")
        trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint.path))
    if trainer.validator is not None:
        trainer.validator.close()  # the validation segmenter's memory goes back before the final save
    final_dir = save_final_model(trainer, config, log=log)
    history = list(trainer.state.log_history)
    if trainer.is_world_process_zero():
        summary = {
            "base_model": config.model,
            "dataset": config.dataset,
            "global_step": trainer.state.global_step,
            "rewards": [*reward_names(config.soft_rewards, config.answer_format), *config.extra_reward_names],
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": ({config.best_metric: trainer.state.best_metric}
                            if trainer.state.best_metric is not None else None),
            "last_log": history[-1] if history else {},
            "config": config.to_dict(),
        }
        (final_dir / SUMMARY_FILENAME).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        validation = trainer.last_validation
        write_model_card(final_dir, model_card(
            config, base_model=config.model, rewards=summary["rewards"], global_step=trainer.state.global_step,
            last_log=next((entry for entry in reversed(history) if "reward" in entry), {}),
            validation=None if validation is None else {"step": validation.step, **validation.summary},
            model_dir=str(final_dir)))
        if trainer.state.best_model_checkpoint is not None:
            log(f"best checkpoint by validation {config.best_metric}: {trainer.state.best_model_checkpoint} "
                f"({trainer.state.best_metric:.4f})")
        log(f"final model: {final_dir} (load with `segzero infer --reasoner {final_dir}`)")
    return TrainingOutcome(output_dir, final_dir, metrics_path, int(trainer.state.global_step), history)


def planned_steps(config: GRPOTrainingConfig, checkpoint: Checkpoint) -> int:
    """Optimizer steps of the whole run: max_steps when set (it may extend a finished run), else the count the
    checkpointed run planned from its epochs."""
    return config.max_steps if config.max_steps > 0 else checkpoint.max_steps


def finished(config: GRPOTrainingConfig, checkpoint: Checkpoint) -> bool:
    return checkpoint.global_step >= planned_steps(config, checkpoint) > 0


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop metric lines an interrupted run wrote after its checkpoint: the resumed run logs those steps anew."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and int(json.loads(line).get("step", 0)) <= step]
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def save_final_model(trainer: Any, config: GRPOTrainingConfig, log: Log = _stderr) -> Path:
    """Weights + processor in ``output_dir/final``, loadable by TransformersReasoner; LoRA gets merged."""
    final_dir = Path(config.output_dir) / FINAL_DIRNAME
    model = trainer.accelerator.unwrap_model(trainer.model)
    _enable_kv_cache(model)
    if not config.lora:
        trainer.save_model(str(final_dir))  # gathers ZeRO-3 shards; also writes the processor
        return final_dir
    adapter_dir = Path(config.output_dir) / "final_adapter"
    trainer.save_model(str(adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        log("merging the LoRA adapter into the base model")
        merged = merge_lora(resolve_model_source(config.model, config.family), adapter_dir, config)
        merged.save_pretrained(str(final_dir))
        trainer.processing_class.save_pretrained(str(final_dir))
    trainer.accelerator.wait_for_everyone()
    return final_dir


def merge_lora(base_source: str, adapter_dir: Path, config: GRPOTrainingConfig) -> Any:
    """Base weights (CPU) + adapter → one plain model, so nothing downstream needs peft."""
    import transformers
    from peft import PeftModel

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    base = hf.AutoModelForImageTextToText.from_pretrained(base_source, dtype=config.model_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    _enable_kv_cache(merged)
    return merged


def _enable_kv_cache(model: Any) -> None:
    """Training turns the KV cache off for gradient checkpointing; inference wants it back in the saved config."""
    config = getattr(model, "config", None)
    if config is None:
        return
    config.use_cache = True
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else None
    if text_config is not None:
        text_config.use_cache = True
