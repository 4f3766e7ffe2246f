"""Validation while training (tiny Qwen2.5-VL + tiny SAM2): the numbers logged at a step are what `segzero eval`
reports for the checkpoint saved at that step, and the best checkpoint survives rotation."""

import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6.*:FutureWarning"),
]

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "grpo_tiny_cpu.yaml"
EVAL_DATA = "synthetic:3:7:96"
REWARD_MODULE = '''
def short_answer(completions, solution=None, **kwargs):
    """1 for completions under 120 characters."""
    return [1.0 if len(c[0]["content"]) < 120 else 0.0 for c in completions]
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Four steps, a checkpoint and a validation every two, one extra reward from the config, via the CLI."""
    import contextlib
    import io
    import sys

    from segzero_ros.cli import main

    root = tmp_path_factory.mktemp("validated")
    (root / "validation_rewards.py").write_text(REWARD_MODULE)
    sys.path.insert(0, str(root))
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            code = main(["train", "grpo", "--config", str(RECIPE), "-o", f"output_dir={root / 'run'}",
                         "save_steps=2", "save_total_limit=1", "learning_rate=1e-3", f"eval_dataset={EVAL_DATA}",
                         'eval_segmenter={"backend": "sam2", "model": "tiny"}',
                         'extra_rewards={"validation_rewards:short_answer": 0.5}'])
    finally:
        sys.path.remove(str(root))
    assert code == 0
    return root / "run", output.getvalue()


def test_validation_is_logged_beside_the_rewards_and_written_per_checkpoint(run):
    output_dir, printed = run
    entries = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    validations = {entry["step"]: entry for entry in entries if "eval_gIoU" in entry}
    assert sorted(validations) == [2, 4]
    for step, entry in validations.items():
        assert entry["eval_samples"] == 3 and 0.0 <= entry["eval_gIoU"] <= 1.0
        assert f"validation at step {step}: gIoU {entry['eval_gIoU']:.3f}" in printed
        summary = json.loads((output_dir / "validation" / f"step-{step}" / "summary.json").read_text())
        assert summary["gIoU"] == entry["eval_gIoU"] and summary["cIoU"] == entry["eval_cIoU"]
    # The extra reward is scored and logged under its own name, like the built-in five.
    rewarded = [entry for entry in entries if "reward" in entry]
    assert len(rewarded) == 4 and all("rewards/short_answer/mean" in entry for entry in rewarded)
    assert "short_answer" in printed


def test_the_validation_of_a_step_equals_segzero_eval_of_its_checkpoint(run, tmp_path, capsys):
    """The same model, data and segmenter scored by the evaluator a user runs by hand."""
    from segzero_ros.cli import main
    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2

    output_dir, _ = run
    checkpoints = list(output_dir.glob("checkpoint-*"))
    assert len(checkpoints) == 1  # save_total_limit=1: the best one is what is left
    checkpoint = checkpoints[0]
    saved = json.loads((checkpoint / "validation.json").read_text())
    assert f"checkpoint-{saved['step']}" == checkpoint.name
    sam2 = ensure_tiny_sam2()
    code = main(["eval", "--data", EVAL_DATA, "--out", str(tmp_path / "eval"), "--no-progress", "--device", "cpu",
                 "--reasoner.model", str(checkpoint), "--reasoner.max_new_tokens", "96",
                 "--sam2", f"{sam2.config}:{sam2.checkpoint}", "--segmenter.image_size", str(sam2.image_size)])
    capsys.readouterr()
    assert code == 0
    by_hand = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert by_hand["gIoU"] == pytest.approx(saved["gIoU"], abs=1e-9)
    assert by_hand["cIoU"] == pytest.approx(saved["cIoU"], abs=1e-9)


def test_the_best_checkpoint_is_kept_and_reported(run):
    output_dir, printed = run
    final_summary = json.loads(next((output_dir / "final").glob("segzero_training.json")).read_text())
    best = final_summary["best_checkpoint"]
    assert best is not None and Path(best).is_dir()  # save_total_limit=1 rotates every other checkpoint away
    steps = {entry["step"]: entry["eval_gIoU"] for entry in map(json.loads, (output_dir / "metrics.jsonl")
                                                                .read_text().splitlines()) if "eval_gIoU" in entry}
    assert final_summary["best_metric"]["gIoU"] == max(steps.values())
    assert Path(best).name == f"checkpoint-{min(step for step, value in steps.items() if value == max(steps.values()))}"
    assert "best checkpoint by validation gIoU" in printed


def test_the_model_card_names_base_model_data_rewards_and_validation(run):
    output_dir, _ = run
    card = (output_dir / "final" / "README.md").read_text()
    assert "base model: `tiny`" in card and "data: `synthetic:16:0:128`" in card
    assert "| `short_answer` | 0.5 |" in card and "| `point` | 1 |" in card
    assert f"On `{EVAL_DATA}` at step 4: gIoU" in card
    assert "[None]" not in card and not (output_dir / "README.md").exists()  # TRL's generic card is gone
