"""A GRPO run that would fail after minutes of loading fails in one line with exit code 2 before anything loads.

The model named in these runs does not exist: reaching it would be a different error, so each test also shows
that the check came first.
"""

import importlib.util
from pathlib import Path

import pytest

from segzero_ros.cli import main
from segzero_ros.training.config import load_training_config
from segzero_ros.training.preflight import PreflightError, preflight

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "grpo_tiny_cpu.yaml"


def _train(tmp_path, capsys, *overrides):
    """`segzero train grpo` on the tiny recipe, with a model that does not exist unless `overrides` name one."""
    model = [] if any(o.startswith("model=") for o in overrides) else [f"model={tmp_path / 'no-such-model'}"]
    code = main(["train", "grpo", "--config", str(RECIPE), "-o", f"output_dir={tmp_path / 'run'}", *model,
                 *overrides])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def _one_error_line(lines):
    assert len(lines) == 1, lines
    assert lines[0].startswith("segzero train: error: ")
    return lines[0]


def test_a_batch_that_does_not_divide_the_step_fails_before_loading(tmp_path, capsys):
    code, lines = _train(tmp_path, capsys, "per_device_batch_size=3")
    assert code == 2
    assert "cannot be split into micro-batches of 3" in _one_error_line(lines)


def test_resume_without_a_checkpoint_fails_before_loading(tmp_path, capsys):
    code, lines = _train(tmp_path, capsys, "model=tiny", "resume_from_checkpoint=latest")
    assert code == 2
    assert "no checkpoint-N folder" in _one_error_line(lines)


def test_a_missing_local_model_is_named(tmp_path, capsys):
    code, lines = _train(tmp_path, capsys)
    assert code == 2
    assert "model: no such local path" in _one_error_line(lines)


@pytest.mark.parametrize(("overrides", "package", "extra"), [
    (["use_vllm=true"], "vllm", "train-vllm"),
    (['report_to=["tensorboard"]'], "tensorboard", "train-tensorboard"),
    (['report_to=["wandb"]'], "wandb", None),
])
def test_an_optional_package_a_run_needs_is_named_with_its_extra(tmp_path, capsys, overrides, package, extra):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    code, lines = _train(tmp_path, capsys, *overrides)
    assert code == 2
    line = _one_error_line(lines)
    assert f"needs the {package} package" in line
    assert (f"segzero-ros[{extra}]" if extra else f"pip install {package}") in line


def test_a_deepspeed_launch_without_deepspeed_is_named(tmp_path, monkeypatch):
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` with a ZeRO config exports
    config = load_training_config(RECIPE, [f"output_dir={tmp_path}"])
    with pytest.raises(PreflightError, match=r"needs the deepspeed package.*segzero-ros\[train-deepspeed\]"):
        preflight(config, 1)


def test_the_world_size_decides_the_split(tmp_path):
    config = load_training_config(RECIPE, [f"output_dir={tmp_path}"])  # 2 prompts × 2 generations, 4 per device
    assert preflight(config, 1) is None
    with pytest.raises(PreflightError, match="× 2 process"):
        preflight(config, 2)


def test_extra_rewards_that_cannot_load_fail_before_loading(tmp_path, capsys):
    code, lines = _train(tmp_path, capsys, "model=tiny", 'extra_rewards={"no_such_module_here:score": 1.0}')
    assert code == 2
    assert "extra_rewards: cannot load 'no_such_module_here:score'" in _one_error_line(lines)
    code, lines = _train(tmp_path, capsys, 'extra_rewards={"not a function": 1.0}')
    assert code == 2
    assert 'is not "module:function"' in _one_error_line(lines)


def test_extra_rewards_are_probed_for_one_number_per_completion():
    from segzero_ros.training.rewards_trl import load_extra_rewards

    probe = {"solution": '{"bbox": [1, 2, 3, 4], "points_1": [2, 3], "points_2": [2, 3]}'}
    [length] = load_extra_rewards({"builtins:len": 1.0})  # a callable that takes no keywords at all
    assert length.__name__ == "len"
    with pytest.raises(ValueError, match="builtins:len failed on a probe batch: TypeError"):
        load_extra_rewards({"builtins:len": 1.0}, probe=probe)
    with pytest.raises(ValueError, match=r"returned 1 for 2 completions"):
        load_extra_rewards({"tests.test_training_preflight:_one_reward": 1.0}, probe=probe)
    [counted] = load_extra_rewards({"tests.test_training_preflight:_reward_per_completion": 1.0}, probe=probe)
    assert counted(completions=[[{"content": "abc"}]], solution=["x"]) == [3.0]


def _one_reward(completions, **kwargs):
    return [1.0]


def _reward_per_completion(completions, **kwargs):
    return [float(len(completion[0]["content"])) for completion in completions]


def test_eval_segmenter_options_are_checked_with_the_config(tmp_path, capsys):
    code, lines = _train(tmp_path, capsys, "eval_dataset=synthetic:2", "eval_steps=1",
                         'eval_segmenter={"backend": "sam2", "colour": "red"}')
    assert code == 2
    assert "the sam2 segmenter has no option(s) colour" in _one_error_line(lines)
