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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segzero_ros.config import DTYPES, coordinates_option, family_option, frame_size_option
from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, SEG_ZERO
from segzero_ros.options import check_options, option, options_of
from segzero_ros.training.datasets import DATASET_FORMATS, RESAMPLING
from segzero_ros.training.rewards_trl import extra_reward_name, reward_names
from segzero_ros.training.validation import METRICS as VALIDATION_METRICS
from segzero_ros.training.validation import check_segmenter_options

TINY_MODEL = "tiny"
"""``model: tiny`` trains the offline tiny Qwen2.5-VL (smoke runs and tests)."""

DYNAMIC_SAMPLING = ("off", "drop")
EXTRA_REWARD = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""``package.module:function`` (or ``module:Class.method``), as the registry's loader reads it."""

DEFAULT_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
)
"""LoRA on the language model's attention and MLP projections only; the vision tower keeps its weights."""


@dataclass
class GRPOTrainingConfig:
    """Every training option, declared once with its rule (`option`): YAML recipes, `key=value` overrides and
    `--print-config` all read this table; a bad value fails here, before anything is loaded."""

    # --- what to train, on what, where to write -----------------------------------------------------------
    model: str = option("Qwen/Qwen2.5-VL-7B-Instruct", "Hub id or local folder of the base Qwen2.5-VL or Qwen3-VL "
                                                       "(or a previous checkpoint); \"tiny\" for the offline toy "
                                                       "of `family` (Qwen2.5-VL unless family says qwen3_vl).")
    dataset: str = option("Ricky06662/refCOCOg_2k_840", "Schema folder/parquet/hub id, a mask dataset (folder "
                                                        "format, ReasonSeg, HF masks) or synthetic[:N[:SEED]].")
    dataset_format: str = option("auto", "auto, segzero (refCOCOg_2k_840 schema), masks (converted on the way "
                                         "in) or synthetic.", choices=DATASET_FORMATS)
    dataset_split: str = option("train", "Split to read from a multi-split source.")
    max_samples: int | None = option(None, "Use only the first N rows (quick experiments).", kind=int, minimum=1)
    resample: str = option("area", "How mask data is squashed to 840²: area (reference data prep) or bilinear "
                                   "(what inference does).", choices=RESAMPLING)
    answer_format: str = option(SEG_ZERO, "seg_zero (one box + two points, Seg-Zero's rewards) or "
                                          "vision_reasoner (a list of objects, VisionReasoner's rewards; mask data "
                                          "becomes one GT object per instance mask, and samples without a target "
                                          "are kept).", choices=ANSWER_FORMAT_NAMES)
    output_dir: str = option("runs/segzero-grpo", "Trainer checkpoints land here; the final model (with its "
                                                  "processor) in OUTPUT_DIR/final.")
    family: str = family_option()
    coordinates: str = coordinates_option()
    frame_size: int = frame_size_option()

    # --- the reference GRPO recipe ------------------------------------------------------------------------
    num_generations: int = option(8, "Rollouts per prompt (the paper's best runs used 16); GRPO compares "
                                     "rollouts of the same prompt, so at least 2.", minimum=2)
    prompts_per_step: int = option(16, "Prompts per optimizer step, over all GPUs: prompts_per_step × "
                                       "num_generations completions per step.", minimum=1)
    per_device_batch_size: int = option(4, "Completions per GPU per forward/backward; gradient accumulation "
                                           "makes up the rest of the step.", minimum=1)
    learning_rate: float = option(1e-6, "AdamW learning rate (reference: 1e-6, constant).", minimum=1e-12)
    lr_scheduler_type: str = option("constant", "transformers scheduler name.")
    warmup_steps: int = option(0, "Linear warm-up steps.", minimum=0)
    weight_decay: float = option(0.01, "AdamW weight decay.", minimum=0.0)
    optim: str = option("adamw_torch", "transformers optimizer name.")
    max_grad_norm: float = option(1.0, "Gradient-norm clip.", minimum=0.0)
    beta: float = option(5e-3, "KL loss coefficient against the frozen reference model (0 skips the reference "
                               "model entirely).", minimum=0.0)
    epsilon: float = option(0.2, "PPO ratio clip.", minimum=0.0)
    temperature: float = option(1.0, "Rollout sampling temperature.", minimum=1e-6)
    top_p: float = option(1.0, "Rollout nucleus sampling.", minimum=0.0, maximum=1.0)
    max_prompt_length: int = option(1300, "Checked before training (TRL never truncates a vision prompt); the "
                                          "reference errors out beyond it too.", minimum=1)
    max_completion_length: int = option(1300, "Generation limit of a rollout.", minimum=1)
    num_train_epochs: float = option(1.0, "Epochs over the dataset.", minimum=0.0)
    max_steps: int = option(-1, "> 0 stops after this many optimizer steps, whatever the epoch count.",
                            minimum=-1)
    loss_type: str = option("bnpo", "Token-mean over the local batch, as veRL's masked mean; TRL also offers "
                                    "grpo, dr_grpo, dapo, …")
    scale_rewards: str = option("group", "Advantage = (r - group mean) / group std, as GRPO (TRL adds 1e-4 to "
                                         "the std, veRL 1e-6).")
    soft_rewards: bool = option(False, "Paper ablation: IoU and 1 - L1/840 instead of the 0/1 box rewards "
                                       "(seg_zero format only).")
    reward_weights: list[float] | None = option(None, "One weight per reward of the answer format (seg_zero: "
                                                      "thinking_format, segmentation_format, bbox_iou, bbox_l1, "
                                                      "point; vision_reasoner: thinking_format, object_format, "
                                                      "object_accuracy, non_repeat); unset = all 1.",
                                                kind=list, items=float)
    seed: int = option(42, "Seed of the trainer (data order, sampling, initialisation of new weights).")
    dynamic_sampling: str = option("off", "off: every prompt group trains, as the reference; drop: groups whose "
                                          "completions all score the same (zero advantage, no signal) are taken "
                                          "out of the loss, KL and token count included, as DAPO filters them; "
                                          "the share dropped is logged as dynamic_sampling/dropped.",
                                   choices=DYNAMIC_SAMPLING)
    extra_rewards: dict[str, float] = option({}, "More reward functions, \"module:function\": weight. Each is called "
                                                 "like the built-in ones (completions, solution, extent, …, "
                                                 "**kwargs), must return one float (or None) per completion, and "
                                                 "is logged under its function name; checked at start-up.")

    # --- precision and memory -------------------------------------------------------------------------------
    bf16: bool = option(True, "bfloat16 mixed precision (off on CPU).")
    model_dtype: str = option("bfloat16", "Weights dtype at load.", choices=DTYPES)
    gradient_checkpointing: bool = option(True, "Recompute activations in the backward pass (less memory).")
    attn_implementation: str | None = option(None, "e.g. flash_attention_2 or sdpa; unset lets transformers "
                                                   "choose.", kind=str)
    use_cpu: bool = option(False, "Train on CPU (tiny smoke runs); also turn bf16 off.")
    freeze_vision_tower: bool = option(False, "Train only the language model (less memory; the reference trained "
                                              "everything).")

    # --- LoRA (small GPUs) ----------------------------------------------------------------------------------
    lora: bool = option(False, "Train LoRA adapters instead of all weights (merged into the final model).")
    lora_r: int = option(64, "LoRA rank.", minimum=1)
    lora_alpha: int = option(128, "LoRA scaling numerator.", minimum=1)
    lora_dropout: float = option(0.05, "LoRA dropout.", minimum=0.0, maximum=1.0)
    lora_target_modules: str = option(DEFAULT_LORA_TARGETS, "A regex over module names, or a comma-separated "
                                                            "list of module name suffixes.")

    # --- vLLM rollouts (optional; needs the vllm package) ---------------------------------------------------
    use_vllm: bool = option(False, "Generate rollouts with vLLM (TRL's integration).")
    vllm_mode: str = option("colocate", "colocate (vLLM inside each training process) or server (`trl "
                                        "vllm-serve` on separate GPUs).", choices=("colocate", "server"))
    vllm_gpu_memory_utilization: float = option(0.3, "colocate: the GPU memory share vLLM takes.", minimum=0.0,
                                                maximum=1.0)
    vllm_tensor_parallel_size: int = option(1, "colocate: GPUs per vLLM instance.", minimum=1)
    vllm_server_host: str = option("0.0.0.0", "server: where `trl vllm-serve` listens.")
    vllm_server_port: int = option(8000, "server: its port.", minimum=1, maximum=65535)

    # --- logging and checkpoints -----------------------------------------------------------------------------
    logging_steps: int = option(1, "Log metrics every N steps.", minimum=1)
    save_steps: int = option(100, "Intermediate checkpoints every N steps (the reference: 100); 0 keeps only the "
                                  "final model.", minimum=0)
    save_total_limit: int | None = option(2, "Checkpoints kept (oldest deleted); unset keeps all.", kind=int,
                                          minimum=1)
    report_to: list[str] = option(["none"], "none, tensorboard, wandb, … (TrainingArguments.report_to).",
                                  items=str)
    run_name: str | None = option(None, "Run name for the trackers in report_to.", kind=str)
    log_completions: bool = option(False, "Log sampled completions (TRL).")
    dataloader_num_workers: int = option(0, "Data loading worker processes.", minimum=0)
    resume_from_checkpoint: str | None = option(None, "A checkpoint-N folder of an interrupted run, or \"latest\" "
                                                      "for the newest one in output_dir.", kind=str)
    # --- validation while training ------------------------------------------------------------------------
    eval_dataset: str | None = option(None, "Held-out data the model is validated on while it trains (greedy "
                                            "answers → masks → gIoU/cIoU, as `segzero eval`): any `segzero eval "
                                            "--data` source or synthetic[:N[:SEED[:SIZE]]]; unset = none.", kind=str)
    eval_split: str = option("validation", "Split to read from a multi-split eval_dataset.")
    eval_samples: int | None = option(None, "Validate on the first N samples only.", kind=int, minimum=1)
    eval_steps: int = option(0, "Validate every N optimizer steps; 0 = at every checkpoint (save_steps).",
                             minimum=0)
    eval_segmenter: dict[str, Any] = option({"backend": "sam2"}, "The segmenter that turns validation answers into "
                                                                "masks, as segmenter options by name (backend, "
                                                                "model, device, …; model: tiny for the offline "
                                                                "tiny one); device defaults to the trained model's.")
    best_metric: str = option("gIoU", "Validation metric that names the best checkpoint (kept whatever "
                                      "save_total_limit says, reported at the end).", choices=VALIDATION_METRICS)

    trl_args: dict[str, Any] = option({}, "Passed verbatim to trl.GRPOConfig (anything not covered above); wins "
                                          "over the fields above.")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every option against its declared rule, then the rules that tie options together."""
        check_options(self)
        if self.soft_rewards and self.answer_format != SEG_ZERO:
            raise ValueError("soft_rewards exist for answer_format seg_zero only")
        rewards = reward_names(self.soft_rewards, self.answer_format)
        if self.reward_weights is not None and len(self.reward_weights) != len(rewards):
            raise ValueError(f"reward_weights needs {len(rewards)} values (one per reward: {', '.join(rewards)}), "
                             f"got {len(self.reward_weights)}; extra_rewards carry their own weights")
        for entry, weight in self.extra_rewards.items():
            if not EXTRA_REWARD.fullmatch(str(entry)):
                raise ValueError(f"extra_rewards: {entry!r} is not \"module:function\"")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"extra_rewards: the weight of {entry} must be a number, got {weight!r}")
        if self.eval_dataset is not None:
            if self.eval_steps == 0 and self.save_steps == 0:
                raise ValueError("eval_dataset is set but neither eval_steps nor save_steps is: validation would "
                                 "never run; set eval_steps")
            check_segmenter_options(self.eval_segmenter)

    @property
    def validation_steps(self) -> int:
        """Steps between validations (0: none)."""
        if self.eval_dataset is None:
            return 0
        return self.eval_steps or self.save_steps

    @property
    def extra_reward_names(self) -> list[str]:
        """The names extra_rewards are logged under: their function names."""
        return [extra_reward_name(entry) for entry in self.extra_rewards]

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
    """Build the config, each value read by its option (YAML values and command-line strings alike)."""
    declared = options_of(GRPOTrainingConfig)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(declared))}")
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = declared[name].coerce(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return GRPOTrainingConfig(**converted)


def dump_training_config(config: GRPOTrainingConfig, path: Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_training_config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
