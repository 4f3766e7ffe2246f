"""The TRL reward adapters: chat-message completions in, one float per completion out, one function per reward."""

import pytest

from segzero_ros.core.rewards import seg_zero_reward
from segzero_ros.training.rewards_trl import (
    STRICT_REWARD_NAMES,
    completion_text,
    reward_functions,
    reward_names,
)

SOLUTION = "<box>(100,100),(200,200)</box><points>(130,150),(170,150)</points>"
PERFECT = '<think>the cup</think><answer>{"bbox": [100,100,200,200], "points_1": [130,150], "points_2": [170,150]}</answer>'
# Box moved 30 px right: inclusive IoU = 71·101 / (2·101·101 − 71·101) = 71/131 ≈ 0.54 > 0.5, mean L1 = 15 ≥ 10;
# both points still inside the predicted box (x 130..230, inclusive) and exactly on the GT points.
SHIFTED = '<think>hmm</think> <answer>{"bbox": [130,100,230,200], "points_1": [130,150], "points_2": [170,150]}</answer>'
NO_THINK = '{"bbox": [100,100,200,200], "points_1": [130,150], "points_2": [170,150]}'
GARBAGE = "I cannot see a cup."


def chat(text):
    return [{"role": "assistant", "content": text}]


def scores(completions, solutions):
    return {
        function.__name__: function(completions=completions, solution=solutions, prompts=["ignored"] * len(completions))
        for function in reward_functions()
    }


def test_each_reward_scores_chat_completions_as_the_core_rewards_do():
    completions = [chat(PERFECT), chat(SHIFTED), chat(NO_THINK), chat(GARBAGE)]
    result = scores(completions, [SOLUTION] * 4)
    assert list(result) == list(STRICT_REWARD_NAMES)
    assert result["thinking_format"] == [1.0, 1.0, 0.0, 0.0]
    assert result["segmentation_format"] == [1.0, 1.0, 1.0, 0.0]
    assert result["bbox_iou"] == [1.0, 1.0, 1.0, 0.0]
    assert result["bbox_l1"] == [1.0, 0.0, 1.0, 0.0]
    assert result["point"] == [1.0, 1.0, 1.0, 0.0]
    # TRL sums the functions (weights 1): the reference's total.
    for index, text in enumerate([PERFECT, SHIFTED, NO_THINK, GARBAGE]):
        assert sum(values[index] for values in result.values()) == seg_zero_reward(text, SOLUTION)


def test_each_completion_is_scored_against_its_own_solution():
    other = "<box>(500,500),(600,600)</box><points>(520,520),(580,580)</points>"
    result = scores([chat(PERFECT), chat(PERFECT)], [SOLUTION, other])
    assert result["bbox_iou"] == [1.0, 0.0]
    assert result["point"] == [1.0, 0.0]
    assert result["thinking_format"] == [1.0, 1.0]


def test_plain_strings_and_typed_content_parts_are_read_too():
    parts = [{"role": "assistant", "content": [{"type": "text", "text": PERFECT[:40]}, {"type": "text", "text": PERFECT[40:]}]}]
    assert completion_text(PERFECT) == PERFECT
    assert completion_text(parts) == PERFECT
    assert completion_text([{"role": "user", "content": "not mine"}, *chat(PERFECT)]) == PERFECT
    assert completion_text(None) == ""
    result = scores([PERFECT, parts], [SOLUTION, SOLUTION])
    assert all(values == [1.0, 1.0] for values in result.values())


def test_soft_variants_replace_only_the_box_rewards():
    assert reward_names(soft=True) == ["thinking_format", "segmentation_format", "bbox_iou_soft", "bbox_l1_soft", "point"]
    soft = {f.__name__: f(completions=[chat(SHIFTED)], solution=[SOLUTION]) for f in reward_functions(soft=True)}
    assert soft["bbox_iou_soft"] == [pytest.approx(71 / 131)]
    assert soft["bbox_l1_soft"] == [pytest.approx(1 - 15 / 840)]


def test_accuracy_rewards_need_the_solution_column():
    accuracy = [f for f in reward_functions() if f.__name__ in ("bbox_iou", "bbox_l1", "point")]
    for function in accuracy:
        with pytest.raises(ValueError, match="solution"):
            function(completions=[chat(PERFECT)])
        with pytest.raises(ValueError, match="1 completions but 2 solutions"):
            function(completions=[chat(PERFECT)], solution=[SOLUTION, SOLUTION])


def test_vision_reasoner_set_sums_to_the_reference_total():
    from segzero_ros.core.vision_reasoner_rewards import vision_reasoner_reward

    solution = '[{"bbox_2d": [100, 100, 199, 199], "point_2d": [150, 150]}]'
    perfect = f"<think>one cup</think><answer>{solution}</answer>"
    completions = [chat(perfect), chat("no idea"), perfect]
    functions = reward_functions(format="vision_reasoner")
    assert reward_names(format="vision_reasoner") == ["thinking_format", "object_format", "object_accuracy",
                                                      "non_repeat"]
    values = [function(completions=completions, solution=[solution] * 3) for function in functions]
    totals = [sum(column) for column in zip(*values, strict=True)]
    assert totals == [vision_reasoner_reward(perfect, solution), vision_reasoner_reward("no idea", solution),
                      7.0] == [7.0, 1.0, 7.0]
    with pytest.raises(ValueError, match="solution"):
        functions[2](completions=completions)
    with pytest.raises(ValueError, match="soft rewards exist for the seg_zero format only"):
        reward_functions(soft=True, format="vision_reasoner")
    with pytest.raises(ValueError, match="unknown answer format"):
        reward_functions(format="yolo")
