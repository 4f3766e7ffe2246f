"""GRPO on TRL with the tiny offline Qwen2.5-VL: the CLI end to end, and that an update follows the reward."""

import json
from pathlib import Path

import numpy as np
import pytest

from segzero_ros.core.rewards import score_completion
from segzero_ros.core.solution import parse_solution
from segzero_ros.data.synthetic import generate_samples
from segzero_ros.reasoning.chat import trl_prompt
from segzero_ros.training.config import GRPOTrainingConfig, load_training_config
from segzero_ros.training.datasets import segzero_dataset_from_masks
from segzero_ros.training.rewards_trl import STRICT_REWARD_NAMES
from segzero_ros.training.trainer import build_grpo_trainer, grpo_arguments

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6.*:FutureWarning"),
]

CONFIGS = Path(__file__).resolve().parents[1] / "recipes"
END_OF_TURN = "<|im_end|>"


def test_the_reference_recipe_is_a_valid_trl_config(tmp_path):
    from trl import GRPOConfig

    config = load_training_config(CONFIGS / "grpo_7b.yaml", [f"output_dir={tmp_path}"])
    # use_cpu only so that bf16 validates on a machine without a GPU.
    args = GRPOConfig(**{**grpo_arguments(config, processes=8), "use_cpu": True})
    assert (args.num_generations, args.gradient_accumulation_steps, args.per_device_train_batch_size) == (8, 4, 4)
    assert args.beta == 5e-3 and args.epsilon == 0.2 and args.temperature == 1.0
    assert args.learning_rate == 1e-6 and args.weight_decay == 0.01 and args.max_grad_norm == 1.0
    assert args.lr_scheduler_type.value == "constant" and args.optim.value == "adamw_torch"
    assert args.max_completion_length == 1300 and args.bf16 and args.gradient_checkpointing


def test_training_prompt_is_the_inference_prompt(tiny_qwen_dir):
    """What TRL renders for a training row is byte for byte what the node sends at inference."""
    from PIL import Image
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    from segzero_ros.reasoning.chat import render_chat_text

    processor = AutoProcessor.from_pretrained(tiny_qwen_dir)
    command = "The mug on the LEFT."
    messages = prepare_multimodal_messages(trl_prompt(command), images=[Image.new("RGB", (840, 840))])
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat_text(processor, command)


def test_cli_grpo_trains_logs_each_reward_and_saves_a_model_the_reasoner_loads(tmp_path, tiny_qwen_dir, capsys):
    import torch
    from safetensors.torch import load_file

    from segzero_ros.cli import main
    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.reasoning.transformers_backend import TransformersReasoner

    out = tmp_path / "run"
    code = main([
        "train", "grpo", "--config", str(CONFIGS / "grpo_tiny_cpu.yaml"),
        "--override", f"output_dir={out}", "dataset=synthetic:4:0:96", "max_steps=2", "num_generations=2",
        "prompts_per_step=2", "per_device_batch_size=4",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "step 2/2 | reward" in printed and f"model in {out / 'final'}" in printed

    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [entry for entry in entries if "reward" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        means = [entry[f"rewards/{name}/mean"] for name in STRICT_REWARD_NAMES]
        # 4 completions per step, each reward 0 or 1: every mean is a multiple of 1/4, and TRL's total is their sum.
        assert all(mean * 4 == round(mean * 4) and 0 <= mean <= 1 for mean in means)
        assert entry["reward"] == pytest.approx(sum(means))
        assert "kl" in entry and "loss" in entry  # beta 5e-3: the KL to the reference model is computed

    final = out / "final"
    assert (final / "config.json").is_file() and (final / "segzero_training.json").is_file()
    assert json.loads((final / "segzero_training.json").read_text())["global_step"] == 2
    trained = load_file(str(final / "model.safetensors"))
    base = load_file(str(tiny_qwen_dir / "model.safetensors"))
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[name], base[name]) for name in base)

    reasoner = TransformersReasoner.from_config(
        TransformersReasonerConfig(model=str(final), device="cpu", max_new_tokens=96))
    try:
        sample = generate_samples(1, 9, 96)[0]
        output = reasoner.reason_batch([sample.image], [sample.text])[0]
    finally:
        reasoner.close()
    assert output.raw_output and output.completion_tokens > 0


def test_grpo_on_the_tiny_qwen3_vl_trains_in_its_relative_coordinates(tmp_path, tiny_qwen3_dir, capsys):
    """family qwen3_vl: the tiny Qwen3-VL trained through the CLI on 840-frame data, converted on the way in to
    its 832² frame and 0..1000 solutions; the saved model loads as a Qwen3-VL reasoner."""
    from segzero_ros.cli import main
    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.reasoning.transformers_backend import TransformersReasoner

    out = tmp_path / "run"
    code = main(["train", "grpo", "--config", str(CONFIGS / "grpo_tiny_cpu.yaml"), "--override", f"output_dir={out}",
                 "family=qwen3_vl", "dataset=synthetic:2:0:96", "max_steps=1", "num_generations=2",
                 "prompts_per_step=2", "per_device_batch_size=4"])
    assert code == 0
    printed = capsys.readouterr()
    assert "trained in the qwen3_vl, 832² frame, relative_1000 coordinates" in printed.err + printed.out
    assert "step 1/1 | reward" in printed.out
    reasoner = TransformersReasoner.from_config(TransformersReasonerConfig(model=str(out / "final"), device="cpu",
                                                                           max_new_tokens=32))
    try:
        assert reasoner.answer_frame.family == "qwen3_vl" and reasoner.answer_frame.extent == 1000
    finally:
        reasoner.close()


def test_training_rows_reach_trl_in_the_models_frame_and_coordinates(tmp_path):
    from segzero_ros.core.families import QWEN3_VL, answer_frame
    from segzero_ros.training.datasets import to_trl_dataset

    sample = generate_samples(1, 4, 96)[0]
    dataset = segzero_dataset_from_masks([sample], cache_dir=tmp_path / "rows")
    assert dataset[0]["solution_extent"] == 840 and dataset[0]["image"].size == (840, 840)
    row = to_trl_dataset(dataset, frame=answer_frame(QWEN3_VL))[0]
    box, _ = parse_solution(row["solution"])
    reference_box, _ = parse_solution(dataset[0]["solution"])
    assert row["image"].size == (832, 832)
    assert box.x1 == int(reference_box.x1 * 1000 / 840 + 0.5) and box.y2 == int(reference_box.y2 * 1000 / 840 + 0.5)
    made = segzero_dataset_from_masks([sample], cache_dir=tmp_path / "rows3", frame=answer_frame(QWEN3_VL))
    assert made[0]["solution_extent"] == 1000 and made[0]["image"].size == (832, 832)  # make-dataset --family


def scripted_rollout(completions):
    """A TRL rollout_func that answers each group with the given completions, in order (a hand-made group)."""

    def rollout(prompts, trainer):
        processor = trainer.processing_class
        tokenized = processor.apply_chat_template(
            conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        texts = [completions[index % len(completions)] for index in range(len(prompts))]
        ids = [processor.tokenizer(text + END_OF_TURN, add_special_tokens=False)["input_ids"] for text in texts]
        return {"prompt_ids": tokenized["input_ids"], "completion_ids": ids, "logprobs": None}

    return rollout


def completion_logprob(model, processor, image, command, completion, answer_format="seg_zero"):
    """log p(completion + end of turn | chat prompt with image), with the same token ids the rollout used."""
    import torch

    from segzero_ros.reasoning.chat import render_chat_text

    prompt = processor(text=[render_chat_text(processor, command, answer_format)], images=[image], return_tensors="pt")
    target = torch.tensor([processor.tokenizer(completion + END_OF_TURN, add_special_tokens=False)["input_ids"]])
    input_ids = torch.cat([prompt["input_ids"], target], dim=1)
    with torch.no_grad():
        logits = model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pixel_values=prompt["pixel_values"],
            image_grid_thw=prompt["image_grid_thw"],
        ).logits
    predicted = torch.log_softmax(logits[0, -target.shape[1] - 1 : -1].float(), dim=-1)
    return float(predicted.gather(1, target[0][:, None]).sum())


def test_grpo_update_moves_probability_toward_the_higher_reward_completion(tmp_path, tiny_qwen_dir, monkeypatch):
    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION, TINY_THINK

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL
    sample = generate_samples(1, 5, 96)[0]
    dataset = segzero_dataset_from_masks([sample], cache_dir=tmp_path / "rows")
    solution = dataset[0]["solution"]
    box, (first, second) = parse_solution(solution)
    # The exact GT answer (all five rewards) against the tiny model's own fixed answer (format only).
    good = (f"<think>{TINY_THINK}</think><answer>"
            f'{{"bbox": [{box.x1},{box.y1},{box.x2},{box.y2}], "points_1": [{first.x},{first.y}], '
            f'"points_2": [{second.x},{second.y}]}}</answer>')
    good_scores, bad_scores = score_completion(good, solution), score_completion(TINY_COMPLETION, solution)
    assert good_scores.total == 5.0 and bad_scores.total == 2.0

    config = GRPOTrainingConfig(
        model=str(tiny_qwen_dir), dataset="in-memory", output_dir=str(tmp_path / "run"),
        num_generations=2, prompts_per_step=1, per_device_batch_size=2, max_steps=2,
        learning_rate=5e-4, beta=0.0, max_completion_length=128,
        use_cpu=True, bf16=False, model_dtype="float32", gradient_checkpointing=False, save_steps=0, seed=0,
    )
    trainer = build_grpo_trainer(config, dataset, rollout_func=scripted_rollout([good, TINY_COMPLETION]),
                                 log=lambda message: None)
    processor, model, image = trainer.processing_class, trainer.model, dataset[0]["image"]
    model.eval()
    before = [completion_logprob(model, processor, image, sample.text, text) for text in (good, TINY_COMPLETION)]
    trainer.train()
    model.eval()
    after = [completion_logprob(model, processor, image, sample.text, text) for text in (good, TINY_COMPLETION)]

    assert after[0] > before[0] + 1.0, (before, after)   # the 5-point answer became more likely …
    assert after[1] < before[1], (before, after)         # … at the expense of the 2-point one
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2
    for entry in logged:  # TRL scored the hand-made group with our functions, one log per reward
        assert entry["reward"] == pytest.approx(3.5)
        for name in STRICT_REWARD_NAMES:
            expected = (getattr(good_scores, name) + getattr(bad_scores, name)) / 2
            assert entry[f"rewards/{name}/mean"] == pytest.approx(expected)


def test_empty_group_signal_when_all_completions_score_the_same(tmp_path, tiny_qwen_dir, monkeypatch):
    """Control for the test above: identical rewards give zero advantage, so the policy does not move."""
    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    sample = generate_samples(1, 5, 96)[0]
    dataset = segzero_dataset_from_masks([sample], cache_dir=tmp_path / "rows")
    config = GRPOTrainingConfig(
        model=str(tiny_qwen_dir), dataset="in-memory", output_dir=str(tmp_path / "run"),
        num_generations=2, prompts_per_step=1, per_device_batch_size=2, max_steps=1,
        learning_rate=5e-4, weight_decay=0.0, beta=0.0, max_completion_length=128,
        use_cpu=True, bf16=False, model_dtype="float32", gradient_checkpointing=False, save_steps=0, seed=0,
    )
    trainer = build_grpo_trainer(config, dataset, rollout_func=scripted_rollout([TINY_COMPLETION]),
                                 log=lambda message: None)
    before = {name: tensor.detach().clone() for name, tensor in trainer.model.named_parameters()}
    trainer.train()
    moved = [name for name, tensor in trainer.model.named_parameters() if not np.allclose(before[name], tensor.detach())]
    assert moved == []


def test_lora_run_saves_merged_weights_with_the_vision_tower_untouched(tmp_path, tiny_qwen_dir):
    import re

    import torch
    from safetensors.torch import load_file

    from segzero_ros.training.trainer import train_grpo

    config = load_training_config(CONFIGS / "grpo_tiny_cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", f"model={tiny_qwen_dir}", "dataset=synthetic:2:0:96", "max_steps=1",
        "lora=true", "lora_r=4", "lora_alpha=8", "learning_rate=1e-2",
    ])
    outcome = train_grpo(config, log=lambda message: None)
    trained = load_file(str(outcome.final_model_dir / "model.safetensors"))
    base = load_file(str(tiny_qwen_dir / "model.safetensors"))
    assert trained.keys() == base.keys()  # merged: a plain model, no adapter tensors left
    changed = {name for name in base if not torch.equal(trained[name], base[name])}
    projection = re.compile(r"layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
    assert changed and all(projection.search(name) and "visual" not in name for name in changed)
    assert (outcome.output_dir / "final_adapter" / "adapter_config.json").is_file()


def test_vision_reasoner_format_trains_on_its_own_prompt_and_rewards(tmp_path, tiny_qwen_dir, monkeypatch):
    """answer_format=vision_reasoner end to end through TRL: multi-object rows (JSON-list solutions), the
    VisionReasoner prompt in every rollout, its four rewards logged, and the update favouring the GT list."""
    from segzero_ros.core.prompt import build_vision_reasoner_prompt
    from segzero_ros.core.vision_reasoner_rewards import score_objects
    from segzero_ros.data.synthetic import generate_object_list_samples
    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION
    from segzero_ros.training.rewards_trl import reward_names

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    sample = next(s for s in generate_object_list_samples(20, 3, 96) if len(s.targets) == 2)
    dataset = segzero_dataset_from_masks([sample], cache_dir=tmp_path / "rows", answer_format="vision_reasoner")
    solution = dataset[0]["solution"]
    objects = json.loads(solution)
    assert len(objects) == 2 and all(set(o) == {"bbox_2d", "point_2d"} for o in objects)
    good = f"<think>two {sample.text.split()[2]} shapes</think><answer>{solution}</answer>"
    good_scores, bad_scores = score_objects(good, solution), score_objects(TINY_COMPLETION, solution)
    assert good_scores.total == 7.0 and bad_scores.accuracy == 0.0

    seen_prompts = []
    scripted = scripted_rollout([good, TINY_COMPLETION])

    def rollout(prompts, trainer):
        seen_prompts.extend(prompts)
        return scripted(prompts, trainer)

    config = GRPOTrainingConfig(
        model=str(tiny_qwen_dir), dataset="in-memory", output_dir=str(tmp_path / "run"), answer_format="vision_reasoner",
        num_generations=2, prompts_per_step=1, per_device_batch_size=2, max_steps=2,
        learning_rate=5e-4, beta=0.0, max_completion_length=128,
        use_cpu=True, bf16=False, model_dtype="float32", gradient_checkpointing=False, save_steps=0, seed=0,
    )
    trainer = build_grpo_trainer(config, dataset, rollout_func=rollout, log=lambda message: None)
    processor, model, image = trainer.processing_class, trainer.model, dataset[0]["image"]
    model.eval()
    before = completion_logprob(model, processor, image, sample.text, good, "vision_reasoner")
    trainer.train()
    model.eval()
    after = completion_logprob(model, processor, image, sample.text, good, "vision_reasoner")
    assert after > before + 1.0, (before, after)

    texts = [str(prompt) for prompt in seen_prompts]
    assert texts and all(build_vision_reasoner_prompt(sample.text) in text for text in texts)
    names = reward_names(format="vision_reasoner")
    assert names == ["thinking_format", "object_format", "object_accuracy", "non_repeat"]
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2
    fields = {"thinking_format": "thinking_format", "object_format": "object_format",
              "object_accuracy": "accuracy", "non_repeat": "non_repeat"}
    for entry in logged:
        for name, field in fields.items():
            expected = (getattr(good_scores, field) + getattr(bad_scores, field)) / 2
            assert entry[f"rewards/{name}/mean"] == pytest.approx(expected)
        assert entry["reward"] == pytest.approx((good_scores.total + bad_scores.total) / 2)
