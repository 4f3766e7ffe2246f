"""The GRPO training configuration: one typed dataclass whose defaults ARE the Seg-Zero reference recipe.

Loaded from YAML (``recipes/grpo_7b.yaml``) with ``key=value`` overrides on top, so a run is fully described
by its file plus the command line; the resolved values are written next to the checkpoint.

Reference recipe (SEGZERO.md, veRL ``visionreasoner_7b.yaml``): 8 rollouts per prompt, 16 prompts per
step, temperature 1.0; AdamW, lr 1e-6 constant, weight decay 0.01, grad-norm clip 1.0; KL loss coefficient
5e-3 (low-variance "k3" estimator, which is TRL's); PPO clip 0.2; prompt and completion up to 1300 tokens;
1 epoch; bf16; gradient checkpointing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, SEG_ZERO

TINY_MODEL = "tiny"
"""``model: tiny`` trains the offline tiny Qwen2.5-VL (smoke runs and tests)."""

DEFAULT_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
)
"""LoRA on the language model's attention and MLP projections only; the vision tower keeps its weights."""


@dataclass
class GRPOTrainingConfig:
    # --- what to train, on what, where to write -----------------------------------------------------------
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Hub id or local folder of the base Qwen2.5-VL (or a previous checkpoint); "tiny" for the offline toy."""
    dataset: str = "Ricky06662/refCOCOg_2k_840"
    """Schema folder/parquet/hub id, a mask dataset (folder format, ReasonSeg, HF masks) or synthetic[:N[:SEED]]."""
    dataset_format: str = "auto"
    """auto, segzero (refCOCOg_2k_840 schema), masks (converted on the way in) or synthetic."""
    dataset_split: str = "train"
    max_samples: int | None = None
    """Use only the first N rows (quick experiments)."""
    resample: str = "area"
    """How mask data is squashed to 840²: area (reference data prep) or bilinear (what inference does)."""
    answer_format: str = "seg_zero"
    """seg_zero (one box + two points, Seg-Zero's rewards) or vision_reasoner (a list of objects, VisionReasoner's
    rewards; mask data becomes one GT object per instance mask, and samples without a target are kept)."""
    output_dir: str = "runs/segzero-grpo"
    """Trainer checkpoints land here; the final model (with its processor) in OUTPUT_DIR/final."""

    # --- the reference GRPO recipe ------------------------------------------------------------------------
    num_generations: int = 8
    """Rollouts per prompt (the paper's best runs used 16)."""
    prompts_per_step: int = 16
    """Prompts per optimizer step, over all GPUs: prompts_per_step × num_generations completions per step."""
    per_device_batch_size: int = 4
    """Completions per GPU per forward/backward; gradient accumulation makes up the rest of the step."""
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.01
    optim: str = "adamw_torch"
    max_grad_norm: float = 1.0
    beta: float = 5e-3
    """KL loss coefficient against the frozen reference model (0 skips the reference model entirely)."""
    epsilon: float = 0.2
    """PPO ratio clip."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_length: int = 1300
    """Checked before training (TRL never truncates a vision prompt); the reference errors out beyond it too."""
    max_completion_length: int = 1300
    num_train_epochs: float = 1.0
    max_steps: int = -1
    """> 0 stops after this many optimizer steps, whatever the epoch count."""
    loss_type: str = "bnpo"
    """Token-mean over the local batch, as veRL's masked mean; TRL also offers grpo, dr_grpo, dapo, …"""
    scale_rewards: str = "group"
    """Advantage = (r - group mean) / group std, as GRPO (TRL adds 1e-4 to the std, veRL 1e-6)."""
    soft_rewards: bool = False
    """Paper ablation: IoU and 1 - L1/840 instead of the 0/1 box rewards (seg_zero format only)."""
    reward_weights: list[float] | None = None
    """One weight per reward: seg_zero (thinking_format, segmentation_format, bbox_iou, bbox_l1, point),
    vision_reasoner (thinking_format, object_format, object_accuracy, non_repeat); None = all 1."""
    seed: int = 42

    # --- precision and memory -------------------------------------------------------------------------------
    bf16: bool = True
    model_dtype: str = "bfloat16"
    """Weights dtype at load: bfloat16, float16, float32 or auto."""
    gradient_checkpointing: bool = True
    attn_implementation: str | None = None
    """e.g. flash_attention_2 or sdpa; None lets transformers choose."""
    use_cpu: bool = False
    """Train on CPU (tiny smoke runs); also turn bf16 off."""
    freeze_vision_tower: bool = False
    """Train only the language model (less memory; the reference trained everything)."""

    # --- LoRA (small GPUs) ----------------------------------------------------------------------------------
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: str = DEFAULT_LORA_TARGETS
    """A regex over module names, or a comma-separated list of module name suffixes."""

    # --- vLLM rollouts (optional; needs the vllm package) ---------------------------------------------------
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    """colocate (vLLM inside each training process) or server (`trl vllm-serve` on separate GPUs)."""
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_server_host: str = "0.0.0.0"
    vllm_server_port: int = 8000

    # --- logging and checkpoints -----------------------------------------------------------------------------
    logging_steps: int = 1
    save_steps: int = 100
    """Intermediate checkpoints every N steps (the reference: 100); 0 keeps only the final model."""
    save_total_limit: int | None = 2
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """none, tensorboard, wandb, … (TrainingArguments.report_to)."""
    run_name: str | None = None
    log_completions: bool = False
    dataloader_num_workers: int = 0
    resume_from_checkpoint: str | None = None
    """A checkpoint-N folder of an interrupted run, or "latest" for the newest one in output_dir."""
    trl_args: dict[str, Any] = field(default_factory=dict)
    """Passed verbatim to trl.GRPOConfig (anything not covered above); wins over the fields above."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that would only fail (or silently do something else) minutes into a run."""
        from segzero_ros.training.datasets import DATASET_FORMATS, RESAMPLING

        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2: GRPO compares rollouts of the same prompt")
        for name in ("prompts_per_step", "per_device_batch_size", "max_prompt_length", "max_completion_length",
                     "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.save_steps < 0:
            raise ValueError(f"save_steps must be >= 0, got {self.save_steps}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be at least 1 (or null), got {self.max_samples}")
        if self.dataset_format not in DATASET_FORMATS:
            raise ValueError(f"dataset_format must be one of {', '.join(DATASET_FORMATS)}, got {self.dataset_format!r}")
        if self.resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLING)}, got {self.resample!r}")
        if self.model_dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"model_dtype must be auto, bfloat16, float16 or float32, got {self.model_dtype!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.answer_format not in ANSWER_FORMAT_NAMES:
            raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMAT_NAMES)}, "
                             f"got {self.answer_format!r}")
        if self.soft_rewards and self.answer_format != SEG_ZERO:
            raise ValueError("soft_rewards exist for answer_format seg_zero only")
        rewards = 5 if self.answer_format == SEG_ZERO else 4
        if self.reward_weights is not None and len(self.reward_weights) != rewards:
            raise ValueError(f"reward_weights needs {rewards} values (one per {self.answer_format} reward), got "
                             f"{len(self.reward_weights)}")
        if self.lora and (self.lora_r < 1 or self.lora_alpha <= 0):
            raise ValueError("lora_r must be >= 1 and lora_alpha > 0")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be colocate or server, got {self.vllm_mode!r}")
        if not isinstance(self.trl_args, dict):
            raise ValueError("trl_args must be a mapping of GRPOConfig argument names to values")

    # --- derived quantities ---------------------------------------------------------------------------------

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations

    def gradient_accumulation_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that one step sees exactly prompts_per_step prompts."""
        if world_size < 1:
            raise ValueError(f"world size must be at least 1, got {world_size}")
        per_micro_step = self.per_device_batch_size * world_size
        if self.completions_per_step % per_micro_step:
            raise ValueError(
                f"{self.prompts_per_step} prompts × {self.num_generations} generations = "
                f"{self.completions_per_step} completions per step cannot be split into micro-batches of "
                f"{self.per_device_batch_size} per device × {world_size} process(es); choose per_device_batch_size "
                "(or the number of GPUs) so that their product divides it"
            )
        return self.completions_per_step // per_micro_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- loading -------------------------------------------------------------------------------------------------


def load_training_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> GRPOTrainingConfig:
    """Defaults ← YAML file (if any) ← ``key=value`` overrides; unknown keys are errors, values are type-checked."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping of option names to values")
        values.update(loaded)
    for override in overrides:
        key, value = parse_override(override)
        head, _, rest = key.partition(".")
        if rest:
            if head != "trl_args":
                raise ValueError(f"override {override!r}: only trl_args.<name> may be dotted")
            nested = dict(values.get("trl_args") or {})
            nested[rest] = yaml.safe_load(value)
            values["trl_args"] = nested
        else:
            values[key] = value
    return config_from_mapping(values)


def parse_override(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not separator or not key:
        raise ValueError(f"override {text!r} is not key=value")
    return key, value.strip()


def config_from_mapping(values: Mapping[str, Any]) -> GRPOTrainingConfig:
    """Build the config, converting each value to its field's type (YAML or command-line strings alike)."""
    hints = typing.get_type_hints(GRPOTrainingConfig)
    known = {f.name for f in dataclasses.fields(GRPOTrainingConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    converted = {name: coerce(value, hints[name], name) for name, value in values.items()}
    return GRPOTrainingConfig(**converted)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """``value`` (from YAML or a command-line string) as ``annotation``; ValueError naming the option if not."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.strip().lower() in _NONE)
        if is_none and type(None) in arguments:
            return None
        inner = [argument for argument in arguments if argument is not type(None)]
        return coerce(value, inner[0], name)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{name}: expected a string, got {value!r}")
    if origin is list:
        element = arguments[0] if arguments else Any
        items = _as_list(value)
        return [item if element is Any else coerce(item, element, name) for item in items]
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = yaml.safe_load(text)
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    return [value]


def dump_training_config(config: GRPOTrainingConfig, path: Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_training_config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
