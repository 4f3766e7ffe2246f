"""Recipes for every cluster size: each parses, each launches the way its header says, and `--plan` gets the
split, the step count and the memory arithmetic right (hand-computed, and against the trainer itself)."""

import re
from pathlib import Path

import pytest

from segzero_ros.cli import main
from segzero_ros.training.config import load_training_config
from segzero_ros.training.plan import GIB, Launch, estimate_memory, plan_training

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
GRPO_RECIPES = sorted(RECIPES.glob("grpo_*.yaml"))
ACCELERATE_CONFIGS = sorted(RECIPES.glob("accelerate_*.yaml"))


def documented_launch(recipe: Path) -> Launch:
    """The launch the recipe's header comment gives: its accelerate config and process count, else one process."""
    header = "\n".join(line for line in recipe.read_text().splitlines() if line.startswith("#"))
    config_file = re.search(r"--config_file (\S+)", header)
    processes = re.search(r"--(?:num_processes|processes|nproc_per_node) (\d+)", header)
    count = int(processes.group(1)) if processes else None
    if config_file:
        return Launch.from_accelerate_config(RECIPES.parent / config_file.group(1), count)
    return Launch(count or 1, 1, "ddp" if (count or 1) > 1 else "single")


def test_there_is_a_recipe_for_every_cluster_size():
    launches = {recipe.name: documented_launch(recipe) for recipe in GRPO_RECIPES}
    strategies = {Launch.from_accelerate_config(path).strategy for path in ACCELERATE_CONFIGS}
    assert {"zero2", "zero3", "fsdp"} <= strategies
    assert any(Launch.from_accelerate_config(path).machines > 1 for path in ACCELERATE_CONFIGS)
    assert any(launch.strategy == "single" and load_training_config(RECIPES / name).lora
               for name, launch in launches.items())
    modes = {load_training_config(recipe).vllm_mode for recipe in GRPO_RECIPES
             if load_training_config(recipe).use_vllm}
    assert modes == {"colocate", "server"}


@pytest.mark.parametrize("recipe", GRPO_RECIPES, ids=lambda path: path.stem)
def test_every_recipe_plans_for_the_launch_its_header_documents(recipe, capsys):
    launch = documented_launch(recipe)
    plan = plan_training(load_training_config(recipe), launch)
    assert plan.per_device_batch_size * plan.gradient_accumulation_steps * launch.processes == (
        plan.prompts_per_step * plan.num_generations)
    config = load_training_config(recipe)
    if plan.rows is None:  # a hub dataset whose size is not known here: said so, never guessed
        assert not Path(config.dataset).exists() and "row count unknown" in "\n".join(plan.lines(config))
    else:
        assert plan.total_steps is not None and plan.total_steps > 0
    assert plan.memory is not None and plan.memory.total > 0  # every recipe's model can be sized here
    arguments = ["train", "grpo", "--config", str(recipe), "--plan", "--processes", str(launch.processes)]
    assert main(arguments) == 0
    assert f"× {launch.processes} process(es)" in capsys.readouterr().out


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda path: path.stem)
def test_every_accelerate_config_is_read_by_accelerate(path):
    launch = Launch.from_accelerate_config(path)
    assert launch.processes >= 8 and launch.strategy in ("zero2", "zero3", "fsdp")


def test_memory_arithmetic_by_hand():
    config = load_training_config(RECIPES / "grpo_7b.yaml")
    parameters = 8_000_000_000
    zero3 = estimate_memory(config, Launch(8, 1, "zero3"), parameters, parameters, 80.0)
    # bf16 weights and gradients sharded 8 ways (2 GB each), fp32 master + Adam moments 12 B/param sharded (12 GB),
    # the bf16 reference model sharded (2 GB).
    assert (zero3.weights, zero3.gradients, zero3.optimizer, zero3.reference) == pytest.approx(
        (2e9 / GIB, 2e9 / GIB, 12e9 / GIB, 2e9 / GIB))
    zero2 = estimate_memory(config, Launch(8, 1, "zero2"), parameters, parameters, 80.0)
    assert (zero2.weights, zero2.reference) == pytest.approx((16e9 / GIB, 16e9 / GIB))  # replicated
    single = estimate_memory(config, Launch(1, 1, "single"), parameters, parameters, 80.0)
    assert single.total == pytest.approx((16e9 + 16e9 + 32e9 + 16e9) / GIB)  # weights, grads, 2 moments, ref
    lora = load_training_config(RECIPES / "grpo_3b_lora_1gpu.yaml")
    adapters = estimate_memory(lora, Launch(1, 1, "single"), parameters, 10_000_000, 80.0)
    assert adapters.reference == 0.0 and adapters.weights == pytest.approx(16e9 / GIB)
    colocated = load_training_config(RECIPES / "grpo_7b_vllm_colocate.yaml")
    assert estimate_memory(colocated, Launch(8, 1, "zero3"), parameters, parameters, 80.0).vllm == pytest.approx(24.0)


def test_a_plan_that_does_not_split_is_refused(capsys):
    code = main(["train", "grpo", "--config", str(RECIPES / "grpo_7b.yaml"), "--plan", "--processes", "3"])
    assert code == 2
    assert "cannot be split into micro-batches of 4 per device × 3 process(es)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6.*:FutureWarning")
def test_planned_steps_and_parameters_are_the_trainers_own(tmp_path):
    from segzero_ros.training.trainer import train_grpo

    config = load_training_config(RECIPES / "grpo_tiny_cpu.yaml", [
        f"output_dir={tmp_path}", "dataset=synthetic:7:0:96", "max_steps=-1", "num_train_epochs=1.5",
        "max_completion_length=8"])
    plan = plan_training(config, Launch())
    outcome = train_grpo(config, log=lambda _: None)
    assert plan.steps_per_epoch == 3  # 7 prompts, 2 per step: whole steps only
    assert outcome.global_step == plan.total_steps == 5  # ceil(1.5 × 3)
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(outcome.final_model_dir)
    assert plan.parameters == sum(parameter.numel() for parameter in model.parameters())
