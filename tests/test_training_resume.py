"""Resuming GRPO: an interrupted and resumed run ends exactly where an uninterrupted one does (tiny Qwen2.5-VL).

transformers 5 reads a Qwen-VL checkpoint back under renamed keys with strict=False, which silently resumed from
the BASE weights; these tests would catch that (the weights would differ from the uninterrupted run's).
"""

import json
import shutil
from pathlib import Path

import pytest

from segzero_ros.training.checkpoints import CheckpointError, find_checkpoint
from segzero_ros.training.config import load_training_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6.*:FutureWarning"),
]

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "grpo_tiny_cpu.yaml"
STEPS, CUT = 4, 2


def _config(output_dir: Path, *extra: str):
    # A learning rate large enough that every step visibly moves the weights.
    return load_training_config(RECIPE, [f"output_dir={output_dir}", f"max_steps={STEPS}", f"save_steps={CUT}",
                                         "save_total_limit=5", "learning_rate=1e-3", "seed=3", *extra])


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name].float() - second[name].float()).abs().max()) for name in first)


def _interrupted_then_resumed(root: Path, *extra: str):
    """Train to step CUT and stop (as a killed job would, after its checkpoint), then resume with `latest`."""
    from transformers import TrainerCallback

    from segzero_ros.training.trainer import build_grpo_trainer, train_grpo

    class StopAtCut(TrainerCallback):
        def on_step_end(self, args, state, control, **_):
            if state.global_step == CUT:
                control.should_training_stop = True

    build_grpo_trainer(_config(root, *extra), callbacks=[StopAtCut()], log=lambda _: None).train()
    assert (root / f"checkpoint-{CUT}").is_dir() and not (root / "final").exists()
    lines: list[str] = []
    outcome = train_grpo(_config(root, "resume_from_checkpoint=latest", *extra), log=lines.append)
    return outcome, lines


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from segzero_ros.training.trainer import train_grpo

    root = tmp_path_factory.mktemp("resume")
    straight = train_grpo(_config(root / "straight"), log=lambda _: None)
    resumed, lines = _interrupted_then_resumed(root / "cut")
    return straight, resumed, lines


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(runs, tiny_qwen_dir):
    straight, resumed, lines = runs
    assert straight.global_step == resumed.global_step == STEPS
    final = _weights(resumed.final_model_dir)
    assert _largest_difference(final, _weights(straight.final_model_dir)) <= 1e-6
    # ... and it did continue from the checkpoint: the run moved away from the base and on past the checkpoint.
    from transformers import AutoModelForImageTextToText

    def loaded(folder) -> dict:
        return AutoModelForImageTextToText.from_pretrained(folder).state_dict()

    base, at_cut = loaded(tiny_qwen_dir), loaded(resumed.output_dir / f"checkpoint-{CUT}")
    assert _largest_difference(at_cut, base) > 1e-4
    assert _largest_difference(loaded(resumed.final_model_dir), at_cut) > 1e-4
    assert any("resuming from" in line and f"checkpoint-{CUT}" in line for line in lines)
    # The resumed run logs steps CUT+1..STEPS once each, after the interrupted run's 1..CUT.
    steps = [json.loads(line)["step"] for line in resumed.metrics_path.read_text().splitlines()]
    assert [step for step in steps if step <= STEPS] == sorted(steps) and steps[-1] >= STEPS


def test_resuming_a_finished_run_says_so_and_trains_no_extra_step(runs, capsys):
    from segzero_ros.cli import main

    _, resumed, _ = runs
    before = _weights(resumed.final_model_dir)
    code = main(["train", "grpo", "--config", str(RECIPE), "-o", f"output_dir={resumed.output_dir}",
                 f"max_steps={STEPS}", "resume_from_checkpoint=latest"])
    assert code == 0
    assert "already finished" in capsys.readouterr().out
    assert _largest_difference(before, _weights(resumed.final_model_dir)) == 0.0


def test_a_checkpoint_that_does_not_fit_the_model_is_an_error(runs, tmp_path):
    from safetensors.torch import save_file

    from segzero_ros.training.trainer import train_grpo

    _, resumed, _ = runs
    checkpoint = tmp_path / "run" / f"checkpoint-{CUT}"
    shutil.copytree(resumed.output_dir / f"checkpoint-{CUT}", checkpoint)
    weights = _weights(checkpoint)
    dropped = sorted(weights)[0]
    del weights[dropped]  # a checkpoint written by another model version: one tensor missing
    save_file(weights, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"does not fit the model: \\d+ missing keys .*{dropped.split('.')[-2]}"):
        train_grpo(_config(tmp_path / "run", "resume_from_checkpoint=latest"), log=lambda _: None)


def test_resume_without_a_checkpoint_fails_before_anything_loads(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint-N folder"):
        find_checkpoint(tmp_path, "latest")
    with pytest.raises(CheckpointError, match="no such folder"):
        find_checkpoint(tmp_path, str(tmp_path / "checkpoint-7"))


def test_a_resumed_lora_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    from segzero_ros.training.trainer import train_grpo

    lora = ("lora=true", "lora_r=4", "lora_alpha=8")
    straight = train_grpo(_config(tmp_path / "straight", *lora), log=lambda _: None)
    resumed, _ = _interrupted_then_resumed(tmp_path / "cut", *lora)
    assert resumed.global_step == STEPS
    assert _largest_difference(_weights(resumed.final_model_dir), _weights(straight.final_model_dir)) <= 1e-6
