"""Reasoner model families (Qwen2.5-VL, Qwen3-VL): detection, frames, coordinates, templates and the tiny
Qwen3-VL through the real code path, against transformers' own classes and TRL's reference templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segzero_ros.config import ReasonerConfig
from segzero_ros.core.families import (
    FAMILIES,
    QWEN2_5_VL,
    QWEN3_VL,
    RELATIVE_1000,
    AnswerFrame,
    answer_frame,
    family_of_model_type,
)
from segzero_ros.core.formats import SEG_ZERO, VISION_REASONER, answer_format
from segzero_ros.core.geometry import Box, Point
from segzero_ros.reasoning.base import output_from_text, resolve_answer_frame

RELATIVE = AnswerFrame("qwen3_vl", 832, RELATIVE_1000)


@pytest.mark.parametrize(("model_type", "name"), [("qwen2_vl", "qwen2_5_vl"), ("qwen2_5_vl", "qwen2_5_vl"),
                                                  ("qwen3_vl", "qwen3_vl"), ("qwen3_vl_moe", "qwen3_vl_moe")])
def test_family_from_the_checkpoints_model_type(model_type, name):
    assert family_of_model_type(model_type).name == name
    with pytest.raises(ValueError, match=r"set reasoner\.family"):
        family_of_model_type("llava")


def test_each_family_has_its_convention_grid_and_frame():
    assert (QWEN2_5_VL.coordinates, QWEN2_5_VL.grid, QWEN2_5_VL.frame_size) == ("absolute", 28, 840)
    assert (QWEN3_VL.coordinates, QWEN3_VL.grid, QWEN3_VL.frame_size) == ("relative_1000", 32, 832)
    assert QWEN2_5_VL.visual_tokens() == 900 and QWEN3_VL.visual_tokens() == 676
    assert QWEN3_VL.visual_tokens(840) == 676  # the processor rounds 840 to 832 on its own
    assert QWEN3_VL.rounded(840) == 832 and QWEN2_5_VL.rounded(1000) == 1008
    assert QWEN2_5_VL.system_prompt == "You are a helpful assistant." and QWEN3_VL.system_prompt is None


def test_answer_frames_resolve_auto_from_the_family_and_keep_explicit_values():
    assert answer_frame(QWEN3_VL) == RELATIVE and RELATIVE.extent == 1000
    assert answer_frame(QWEN2_5_VL).extent == 840
    assert answer_frame(QWEN3_VL, "absolute", 640).extent == 640
    assert resolve_answer_frame(ReasonerConfig(), "qwen3_vl") == RELATIVE
    assert resolve_answer_frame(ReasonerConfig()).family == "qwen2_5_vl"  # a server: Seg-Zero's unless told
    told = resolve_answer_frame(ReasonerConfig(family="qwen3_vl", frame_size=1024), "qwen2_5_vl")
    assert told == AnswerFrame("qwen3_vl", 1024, RELATIVE_1000)
    with pytest.raises(ValueError, match=r"reasoner\.coordinates must be one of"):
        ReasonerConfig(coordinates="normalized")


def test_relative_coordinates_by_hand_in_both_answer_formats():
    seg_zero = ('<think>t</think><answer>{"bbox": [100, 200, 500, 600], "points_1": [250, 400], '
                '"points_2": [300, 450]}</answer>')
    objects = output_from_text(seg_zero, (1280, 720), frame=RELATIVE).objects
    assert objects is not None and objects[0].box == Box(128, 144, 640, 432)
    assert objects[0].points == (Point(320, 288), Point(384, 324))
    listed = '<think>t</think><answer>[{"bbox_2d": [100, 200, 500, 600], "point_2d": [250, 400]}]</answer>'
    objects = output_from_text(listed, (1280, 720), format=VISION_REASONER, frame=RELATIVE).objects
    assert objects is not None and objects[0].box == Box(128, 144, 640, 432) and objects[0].points == (Point(320, 288),)
    # The same numbers in Seg-Zero's absolute 840 frame are another box: the convention matters.
    absolute = output_from_text(seg_zero, (1280, 720)).objects
    assert absolute is not None and absolute[0].box == Box(152, 171, 762, 514)


@given(st.integers(-200, 1300), st.integers(-200, 1300), st.integers(-200, 1300), st.integers(-200, 1300),
       st.integers(1, 4000), st.integers(1, 3000), st.sampled_from([SEG_ZERO, VISION_REASONER]))
def test_any_relative_answer_maps_inside_the_image(x1, y1, x2, y2, width, height, format):
    text = (f'<answer>{{"bbox": [{x1},{y1},{x2},{y2}], "points_1": [{x1},{y2}], "points_2": [{x2},{y1}]}}</answer>'
            if format == SEG_ZERO else f'<answer>[{{"bbox_2d": [{x1},{y1},{x2},{y2}], "point_2d": [{x2},{y2}]}}]</answer>')
    found = answer_format(format).parse(text, (width, height), 1000).objects[0]
    assert 0 <= found.box.x1 <= found.box.x2 < width and 0 <= found.box.y1 <= found.box.y2 < height
    assert all(0 <= p.x < width and 0 <= p.y < height for p in found.points)


@pytest.mark.parametrize("text", ["<think>nothing like it here</think><answer>{}</answer>", "<answer> [] </answer>",
                                  "<answer>```json\nnull\n```</answer>"])
def test_a_seg_zero_answer_can_say_nothing_matches(text):
    output = output_from_text(text, (640, 480))
    assert output.objects == () and output.error is None  # the pipeline answers not_found
    assert output_from_text("<answer>{nope}</answer>", (640, 480)).objects is None  # garbage stays an error


def _reference_template(name: str) -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("format", [SEG_ZERO, VISION_REASONER])
def test_the_prompt_renders_byte_for_byte_as_the_familys_reference_template(family, format, tiny_qwen_dir,
                                                                            tiny_qwen3_dir):
    """What the tiny model's processor renders for our chat turn equals TRL's copy of the family's released chat
    template rendering it (Qwen2.5-VL with its default system turn, Qwen3-VL without)."""
    import jinja2
    from transformers import AutoProcessor

    from segzero_ros.reasoning.chat import render_chat_text, user_turn

    folder = tiny_qwen_dir if family == "qwen2_5_vl" else tiny_qwen3_dir
    processor = AutoProcessor.from_pretrained(str(folder))
    ours = render_chat_text(processor, "The mug, left of the laptop.", format)
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(
        _reference_template(FAMILIES[family].chat_template))
    reference = template.render(messages=user_turn("The mug, left of the laptop.", format),
                                add_generation_prompt=True)
    assert ours == reference
    assert ours.startswith("<|im_start|>system\nYou are a helpful assistant.") == (family == "qwen2_5_vl")


@pytest.mark.slow
def test_the_tiny_qwen3_vl_is_the_real_architecture_and_answers_in_relative_coordinates(tiny_qwen3_dir):
    import transformers

    from segzero_ros.backends import build_reasoner
    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.tiny.qwen_vl import QWEN3

    processor = transformers.AutoProcessor.from_pretrained(str(tiny_qwen3_dir))
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert processor.image_processor.patch_size == 16 and list(processor.image_processor.image_mean) == [0.5] * 3
    reasoner = build_reasoner(TransformersReasonerConfig(model=str(tiny_qwen3_dir), device="cpu"))
    try:
        assert type(reasoner._model).__name__ == "Qwen3VLForConditionalGeneration"  # type: ignore[attr-defined]
        assert reasoner.answer_frame == RELATIVE  # type: ignore[attr-defined]
        output = reasoner.reason(np.zeros((720, 1280, 3), np.uint8), "the cup")
    finally:
        reasoner.close()
    assert output.raw_output == QWEN3.completion
    x1, y1, x2, y2 = QWEN3.box
    assert output.objects is not None and output.objects[0].box == Box(
        round(x1 * 1.28), round(y1 * 0.72), round(x2 * 1.28), round(y2 * 0.72))


@pytest.mark.parametrize("format", [SEG_ZERO, VISION_REASONER])
def test_a_right_relative_answer_earns_what_the_same_box_earns_in_absolute_pixels(format):
    """GT and answer in Seg-Zero's 840-frame pixels vs the same objects in Qwen3-VL's 0..1000 coordinates (both
    exact: multiples of 21 ↔ 25): every reward component is equal, and a wrong answer stays wrong in both."""
    from segzero_ros.core.rewards import score_completion
    from segzero_ros.core.solution import format_solution, object_solution, rescale_solution
    from segzero_ros.core.vision_reasoner_rewards import score_objects

    def answer(values, extent):
        x1, y1, x2, y2, px, py, qx, qy = (v * extent // 840 for v in values)
        if format == SEG_ZERO:
            return (f'<think>the mug</think><answer>{{"bbox": [{x1},{y1},{x2},{y2}], "points_1": [{px},{py}], '
                    f'"points_2": [{qx},{qy}]}}</answer>')
        return f'<think>the mug</think><answer>[{{"bbox_2d": [{x1},{y1},{x2},{y2}], "point_2d": [{px},{py}]}}]</answer>'

    truth = (210, 105, 630, 420, 315, 210, 420, 315)
    solution = (format_solution(Box(*truth[:4]), (Point(*truth[4:6]), Point(*truth[6:]))) if format == SEG_ZERO
                else object_solution([(truth[:4], truth[4:6])]))
    relative = rescale_solution(solution, 840, 1000)
    assert "250" in relative and "500" in relative  # 210 → 250, 420 → 500

    def score(completion, gt, extent):
        scored = score_completion(completion, gt, extent=extent) if format == SEG_ZERO else \
            score_objects(completion, gt, extent)
        return scored.to_dict()

    close = (231, 126, 651, 441, 336, 231, 441, 336)   # 21 px off: within IoU, outside L1 (10 px)
    near = (210, 105, 630, 420, 315, 210, 420, 315)
    far = (0, 0, 105, 105, 42, 42, 63, 63)
    for values in (near, close, far):
        assert score(answer(values, 840), solution, 840) == score(answer(values, 1000), relative, 1000)
    assert score(answer(near, 1000), relative, 1000)["total"] > score(answer(far, 1000), relative, 1000)["total"]
