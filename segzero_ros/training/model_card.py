"""The README.md of a trained model: what it was trained from, on what, with which rewards and recipe, how it
scored, and how to load it — in place of TRL's generic card (which names a local base model "[None]")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segzero_ros.training.config import GRPOTrainingConfig


def model_card(config: GRPOTrainingConfig, *, base_model: str, rewards: Sequence[str], global_step: int,
               last_log: Mapping[str, Any], validation: Mapping[str, Any] | None, model_dir: str) -> str:
    hub_base = "" if Path(base_model).exists() or "/" not in base_model else base_model
    front = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text",
             "tags: [segzero, grpo, reasoning-segmentation, trl]"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front.append("---")
    weights = config.reward_weights or [1.0] * (len(rewards) - len(config.extra_rewards))
    weights = [*weights, *config.extra_rewards.values()]
    reward_rows = [f"| `{name}` | {weight:g} |" for name, weight in zip(rewards, weights, strict=False)]
    lines = [
        *front, "",
        f"# Seg-Zero reasoner: GRPO from {base_model}", "",
        "A reasoning-segmentation reasoner: given an image and a command it writes its reasoning in `<think>` and "
        f"answers in `<answer>` ({config.answer_format} format); SAM2/SAM3/EdgeTAM turn the answer into a mask. "
        "Trained with segzero_ros on TRL's GRPOTrainer.", "",
        "## Training", "",
        f"- base model: `{base_model}`",
        f"- data: `{config.dataset}`{f' (first {config.max_samples} rows)' if config.max_samples else ''}",
        f"- steps: {global_step}; {config.prompts_per_step} prompts × {config.num_generations} generations per "
        f"step; learning rate {config.learning_rate:g}; KL β {config.beta:g}; "
        f"{'LoRA r=' + str(config.lora_r) + ' (merged)' if config.lora else 'all weights'}",
        f"- dynamic sampling: {config.dynamic_sampling}", "",
        "| reward | weight |", "|---|---|", *reward_rows, "",
    ]
    reward = last_log.get("reward")
    if reward is not None:
        lines += [f"Last logged mean reward: {float(reward):.3f}.", ""]
    if validation:
        lines += ["## Validation", "",
                  f"On `{config.eval_dataset}` at step {validation.get('step')}: gIoU {validation['gIoU']:.4f}, "
                  f"cIoU {validation['cIoU']:.4f}, {validation.get('failed', 0)} of {validation.get('count', 0)} "
                  "samples failed.", ""]
    lines += [
        "## Use", "",
        "```bash",
        f"segzero infer --image shelf.jpg --command \"the mug I can drink from\" --reasoner.model {model_dir}",
        f"ros2 launch segzero_ros segzero.launch.py reasoner.model:={model_dir}",
        "```", "",
        "The recipe that produced it is `segzero_grpo_config.yaml` beside the checkpoints.", "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path, text: str) -> None:
    (folder / "README.md").write_text(text, encoding="utf-8")
