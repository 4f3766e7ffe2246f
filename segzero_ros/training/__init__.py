"""Seg-Zero GRPO training on TRL: rewards as TRL reward functions, the refCOCOg_2k_840 data schema and its
converters, the reference recipe as a typed config, and the trainer that ties them together.

    config = load_training_config("recipes/grpo_3b.yaml", ["max_steps=50"])
    outcome = train_grpo(config)          # → outcome.final_model_dir loads in TransformersReasoner

Importing this package is cheap: torch, transformers, datasets and trl load only when a function needs them.
"""

from segzero_ros.training.config import GRPOTrainingConfig, load_training_config
from segzero_ros.training.datasets import (
    REFERENCE_DATASET,
    SEGZERO_COLUMNS,
    load_segzero_dataset,
    load_training_dataset,
    save_segzero_dataset,
    segzero_dataset_from_masks,
    segzero_record,
    to_trl_dataset,
)
from segzero_ros.training.rewards_trl import reward_functions, reward_names
from segzero_ros.training.targets import MaskTargets, frame_targets, mask_targets, solution_for_mask
from segzero_ros.training.trainer import TrainingOutcome, build_grpo_trainer, train_grpo

__all__ = [
    "REFERENCE_DATASET",
    "SEGZERO_COLUMNS",
    "GRPOTrainingConfig",
    "MaskTargets",
    "TrainingOutcome",
    "build_grpo_trainer",
    "frame_targets",
    "load_segzero_dataset",
    "load_training_config",
    "load_training_dataset",
    "mask_targets",
    "reward_functions",
    "reward_names",
    "save_segzero_dataset",
    "segzero_dataset_from_masks",
    "segzero_record",
    "solution_for_mask",
    "to_trl_dataset",
    "train_grpo",
]
