"""The GRPO training config: reference defaults, YAML + overrides, type checks, and the shipped config files."""

from pathlib import Path

import pytest
import yaml

from segzero_ros.training.config import (
    GRPOTrainingConfig,
    config_from_mapping,
    load_training_config,
)
from segzero_ros.training.trainer import grpo_arguments

CONFIGS = Path(__file__).resolve().parents[1] / "recipes"


def test_defaults_are_the_reference_recipe():
    config = GRPOTrainingConfig()
    assert (config.num_generations, config.prompts_per_step) == (8, 16)
    assert config.learning_rate == 1e-6 and config.lr_scheduler_type == "constant"
    assert config.optim == "adamw_torch" and config.weight_decay == 0.01
    assert config.beta == 5e-3 and config.epsilon == 0.2 and config.temperature == 1.0
    assert config.max_prompt_length == 1300 and config.max_completion_length == 1300
    assert config.bf16 and config.gradient_checkpointing and config.num_train_epochs == 1.0
    assert config.dataset == "Ricky06662/refCOCOg_2k_840"
    assert not config.lora and not config.use_vllm and not config.soft_rewards


def test_yaml_then_overrides_with_types_from_the_dataclass(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: /models/qwen\nlearning_rate: 2.0e-6\nmax_steps: 10\nreport_to: [wandb]\nlora: false\n")
    config = load_training_config(path, [
        "learning_rate=1e-5",        # YAML would read "1e-5" as a string; the field says float
        "max-steps=3",               # dashes work like underscores
        "lora=yes",
        "max_samples=null",
        "report_to=tensorboard,wandb",
        "reward_weights=[1, 1, 2, 2, 1]",
        "trl_args.top_k=50",
        "attn_implementation=none",
    ])
    assert config.model == "/models/qwen"
    assert config.learning_rate == 1e-5 and isinstance(config.learning_rate, float)
    assert config.max_steps == 3 and config.lora is True and config.max_samples is None
    assert config.report_to == ["tensorboard", "wandb"]
    assert config.reward_weights == [1.0, 1.0, 2.0, 2.0, 1.0]
    assert config.trl_args == {"top_k": 50}
    assert config.attn_implementation is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rat": 1e-6}, "unknown training option"),
        ({"max_steps": "ten"}, "max_steps: expected an integer"),
        ({"max_steps": 2.5}, "max_steps: expected an integer"),
        ({"bf16": "maybe"}, "bf16: expected true or false"),
        ({"num_generations": 1}, "num_generations must be >= 2, got 1"),
        ({"dataset_format": "csv"}, "dataset_format"),
        ({"reward_weights": [1, 2]}, "5 values"),
        ({"reward_weights": ["a", 1, 1, 1, 1]}, "reward_weights: expected a number, got 'a'"),
        ({"top_p": 1.5}, "top_p must be <= 1, got 1.5"),
        ({"vllm_mode": "remote"}, "vllm_mode must be one of colocate, server"),
        ({"model_dtype": "int8"}, "model_dtype"),
        ({"answer_format": "yolo"}, "answer_format must be one of seg_zero, vision_reasoner"),
        ({"answer_format": "vision_reasoner", "soft_rewards": True}, "soft_rewards exist for answer_format seg_zero"),
        ({"answer_format": "vision_reasoner", "reward_weights": [1, 1, 1, 1, 1]}, "4 values"),
    ],
)
def test_bad_values_are_rejected_with_the_option_named(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_mapping(values)


def test_override_must_be_key_value():
    with pytest.raises(ValueError, match="not key=value"):
        load_training_config(None, ["lora"])
    with pytest.raises(ValueError, match="only trl_args"):
        load_training_config(None, ["model.name=x"])


def test_gradient_accumulation_makes_each_step_exactly_16_prompts():
    config = GRPOTrainingConfig(per_device_batch_size=4)
    assert config.completions_per_step == 128
    assert config.gradient_accumulation_steps(8) == 4    # 4 × 8 GPUs × 4 = 128
    assert config.gradient_accumulation_steps(1) == 32
    with pytest.raises(ValueError, match="cannot be split"):
        GRPOTrainingConfig(per_device_batch_size=3).gradient_accumulation_steps(8)


def test_trl_arguments_carry_the_recipe():
    config = load_training_config(CONFIGS / "grpo_7b.yaml", ["trl_args.top_k=5"])
    arguments = grpo_arguments(config, processes=8)
    assert arguments["per_device_train_batch_size"] == 4 and arguments["gradient_accumulation_steps"] == 4
    assert arguments["num_generations"] == 8 and arguments["beta"] == 5e-3
    assert arguments["learning_rate"] == 1e-6 and arguments["lr_scheduler_type"] == "constant"
    assert arguments["weight_decay"] == 0.01 and arguments["max_completion_length"] == 1300
    assert arguments["model_init_kwargs"] == {"dtype": "bfloat16", "attn_implementation": "sdpa"}
    assert arguments["remove_unused_columns"] is False  # the rewards read the solution column
    assert arguments["save_strategy"] == "steps" and arguments["save_steps"] == 100
    assert arguments["top_k"] == 5


@pytest.mark.parametrize("name", ["grpo_7b.yaml", "grpo_3b.yaml", "grpo_tiny_cpu.yaml", "grpo_vision_reasoner_7b.yaml",
                                  "grpo_qwen3vl_4b.yaml", "grpo_qwen3vl_4b_lora.yaml"])
def test_shipped_configs_load_and_divide_evenly(name):
    config = load_training_config(CONFIGS / name)
    processes = 1 if config.use_cpu or config.lora else 8
    assert config.gradient_accumulation_steps(processes) >= 1
    if name != "grpo_tiny_cpu.yaml":
        vision_reasoner = config.answer_format == "vision_reasoner"
        assert vision_reasoner == (name == "grpo_vision_reasoner_7b.yaml")
        qwen3 = "qwen3vl" in name
        assert config.model.startswith("Qwen/Qwen3-VL-" if qwen3 else "Qwen/Qwen2.5-VL-") and config.bf16
        assert config.beta == (1e-2 if vision_reasoner else 5e-3)
        assert config.prompts_per_step * config.num_generations == (32 if config.lora else 128)
    else:
        assert config.model == "tiny" and config.use_cpu and not config.bf16


def test_accelerate_config_is_eight_processes_of_deepspeed():
    accelerate = yaml.safe_load((CONFIGS / "accelerate_8gpu.yaml").read_text())
    assert accelerate["num_processes"] == 8 and accelerate["distributed_type"] == "DEEPSPEED"
    assert accelerate["deepspeed_config"]["zero_stage"] == 3 and accelerate["mixed_precision"] == "bf16"


def test_cli_prints_the_resolved_config(capsys):
    from segzero_ros.cli import main

    code = main(["train", "grpo", "--config", str(CONFIGS / "grpo_3b.yaml"), "--print-config", "-o", "max_steps=7"])
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and printed["max_steps"] == 7


def test_cli_reports_a_bad_config_in_one_line(capsys):
    from segzero_ros.cli import main

    assert main(["train", "grpo", "--print-config", "-o", "num_generations=1"]) == 2
    assert "bad training config" in capsys.readouterr().err


def test_a_model_card_for_a_hub_base_model_names_it_in_its_front_matter():
    from segzero_ros.training.config import GRPOTrainingConfig
    from segzero_ros.training.model_card import model_card

    config = GRPOTrainingConfig(model="Qwen/Qwen2.5-VL-7B-Instruct", lora=True)
    card = model_card(config, base_model=config.model, rewards=["thinking_format", "point"], global_step=125,
                      last_log={"reward": 3.25}, validation=None, model_dir="runs/x/final")
    front = card.split("---")[1]
    assert "base_model: Qwen/Qwen2.5-VL-7B-Instruct" in front
    assert "LoRA r=64 (merged)" in card and "Last logged mean reward: 3.250." in card
    assert "## Validation" not in card
