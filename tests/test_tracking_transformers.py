"""SAM3's tracker and EdgeTAM through transformers (tiny random models built offline), each against its own
transformers model as the oracle: the segmenter equals the image model called directly on the same image and
prompt; the streaming tracker (explicit frame indices, pruned session) equals the video model run with an
UNPRUNED session frame for frame; its memory stays flat on a long stream."""

from __future__ import annotations

import numpy as np
import pytest

from segzero_ros.backends import build_segmenter, build_tracker
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.tiny import tiny_segmenter_config
from tests.test_tracking import BOX, POINTS, moving_disc

pytestmark = pytest.mark.slow

BACKENDS = ["sam3", "edgetam"]


@pytest.fixture(scope="module", params=BACKENDS)
def config(request, tiny_cache_root):
    return tiny_segmenter_config(request.param, tiny_cache_root)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_the_segmenter_equals_its_transformers_model_called_directly(config):
    import torch

    from segzero_ros.segmentation.transformers_sam import load_sam, prompt_lists

    image = moving_disc(1)[0]
    segmenter = build_segmenter(config)
    oracle = load_sam(config)
    try:
        segmenter.set_image(image)
        for prompt in (ObjectPrompt(BOX, POINTS), ObjectPrompt(BOX), ObjectPrompt(Box(90, 10, 150, 70),
                                                                                  (Point(120, 40), Point(130, 50)))):
            got = segmenter.segment(prompt)
            inputs = oracle.processor(images=image, return_tensors="pt", **prompt_lists(prompt))
            with torch.inference_mode():
                outputs = oracle.model(**{k: v for k, v in inputs.items() if k != "original_sizes"},
                                       multimask_output=True)
            masks = oracle.processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])[0][0].numpy()
            scores = outputs.iou_scores[0, 0].numpy()
            best = int(np.argmax(scores))
            assert got.score == pytest.approx(float(scores[best]), abs=1e-6)
            assert _iou(got.mask, masks[best]) >= 0.999
    finally:
        segmenter.close()


def test_the_tracker_equals_the_unpruned_session_frame_for_frame(config):
    """24 frames, two objects: the tracker prunes its session (window 16, past pixels gone) and numbers frames
    itself; the oracle is the same video model with a session that keeps everything."""
    import torch

    from segzero_ros.segmentation.transformers_sam import load_sam, prompt_lists

    frames = moving_disc(24)
    prompts = [ObjectPrompt(BOX, POINTS), ObjectPrompt(Box(100, 20, 150, 70))]
    tracker = build_tracker(config)
    oracle = load_sam(config, video=True)
    session = oracle.processor.init_video_session(inference_device="cpu", dtype=torch.float32)
    for object_id, prompt in enumerate(prompts, start=1):
        oracle.processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=object_id,
                                                         original_size=frames[0].shape[:2], **prompt_lists(prompt))
    session.obj_with_new_inputs = [1, 2]
    worst, present = 0.0, 0
    try:
        for index, frame in enumerate(frames):
            ours = tracker.start_objects(frame, prompts) if index == 0 else tracker.track_objects(frame)
            pixels = oracle.processor(images=frame, return_tensors="pt")["pixel_values"][0]
            with torch.inference_mode():
                out = oracle.model(inference_session=session, frame=pixels, frame_idx=index)
            masks = oracle.processor.post_process_masks([out.pred_masks], original_sizes=[list(frame.shape[:2])],
                                                        binarize=False)[0]
            for number in range(len(prompts)):
                difference = (tracker.low_res_logits(number) - out.pred_masks[number]).abs().max()
                worst = max(worst, float(difference))
            for number, mine in enumerate(ours):
                np.testing.assert_array_equal(mine.mask, (masks[number, 0] > 0).numpy())
                assert mine.frame_index == index
                present += mine.present
        assert len(session.processed_frames) == len(frames)  # the oracle kept every frame; we did not
        assert tracker.stored_frames == 2 * (1 + 16)
    finally:
        tracker.close()
    assert worst <= 1e-4, worst
    print(f"{config.backend}: max |Δ low-res logits| over {len(frames)} frames = {worst:.2e}; present {present}")


@pytest.mark.parametrize(("backend", "count"), [("sam3", 80), ("edgetam", 60)])  # window full by 16
def test_memory_stays_flat_on_a_long_stream(backend, count, tiny_cache_root):
    tracker = build_tracker(tiny_segmenter_config(backend, tiny_cache_root))
    frames = moving_disc(8)
    held, sizes = [], []
    try:
        tracker.start(frames[0], ObjectPrompt(BOX, POINTS))
        for index in range(1, count):
            tracker.track(frames[index % len(frames)])
            held.append(tracker.stored_frames)
            sizes.append(tracker.stored_bytes)
    finally:
        tracker.close()
    assert held[15:] == [17] * (count - 16)  # the prompted frame + 16 past frames, from frame 16 on
    assert len(set(sizes[16:])) == 1 and sizes[16] > 0


def test_fewer_memory_frames_and_freezing_absent_frames_are_options(tiny_cache_root):
    tracker = build_tracker(tiny_segmenter_config("sam3", tiny_cache_root), memory_frames=3, freeze_when_absent=False)
    frames = moving_disc(8)
    try:
        tracker.start(frames[0], ObjectPrompt(BOX, POINTS))
        for frame in frames[1:]:
            tracker.track(frame)
        assert tracker.stored_frames == 1 + 3
        tracker.reset()
        assert tracker.stored_frames == 0
        with pytest.raises(RuntimeError, match="before track"):
            tracker.track(frames[0])
    finally:
        tracker.close()
