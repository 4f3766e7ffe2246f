"""reasoner.backend sam3_concept: SAM3's concept detector (the tiny SAM3 checkpoint built offline, which holds
Sam3Model and the tracker as facebook/sam3 does) answering with every instance of the command as an object,
against Sam3Model + post_process_instance_segmentation called directly; with the sam3 segmenter and tracker on
the same checkpoint, one backbone and one encoding per image, results unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from segzero_ros.backends import build_pipeline, build_reasoner
from segzero_ros.config import PipelineConfig, Sam3ConceptReasonerConfig
from segzero_ros.core.geometry import Box
from segzero_ros.core.result import ErrorKind
from segzero_ros.tiny import tiny_segmenter_config
from tests.test_tracking import moving_disc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def concept_model(tiny_cache_root):
    from segzero_ros.tiny.sam_transformers import ensure_tiny_sam

    return ensure_tiny_sam("sam3_concept", tiny_cache_root)


def test_objects_are_sam3s_instances_above_the_threshold(concept_model):
    import torch
    from transformers import Sam3Model, Sam3Processor

    from segzero_ros.reasoning.sam3_concept import deepest_point

    image = moving_disc(1)[0]
    reasoner = build_reasoner(Sam3ConceptReasonerConfig(model=str(concept_model), device="cpu", score_threshold=0.25))
    model, processor = Sam3Model.from_pretrained(str(concept_model)).eval(), Sam3Processor.from_pretrained(
        str(concept_model))
    try:
        output = reasoner.reason(image, "the red disc")
    finally:
        reasoner.close()
    inputs = processor(images=image, text="the red disc", return_tensors="pt")
    with torch.inference_mode():
        raw = model(**{k: v for k, v in inputs.items() if k != "original_sizes"})
    expected = processor.post_process_instance_segmentation(raw, threshold=0.25, mask_threshold=0.5,
                                                            target_sizes=[list(image.shape[:2])])[0]
    order = torch.argsort(expected["scores"], descending=True)
    assert output.objects is not None and len(output.objects) == len(order) > 0
    for found, index in zip(output.objects, order.tolist(), strict=True):
        box = Box(*(round(v) for v in expected["boxes"][index].tolist()))
        assert found.box == Box(max(box.x1, 0), max(box.y1, 0), min(box.x2, 159), min(box.y2, 119))
        assert found.points == (deepest_point(expected["masks"][index].numpy(), found.box),)
    assert output.raw_output.startswith("<think>SAM3 concept 'the red disc'")


def test_deepest_point_is_the_centre_of_the_largest_inscribed_circle():
    from segzero_ros.reasoning.sam3_concept import deepest_point

    mask = np.zeros((20, 30), dtype=bool)
    mask[2:11, 4:21] = True     # 9 rows × 17 columns: the centre row 6, the centre columns 8..16 tie
    point = deepest_point(mask, Box(0, 0, 29, 19))
    assert point.y == 6 and 8 <= point.x <= 16
    assert deepest_point(mask, Box(25, 15, 29, 19)).as_list() == [27, 17]  # no mask pixel in the box: its centre


def test_nothing_above_the_threshold_is_not_found_and_instances_are_segmented(concept_model, tiny_cache_root):
    image = moving_disc(1)[0]
    strict = build_pipeline(PipelineConfig(
        reasoner=Sam3ConceptReasonerConfig(model=str(concept_model), device="cpu", score_threshold=1.0),
        segmenter=tiny_segmenter_config("sam3", tiny_cache_root)))
    loose = build_pipeline(PipelineConfig(
        reasoner=Sam3ConceptReasonerConfig(model=str(concept_model), device="cpu", score_threshold=0.25,
                                           max_objects=2),
        segmenter=tiny_segmenter_config("sam3", tiny_cache_root)))
    try:
        nothing, found = strict.run(image, "the red disc"), loose.run(image, "the red disc")
    finally:
        strict.close()
        loose.close()
    assert nothing.error_kind is ErrorKind.NOT_FOUND and not nothing.ok
    assert found.ok and len(found.objects) == 2 and found.segmenter_name.startswith("sam3:")
    assert all(obj.mask is not None and obj.mask.shape == (120, 160) for obj in found.objects)


def test_with_the_sam3_segmenter_one_backbone_encodes_each_image_once(concept_model, tiny_cache_root):
    """Reasoner, segmenter and tracker of one checkpoint hold one backbone module; a command runs it once (the
    segmenter reuses the reasoner's encoding) and the masks equal Sam3TrackerModel loaded on its own."""
    import torch
    from transformers import Sam3TrackerModel

    from segzero_ros.backends import build_tracker
    from segzero_ros.segmentation.transformers_sam import load_sam, prompt_lists
    from segzero_ros.shared_backbone import cache_of

    image = moving_disc(1)[0]
    segmenter_config = tiny_segmenter_config("sam3", tiny_cache_root)
    pipeline = build_pipeline(PipelineConfig(
        reasoner=Sam3ConceptReasonerConfig(model=str(concept_model), device="cpu", score_threshold=0.25,
                                           max_objects=2),
        segmenter=segmenter_config))
    tracker = build_tracker(segmenter_config)
    try:
        reasoner_model = pipeline.reasoner._model  # type: ignore[attr-defined]
        segmenter_model = pipeline.segmenter._loaded.model  # type: ignore[attr-defined]
        tracker_model = tracker._loaded.model  # type: ignore[attr-defined]
        backbone = reasoner_model.vision_encoder.backbone
        assert segmenter_model.vision_encoder.backbone is backbone is tracker_model.vision_encoder.backbone
        assert segmenter_model.vision_encoder.neck is not reasoner_model.vision_encoder.neck  # necks differ
        cache = cache_of(reasoner_model)
        assert cache is not None
        computed, reused = cache.computed, cache.reused
        result = pipeline.run(image, "the red disc")
        assert (cache.computed - computed, cache.reused - reused) == (1, 1)
        tracker.start(image, result.objects[0].prompt)
        assert (cache.computed - computed, cache.reused - reused) == (1, 2)  # the tracker's first frame too
    finally:
        pipeline.close()
        tracker.close()

    alone = Sam3TrackerModel.from_pretrained(str(concept_model)).eval()
    processor = load_sam(segmenter_config).processor
    assert len(result.objects) == 2
    for found in result.objects:
        inputs = processor(images=image, return_tensors="pt", **prompt_lists(found.prompt))
        with torch.inference_mode():
            outputs = alone(**{k: v for k, v in inputs.items() if k != "original_sizes"}, multimask_output=True)
        masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])[0][0].numpy()
        scores = outputs.iou_scores[0, 0].numpy()
        best = int(np.argmax(scores))
        assert found.score == pytest.approx(float(scores[best]), abs=1e-6)
        assert np.array_equal(found.mask, masks[best])
