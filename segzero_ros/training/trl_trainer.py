"""TRL's GRPOTrainer with the three things Seg-Zero training adds to it, each through one of its hooks:

- strict resume: a checkpoint's weights are read through ``from_pretrained`` and must fit exactly
  (``_load_from_checkpoint``; see training/checkpoints.py);
- validation while training: ``evaluate`` runs the project's evaluator on the live model (training/validation.py)
  and the checkpoint saved at that step gets the summary (``_save_checkpoint``); transformers' own
  ``metric_for_best_model`` then tracks and keeps the best checkpoint;
- dynamic sampling: groups whose completions all score the same are taken out of the loss
  (``_generate_and_score_completions``), their share logged.

The class is built on first use: importing trl takes seconds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from segzero_ros.training.checkpoints import has_full_weights, load_weights_strictly
from segzero_ros.training.validation import CHECKPOINT_FILENAME, ValidationResult, Validator

DROPPED_METRIC = "dynamic_sampling/dropped"
"""Share of prompt groups dropped by dynamic sampling in a logging step."""


def flat_groups(rewards_per_function: Any, weights: Any, group_size: int) -> Any:
    """Per completion: does its prompt group carry no signal (every completion's weighted reward the same)?

    `rewards_per_function`: (completions, functions), NaN where a function did not score, consecutive rows of
    `group_size` being one prompt's group (TRL's layout). The total is the weighted sum, as TRL forms it; a
    completion no function scored has none and does not count (a group of only those is flat too).
    """
    import torch

    weighted = rewards_per_function * weights.to(rewards_per_function.device).unsqueeze(0)
    unscored = torch.isnan(rewards_per_function).all(dim=1)
    grouped = weighted.nansum(dim=1).view(-1, group_size)
    unscored = unscored.view(-1, group_size)
    highest = grouped.masked_fill(unscored, float("-inf")).max(dim=1).values
    lowest = grouped.masked_fill(unscored, float("inf")).min(dim=1).values
    flat = (highest - lowest) <= 1e-6  # -inf when nothing in the group was scored
    return flat.repeat_interleave(group_size)


@functools.cache
def segzero_trainer_class() -> Any:
    import transformers
    import trl

    hf_trl: Any = trl  # its partial annotations trip mypy --strict; use it untyped
    hf: Any = transformers

    class SegZeroGRPOTrainer(hf_trl.GRPOTrainer):  # type: ignore[misc]
        control: Any
        validator: Validator | None = None
        dynamic_sampling: str = "off"
        last_validation: ValidationResult | None = None
        _last_rewards: Any = None

        # --- strict resume -------------------------------------------------------------------------------------

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            path = Path(resume_from_checkpoint)
            if self.is_fsdp_enabled or not has_full_weights(path):
                super()._load_from_checkpoint(resume_from_checkpoint, model)  # FSDP shards, LoRA adapters
                return
            target = self.accelerator.unwrap_model(self.model if model is None else model)
            load_weights_strictly(target, path)

        # --- validation ---------------------------------------------------------------------------------------

        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None,
                     metric_key_prefix: str = "eval") -> dict[str, float]:
            if self.validator is None:
                return dict(super().evaluate(eval_dataset, ignore_keys, metric_key_prefix))
            result = self.validate()
            metrics = {f"{metric_key_prefix}_{name}": value for name, value in result.metrics().items()}
            # transformers' own log: GRPOTrainer.log would fold (and clear) the pending training metrics into it.
            hf.Trainer.log(self, dict(metrics))
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        def validate(self) -> ValidationResult:
            """Score the model as it is now on the held-out split (every process its shard)."""
            from trl.models.utils import unwrap_model_for_generation

            assert self.validator is not None
            with unwrap_model_for_generation(
                self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model:
                was_training = model.training
                config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
                use_cache = getattr(config, "use_cache", True)
                model.eval()
                config.use_cache = True  # off while training with gradient checkpointing; generation wants it
                try:
                    result = self.validator.run(model, self.processing_class, self.state.global_step,
                                                rank=self.accelerator.process_index,
                                                world=self.accelerator.num_processes,
                                                barrier=self.accelerator.wait_for_everyone)
                finally:
                    config.use_cache = use_cache
                    model.train(was_training)
            self.last_validation = result
            return result

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            result = self.last_validation
            if result is None or result.step != self.state.global_step or not self.is_world_process_zero():
                return
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            if folder.is_dir():
                payload = {"step": result.step, "seconds": round(result.seconds, 3), **result.summary}
                (folder / CHECKPOINT_FILENAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            """TRL's card names a local base model "[None]"; the run's own card is written with the final model
            (training/model_card.py), and the checkpoints' folder gets no generic one."""

        # --- dynamic sampling -----------------------------------------------------------------------------------

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._last_rewards = rewards  # gathered over all processes, TRL's group layout
            return rewards

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            output = super()._generate_and_score_completions(inputs)
            if self.dynamic_sampling != "drop" or not self.model.training or self._last_rewards is None:
                return output
            flat = flat_groups(self._last_rewards, self.reward_weights, self.num_generations)
            local = output["completion_mask"].shape[0]
            start = self.accelerator.process_index * local
            keep = (~flat[start:start + local]).to(output["completion_mask"].dtype)
            output["completion_mask"] = output["completion_mask"] * keep.unsqueeze(1)
            if "num_items_in_batch" in output:
                output["num_items_in_batch"] = self.accelerator.gather(output["completion_mask"].sum()).sum()
            self._metrics["train"][DROPPED_METRIC].append(flat.float().mean().item())
            return output

    return SegZeroGRPOTrainer


__all__ = ["DROPPED_METRIC", "flat_groups", "segzero_trainer_class"]
