"""A training run's plan before it runs: how the step splits over processes, how many steps the data gives, and
the GPU memory per device the model's parameters alone will take (`segzero train grpo --plan`).

The split is exactly what the trainer will use; steps per epoch follow TRL's sampler (whole steps only); the
memory is arithmetic on parameter counts — weights, gradients, AdamW state and the frozen reference model, as
each distribution strategy places them — without activations or the rollouts' KV cache, which come on top.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.training.config import TINY_MODEL, GRPOTrainingConfig

GIB = 1024**3
STRATEGIES = ("single", "ddp", "zero2", "zero3", "fsdp")

KNOWN_PARAMETERS: dict[str, tuple[int, int]] = {
    # hub id → (all parameters, vision tower's), rounded, as the model cards give them; used only when the
    # model's own config is not on this machine (a local or cached model is counted exactly).
    "Qwen/Qwen2.5-VL-3B-Instruct": (3_750_000_000, 670_000_000),
    "Qwen/Qwen2.5-VL-7B-Instruct": (8_290_000_000, 680_000_000),
    "Ricky06662/Seg-Zero-7B": (8_290_000_000, 680_000_000),
    "Ricky06662/VisionReasoner-7B": (8_290_000_000, 680_000_000),
    "Qwen/Qwen3-VL-2B-Instruct": (2_130_000_000, 400_000_000),
    "Qwen/Qwen3-VL-4B-Instruct": (4_440_000_000, 400_000_000),
    "Qwen/Qwen3-VL-8B-Instruct": (8_770_000_000, 580_000_000),
}
"""Models a plan can size without their files."""

KNOWN_ROWS = {"Ricky06662/refCOCOg_2k_840": 2000}


@dataclass(frozen=True)
class Launch:
    """How the run is started: processes over machines and how the model is distributed."""

    processes: int = 1
    machines: int = 1
    strategy: str = "single"

    @classmethod
    def from_accelerate_config(cls, path: Path, processes: int | None = None) -> Launch:
        """Read an accelerate config file (as `accelerate launch --config_file` does) — checked by accelerate
        itself — into processes, machines and strategy."""
        from accelerate.commands.config.config_args import load_config_from_file

        cluster: Any = load_config_from_file(str(path))
        kind = str(getattr(cluster.distributed_type, "value", cluster.distributed_type))
        machines = int(cluster.num_machines or 1)
        count = int(processes if processes is not None else (cluster.num_processes or 1))
        if kind == "DEEPSPEED":
            stage = int((cluster.deepspeed_config or {}).get("zero_stage", 0))
            strategy = {2: "zero2", 3: "zero3"}.get(stage, "ddp")
        elif kind == "FSDP":
            strategy = "fsdp"
        elif count > 1:
            strategy = "ddp"
        else:
            strategy = "single"
        return cls(count, machines, strategy)

    def describe(self) -> str:
        names = {"single": "one process", "ddp": "data parallel (DDP)", "zero2": "DeepSpeed ZeRO-2",
                 "zero3": "DeepSpeed ZeRO-3", "fsdp": "FSDP (full shard)"}
        where = f"{self.machines} machine{'s' if self.machines > 1 else ''}"
        return f"{self.processes} process{'es' if self.processes > 1 else ''} on {where}, {names[self.strategy]}"


@dataclass(frozen=True)
class Memory:
    """GiB per device for the parameters' sake only."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    vllm: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.vllm


@dataclass(frozen=True)
class TrainingPlan:
    launch: Launch
    per_device_batch_size: int
    gradient_accumulation_steps: int
    num_generations: int
    prompts_per_step: int
    rows: int | None
    steps_per_epoch: int | None
    total_steps: int | None
    parameters: int | None
    trainable: int | None
    memory: Memory | None

    def lines(self, config: GRPOTrainingConfig) -> list[str]:
        completions = self.prompts_per_step * self.num_generations
        lines = [
            f"launch: {self.launch.describe()}",
            f"step: {self.prompts_per_step} prompts × {self.num_generations} generations = {completions} "
            f"completions = {self.per_device_batch_size} per device × {self.gradient_accumulation_steps} "
            f"accumulation × {self.launch.processes} process(es)",
        ]
        if self.rows is None:
            lines.append(f"data: {config.dataset}: row count unknown until it is read (a hub dataset not in the "
                         "local cache)")
        else:
            total = ("max_steps" if config.max_steps > 0 else f"{config.num_train_epochs:g} epoch(s)")
            lines.append(f"data: {self.rows} rows → {self.steps_per_epoch} steps per epoch; {total} → "
                         f"{self.total_steps} steps")
        if self.parameters is None or self.memory is None or self.trainable is None:
            lines.append(f"model: {config.model}: parameter count unknown (not local, not cached, not in the table "
                         "of known models); no memory estimate")
            return lines
        lines.append(f"model: {config.model}, {_count(self.parameters)} parameters, {_count(self.trainable)} "
                     f"trained{' (LoRA)' if config.lora else ''}")
        memory = self.memory
        parts = [f"weights {_gib(memory.weights)}", f"gradients {_gib(memory.gradients)}",
                 f"optimizer {_gib(memory.optimizer)}", f"reference model {_gib(memory.reference)}"]
        if memory.vllm:
            parts.append(f"vLLM share {_gib(memory.vllm)}")
        lines.append(f"GPU memory per device: {' + '.join(parts)} = {_gib(memory.total)} GiB, plus activations "
                     "and the rollouts' KV cache")
        return lines


def _count(value: int) -> str:
    if value >= 10**9:
        return f"{value / 1e9:.2f} B"
    if value >= 10**6:
        return f"{value / 1e6:.1f} M"
    return f"{value:,}"


def _gib(value: float) -> str:
    return f"{value:.1f}" if value >= 0.1 or value == 0 else f"{value:.4f}"


def plan_training(config: GRPOTrainingConfig, launch: Launch, *, gpu_memory_gib: float = 80.0) -> TrainingPlan:
    """The plan of `config` under `launch`; ValueError when the step does not split over the processes."""
    accumulation = config.gradient_accumulation_steps(launch.processes)
    rows = dataset_rows(config)
    steps_per_epoch = None if rows is None else rows // config.prompts_per_step
    if config.max_steps > 0:
        total: int | None = config.max_steps
    else:
        total = None if steps_per_epoch is None else math.ceil(config.num_train_epochs * steps_per_epoch)
    counted = parameter_count(config)
    parameters = trainable = None
    memory = None
    if counted is not None:
        parameters, vision = counted
        trainable = lora_parameters(config, parameters) if config.lora else (
            parameters - vision if config.freeze_vision_tower else parameters)
        memory = estimate_memory(config, launch, parameters, trainable, gpu_memory_gib)
    return TrainingPlan(launch, config.per_device_batch_size, accumulation, config.num_generations,
                        config.prompts_per_step, rows, steps_per_epoch, total, parameters, trainable, memory)


def estimate_memory(config: GRPOTrainingConfig, launch: Launch, parameters: int, trainable: int,
                    gpu_memory_gib: float) -> Memory:
    """Bytes of the parameters' state per device, in GiB, as each strategy places it.

    Plain PyTorch (single, DDP): weights in the load dtype, gradients and AdamW's two moments in the same dtype,
    all replicated. DeepSpeed with bf16 keeps fp32 master weights and moments (12 bytes/parameter) plus bf16
    gradients: ZeRO-2 shards those over the processes, ZeRO-3 (and FSDP, whose fp32 sharded parameters cost
    the same) the weights too. The frozen reference model (beta > 0, full fine-tuning) is a second copy of the
    weights, sharded under ZeRO-3/FSDP; LoRA's reference is the base with its adapters off (no copy).
    """
    width = 4 if config.model_dtype == "float32" else 2
    shards = max(launch.processes, 1)
    full, train = float(parameters * width), float(trainable)
    if launch.strategy in ("single", "ddp"):
        weights, gradients, optimizer = full, train * width, 2 * train * width
    elif launch.strategy == "zero2":
        weights, gradients, optimizer = full, train * 2 / shards, train * 12 / shards
    else:  # zero3, fsdp
        frozen = float((parameters - trainable) * width)
        weights, gradients, optimizer = (train * 2 + frozen) / shards, train * 2 / shards, train * 12 / shards
    reference = 0.0
    if config.beta > 0 and not config.lora:
        reference = full / shards if launch.strategy in ("zero3", "fsdp") else full
    vllm = config.vllm_gpu_memory_utilization * gpu_memory_gib * GIB if (
        config.use_vllm and config.vllm_mode == "colocate") else 0.0
    return Memory(weights / GIB, gradients / GIB, optimizer / GIB, reference / GIB, vllm / GIB)


def lora_parameters(config: GRPOTrainingConfig, parameters: int) -> int:
    """LoRA adapter parameters: r × (in + out) per adapted projection, counted on the model's own shapes when
    its config can be read, else ≈ 0.5 % of the model (rank 64 on a 7B)."""
    shapes = _projection_shapes(config)
    if shapes is None:
        return int(parameters * 0.005 * config.lora_r / 64)
    return sum(config.lora_r * (fan_in + fan_out) for fan_in, fan_out in shapes)


def _projection_shapes(config: GRPOTrainingConfig) -> list[tuple[int, int]] | None:
    model = _meta_model(config)
    if model is None:
        return None
    import re

    import torch

    from segzero_ros.training.trainer import lora_config

    targets = lora_config(config).target_modules
    shapes = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        matched = (re.fullmatch(targets, name) is not None if isinstance(targets, str)
                   else any(name == target or name.endswith(f".{target}") for target in targets))
        if matched:
            shapes.append((module.in_features, module.out_features))
    return shapes


def parameter_count(config: GRPOTrainingConfig) -> tuple[int, int] | None:
    """(all parameters, vision tower's) of the model: from its config (local folder, tiny, or the hub cache)
    built on the meta device, else the table of known models, else None."""
    model = _meta_model(config)
    if model is not None:
        total = sum(parameter.numel() for parameter in model.parameters())
        vision = sum(parameter.numel() for name, parameter in model.named_parameters() if ".visual." in f".{name}")
        return total, vision
    return KNOWN_PARAMETERS.get(config.model)


def _meta_model(config: GRPOTrainingConfig) -> Any:
    """The model's architecture without weights (no memory, no download), or None when its config is not here."""
    source = _config_source(config)
    return None if source is None else _architecture(source)


@functools.lru_cache(maxsize=4)
def _architecture(source: str) -> Any:
    import transformers
    from accelerate import init_empty_weights

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    try:
        model_config = hf.AutoConfig.from_pretrained(source)
        with init_empty_weights():
            model = hf.AutoModelForImageTextToText.from_config(model_config)
        model.tie_weights()  # from_pretrained ties the embeddings; from_config on meta does not
        return model
    except Exception:
        return None


def _config_source(config: GRPOTrainingConfig) -> str | None:
    if config.model == TINY_MODEL:
        from segzero_ros.training.trainer import resolve_model_source

        return resolve_model_source(config.model, config.family)
    path = Path(config.model).expanduser()
    if (path / "config.json").is_file():
        return str(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(config.model, "config.json")
    except Exception:
        return None
    return str(Path(cached).parent) if isinstance(cached, str) else None


def dataset_rows(config: GRPOTrainingConfig) -> int | None:
    """Rows the run will train on, when that is known without converting the data."""
    from segzero_ros.data.synthetic import parse_synthetic_source

    rows: int | None = None
    synthetic = parse_synthetic_source(config.dataset)
    if synthetic is not None:
        rows = synthetic[0]
    elif config.dataset in KNOWN_ROWS:
        rows = KNOWN_ROWS[config.dataset]
    elif Path(config.dataset).expanduser().exists():
        rows = _local_rows(Path(config.dataset).expanduser(), config.dataset_split)
    if rows is not None and config.max_samples is not None:
        rows = min(rows, config.max_samples)
    return rows


def _local_rows(path: Path, split: str) -> int | None:
    try:
        from segzero_ros.data.folder import is_folder_dataset
        from segzero_ros.data.hf import is_saved_dataset

        if is_saved_dataset(path):
            import datasets

            loaded: Any = datasets.load_from_disk(str(path))
            return len(loaded[split] if isinstance(loaded, Mapping) else loaded)
        if is_folder_dataset(path):
            from segzero_ros.data.loaders import load_eval_dataset

            return len(load_eval_dataset(path, "folder"))
    except Exception:
        return None
    return None


def launch_from_environment() -> Launch:
    """What `accelerate launch` / torchrun exported to this process (the plan of the run it is in)."""
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        stage = int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3") or 3)
        return Launch(processes, 1, "zero3" if stage == 3 else "zero2")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return Launch(processes, 1, "fsdp")
    return Launch(processes, 1, "ddp" if processes > 1 else "single")

