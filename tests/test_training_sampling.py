"""Dynamic sampling: prompt groups whose completions all score the same are taken out of the loss.

The end-to-end check: a step on prompts {A, B} where B's group is flat trains exactly like a step on {A} alone
(with the KL term on, so B's tokens would otherwise pull on the weights) — and not so with dynamic sampling off.
"""

import math

import pytest

from segzero_ros.core.solution import parse_solution
from segzero_ros.data.synthetic import generate_samples
from segzero_ros.training.config import GRPOTrainingConfig
from segzero_ros.training.datasets import segzero_dataset_from_masks

END_OF_TURN = "<|im_end|>"
NAN = math.nan


def test_flat_groups_marks_every_completion_of_a_group_without_spread():
    import torch

    from segzero_ros.training.trl_trainer import flat_groups

    rewards = torch.tensor([
        [1.0, 0.0], [1.0, 0.0],     # group 0: totals 1, 1 → flat
        [1.0, 1.0], [1.0, 0.0],     # group 1: totals 2, 1 → signal
        [0.0, 1.0], [1.0, 0.0],     # group 2: totals 1, 1 with weight 1 … but 0.5 / 1 weighted below
        [NAN, NAN], [1.0, 0.0],     # group 3: one unscored completion, the other alone → flat
        [NAN, NAN], [NAN, NAN],     # group 4: nothing scored → flat
    ])
    flat = flat_groups(rewards, torch.tensor([1.0, 1.0]), 2)
    assert flat.tolist() == [True, True, False, False, True, True, True, True, True, True]
    weighted = flat_groups(rewards, torch.tensor([1.0, 0.5]), 2)
    assert weighted.tolist()[4:6] == [False, False]  # 0.5 vs 1.0 once the second reward weighs half


def _scripted(by_command):
    """A TRL rollout_func answering each prompt's group with the completions its command maps to, in order."""

    def rollout(prompts, trainer):
        processor = trainer.processing_class
        tokenized = processor.apply_chat_template(conversation=prompts, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)
        texts = []
        for index, prompt in enumerate(prompts):
            group = next(completions for command, completions in by_command.items() if command in str(prompt))
            texts.append(group[index % len(group)])
        ids = [processor.tokenizer(text + END_OF_TURN, add_special_tokens=False)["input_ids"] for text in texts]
        return {"prompt_ids": tokenized["input_ids"], "completion_ids": ids, "logprobs": None}

    return rollout


def _exact_answer(solution: str, think: str) -> str:
    box, (first, second) = parse_solution(solution)
    return (f"<think>{think}</think><answer>"
            f'{{"bbox": [{box.x1},{box.y1},{box.x2},{box.y2}], "points_1": [{first.x},{first.y}], '
            f'"points_2": [{second.x},{second.y}]}}</answer>')


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6.*:FutureWarning")
def test_a_dropped_flat_group_trains_as_if_it_were_not_in_the_batch(tmp_path, tiny_qwen_dir, monkeypatch):
    import torch

    from segzero_ros.tiny.qwen_vl import TINY_COMPLETION, TINY_THINK
    from segzero_ros.training.trainer import build_grpo_trainer
    from segzero_ros.training.trl_trainer import DROPPED_METRIC

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL
    informative, flat = generate_samples(2, 11, 96)
    assert informative.text != flat.text
    rows = segzero_dataset_from_masks([informative, flat], cache_dir=tmp_path / "rows")
    good = _exact_answer(rows[0]["solution"], TINY_THINK)
    rollout = _scripted({informative.text: [good, TINY_COMPLETION], flat.text: [TINY_COMPLETION]})

    def trained(name, dataset, prompts, sampling):
        config = GRPOTrainingConfig(
            model=str(tiny_qwen_dir), dataset="in-memory", output_dir=str(tmp_path / name),
            num_generations=2, prompts_per_step=prompts, per_device_batch_size=2 * prompts, max_steps=2,
            learning_rate=1e-3, weight_decay=0.0, beta=0.5, max_completion_length=160, dynamic_sampling=sampling,
            use_cpu=True, bf16=False, model_dtype="float32", gradient_checkpointing=False, save_steps=0, seed=0,
        )
        trainer = build_grpo_trainer(config, dataset, rollout_func=rollout, log=lambda message: None)
        trainer.train()
        dropped = [entry.get(DROPPED_METRIC) for entry in trainer.state.log_history if "reward" in entry]
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, dropped

    alone, _ = trained("alone", rows.select([0]), 1, "off")
    dropped, shares = trained("drop", rows, 2, "drop")
    kept, _ = trained("keep", rows, 2, "off")

    def largest_difference(first, second):
        return max(float((first[name] - second[name]).abs().max()) for name in first)

    assert shares == [0.5, 0.5]  # one of the two groups, at both steps
    assert largest_difference(dropped, alone) <= 1e-6
    assert largest_difference(kept, alone) > 1e-5  # the flat group's KL tokens do move the weights when kept
    assert any(not torch.equal(alone[name], value) for name, value in kept.items())
