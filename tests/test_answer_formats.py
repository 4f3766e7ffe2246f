"""One switch, two answer formats: the registry, multi-object results through the pipeline (SAM2 itself as
the oracle: one SAM2ImagePredictor call per object, masks OR-ed, as VisionReasoner does), not_found, labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segzero_ros.backends import build_reasoner
from segzero_ros.config import ReasonerConfig
from segzero_ros.core.answer import parse_answer
from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, ANSWER_FORMATS, SEG_ZERO, VISION_REASONER, answer_format
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.core.prompt import build_prompt, build_vision_reasoner_prompt
from segzero_ros.core.result import ErrorKind, SegmentationResult, SegmentedObject, instance_labels
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.base import output_from_text
from segzero_ros.reasoning.scripted import ScriptedReasoner
from segzero_ros.segmentation.box import BoxSegmenter
from segzero_ros.visualize import MASK_COLOR, OBJECT_COLORS, overlay_image, overlay_objects

SEG_ZERO_ANSWER = '<think>a mug</think><answer>{"bbox": [84,84,420,630], "points_1": [200,300], "points_2": [250,400]}</answer>'
TWO_CUPS = ('<think>two red cups</think><answer>[{"bbox_2d": [84,84,420,630], "point_2d": [200,300]}, '
            '{"bbox_2d": [500,100,800,400], "point_2d": [650,250]}]</answer>')
NOTHING = "<think>there is no knife on the table</think><answer>[]</answer>"


def image(width: int = 1680, height: int = 1260) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def test_registry_names_both_formats_and_refuses_others() -> None:
    assert ANSWER_FORMAT_NAMES == (SEG_ZERO, VISION_REASONER) == ("seg_zero", "vision_reasoner")
    assert answer_format(SEG_ZERO).build_prompt("The mug.") == build_prompt("The mug.")
    assert answer_format(VISION_REASONER).build_prompt("The mug?") == build_vision_reasoner_prompt("The mug?")
    assert ANSWER_FORMATS[SEG_ZERO].can_answer_nothing and ANSWER_FORMATS[VISION_REASONER].can_answer_nothing
    with pytest.raises(ValueError, match="unknown answer format 'yolo'; known: seg_zero, vision_reasoner"):
        answer_format("yolo")
    with pytest.raises(ValueError, match="answer_format"):
        ReasonerConfig(answer_format="yolo")


def test_seg_zero_format_is_the_list_of_its_one_object() -> None:
    parsed = answer_format(SEG_ZERO).parse(SEG_ZERO_ANSWER, (1680, 1260))
    single = parse_answer(SEG_ZERO_ANSWER, (1680, 1260))
    assert parsed.objects == (ObjectPrompt(single.box, single.points),)
    assert parsed.reasoning == "a mug"


def test_output_from_text_reads_the_chosen_format() -> None:
    listed = output_from_text(TWO_CUPS, (1680, 1260), format=VISION_REASONER)
    assert listed.ok and listed.objects is not None and len(listed.objects) == 2
    # x × 2, y × 1.5, rounded half up: the second object's box (500,100,800,400) → (1000,150,1600,600).
    assert listed.objects[1] == ObjectPrompt(Box(1000, 150, 1600, 600), (Point(1300, 375),))
    empty = output_from_text(NOTHING, (1680, 1260), format=VISION_REASONER)
    assert empty.ok and empty.objects == () and empty.reasoning == "there is no knife on the table"
    # The same list read as a Seg-Zero answer has no "bbox" + two points: unparseable, not "nothing there".
    wrong = output_from_text(TWO_CUPS, (1680, 1260), format=SEG_ZERO)
    assert not wrong.ok and wrong.objects is None and "unparseable" in (wrong.error or "")
    garbage = output_from_text("<answer>none</answer>", (1680, 1260), format=VISION_REASONER)
    assert garbage.objects is None and garbage.error is not None


def test_scripted_backend_takes_the_format_from_its_config(tmp_path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"*": TWO_CUPS}), encoding="utf-8")
    reasoner = build_reasoner(ReasonerConfig(backend="scripted", model=str(outputs), answer_format=VISION_REASONER))
    output = reasoner.reason(image(), "all the red cups")
    assert output.objects is not None and len(output.objects) == 2


def test_pipeline_segments_every_object_and_unions_the_masks() -> None:
    pipeline = SegZeroPipeline(ScriptedReasoner({"*": TWO_CUPS}, format=VISION_REASONER), BoxSegmenter())
    result = pipeline.run(image(), "all the red cups")
    assert result.ok, result.error
    assert [found.box for found in result.objects] == [Box(168, 126, 840, 945), Box(1000, 150, 1600, 600)]
    assert [found.points for found in result.objects] == [(Point(400, 450),), (Point(1300, 375),)]
    assert result.box == Box(168, 126, 840, 945) and result.points == (Point(400, 450),)
    first, second = (found.mask for found in result.objects)
    assert first is not None and second is not None and result.mask is not None
    np.testing.assert_array_equal(result.mask, first | second)
    # The boxes do not overlap (840 < 1000), so the union is the plain sum of both box fills.
    assert result.mask.sum() == (840 - 168 + 1) * (945 - 126 + 1) + (1600 - 1000 + 1) * (600 - 150 + 1)
    labels = result.labels()
    assert labels is not None and labels.dtype == np.uint8
    assert labels[500, 500] == 1 and labels[300, 1200] == 2 and labels[1000, 100] == 0
    summary = result.to_dict()
    assert [entry["box"] for entry in summary["objects"]] == [[168, 126, 840, 945], [1000, 150, 1600, 600]]


def test_empty_list_is_not_found_with_the_reasoning_kept() -> None:
    pipeline = SegZeroPipeline(ScriptedReasoner({"*": NOTHING}, format=VISION_REASONER), BoxSegmenter())
    result = pipeline.run(image(), "the knife")
    assert not result.ok and result.error_kind is ErrorKind.NOT_FOUND
    assert result.error == "the model found no matching object"
    assert result.reasoning == "there is no knife on the table" and result.raw_output == NOTHING
    assert result.objects == () and result.mask is None and result.box is None


def test_seg_zero_results_are_one_object_with_two_points() -> None:
    pipeline = SegZeroPipeline(ScriptedReasoner({"*": SEG_ZERO_ANSWER}), BoxSegmenter())
    result = pipeline.run(image(), "the mug")
    assert len(result.objects) == 1 and result.objects[0].points == (Point(400, 450), Point(500, 600))
    assert result.objects[0].mask is not None
    np.testing.assert_array_equal(result.objects[0].mask, result.mask)


def test_a_failing_object_fails_the_command_with_every_prompt_kept() -> None:
    class SecondCallFails(BoxSegmenter):
        calls = 0

        def segment(self, prompt):
            self.calls += 1
            if self.calls == 2:
                raise MemoryError("simulated out of memory")
            return super().segment(prompt)

    result = SegZeroPipeline(ScriptedReasoner({"*": TWO_CUPS}, format=VISION_REASONER), SecondCallFails()).run(
        image(), "all the red cups")
    assert result.error_kind is ErrorKind.SEGMENTER_FAILED and "MemoryError" in (result.error or "")
    assert len(result.objects) == 2 and all(found.mask is None for found in result.objects)


def test_instance_labels_by_hand() -> None:
    a = np.zeros((3, 4), dtype=bool)
    a[0:2, 0:2] = True
    b = np.zeros((3, 4), dtype=bool)
    b[1:3, 1:4] = True
    expected = np.array([[1, 1, 0, 0],
                         [1, 1, 2, 2],   # (1, 1) is in both: the earlier object keeps it
                         [0, 2, 2, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(instance_labels([a, b, None], (3, 4)), expected)
    assert instance_labels([None] * 256, (2, 2)).dtype == np.uint16
    objects = (SegmentedObject(ObjectPrompt(Box(0, 0, 1, 1)), a), SegmentedObject(ObjectPrompt(Box(1, 1, 3, 2)), b))
    result = SegmentationResult("c", (4, 3), objects=objects, mask=a | b)
    np.testing.assert_array_equal(result.labels(), expected)
    assert SegmentationResult("c", (4, 3)).labels() is None


def test_overlay_gives_each_object_its_own_colour_and_one_object_the_classic_look() -> None:
    base = np.full((40, 60, 3), 100, dtype=np.uint8)
    a = np.zeros((40, 60), dtype=bool)
    a[5:10, 5:10] = True
    b = np.zeros((40, 60), dtype=bool)
    b[25:35, 40:55] = True
    single = overlay_objects(base, [SegmentedObject(ObjectPrompt(Box(5, 5, 9, 9), (Point(7, 7),)), a)])
    np.testing.assert_array_equal(single, overlay_image(base, a, Box(5, 5, 9, 9), [Point(7, 7)]))
    both = overlay_objects(base, [SegmentedObject(ObjectPrompt(Box(5, 5, 9, 9)), a),
                                  SegmentedObject(ObjectPrompt(Box(40, 25, 54, 34)), b)])
    tint = [round(100 * 0.5 + c * 0.5) for c in OBJECT_COLORS[1]]
    assert both[30, 47].tolist() == tint and OBJECT_COLORS[1] != MASK_COLOR
    assert both[7, 7].tolist() == [round(100 * 0.5 + c * 0.5) for c in MASK_COLOR]


@pytest.mark.slow
def test_multi_object_masks_match_sam2_image_predictor_per_object(tiny_sam2) -> None:
    """The tiny SAM2 through our sam2 backend vs SAM2ImagePredictor called once per object with its box and
    its one positive point, multimask, best score, masks OR-ed: the reference's VisionReasoner strategy."""
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter

    frame = np.random.default_rng(11).integers(0, 256, size=(517, 333, 3), dtype=np.uint8)
    segmenter = Sam2Segmenter.from_config(tiny_sam2.segmenter_config())
    try:
        result = SegZeroPipeline(ScriptedReasoner({"*": TWO_CUPS}, format=VISION_REASONER), segmenter).run(
            frame, "all the red cups")
    finally:
        segmenter.close()
    assert result.ok, result.error

    model = build_sam2(tiny_sam2.config, str(tiny_sam2.checkpoint), device="cpu",
                       hydra_overrides_extra=["++model.image_size=256"])
    predictor = SAM2ImagePredictor(model)
    predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]  # 256 px input: strides 4, 8, 16
    union = np.zeros(frame.shape[:2], dtype=bool)
    with torch.inference_mode():
        predictor.set_image(frame)
        for found in result.objects:
            masks, scores, _ = predictor.predict(point_coords=[found.points[0].as_list()], point_labels=[1],
                                                 box=found.box.as_list(), multimask_output=True)
            best = int(np.argmax(scores))
            assert found.mask is not None
            np.testing.assert_array_equal(found.mask, masks[best] > 0)
            assert found.score == pytest.approx(float(scores[best]), rel=1e-6)
            union |= masks[best] > 0
    assert result.mask is not None
    np.testing.assert_array_equal(result.mask, union)
