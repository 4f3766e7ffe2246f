"""SAM2 streaming tracking (torch backend) on the tiny hiera-t: exact against sam2's own SAM2VideoPredictor
run offline on the same frames and prompt, memory bounded over a long stream, and the public API's rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.errors import BackendUnavailableError
from segzero_ros.tracking import TrackedMask, Tracker, build_tracker

pytestmark = pytest.mark.slow

WIDTH, HEIGHT, FRAMES = 160, 120, 24


def moving_disc(count: int = FRAMES, seed: int = 3) -> list[np.ndarray]:
    """A red disc crossing a noisy background, a few pixels per frame."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for index in range(count):
        frame = background.copy()
        cx, cy = 40 + 3 * index, 60 + (index % 5)
        frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= 18 ** 2] = (220, 40, 40)
        frames.append(frame)
    return frames


BOX, POINTS = Box(22, 42, 58, 78), (Point(40, 60),)


def as_jpeg_round_trip(frames: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write the frames as the JPEG folder SAM2VideoPredictor reads; return the decoded pixels it will see."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for index, frame in enumerate(frames):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(frame).save(path, quality=95)
        decoded.append(np.array(Image.open(path).convert("RGB")))
    return decoded


@pytest.fixture(scope="module")
def tracker(tiny_sam2):
    built = build_tracker(tiny_sam2.segmenter_config())
    yield built
    built.close()


def test_streaming_tracker_equals_sams_own_video_predictor(tracker, tiny_sam2, tmp_path):
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    frames = as_jpeg_round_trip(moving_disc(), tmp_path / "video")
    predictor = build_sam2_video_predictor(tiny_sam2.config, str(tiny_sam2.checkpoint), device="cpu",
                                           hydra_overrides_extra=["++model.image_size=256"])
    expected_logits, expected_masks = {}, {}
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(tmp_path / "video"))
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[40, 60]], labels=[1],
                                        box=[22, 42, 58, 78])
        for index, _, video_masks in predictor.propagate_in_video(state):
            outputs = state["output_dict_per_obj"][0]
            stored = outputs["cond_frame_outputs"].get(index) or outputs["non_cond_frame_outputs"][index]
            expected_logits[index] = stored["pred_masks"].clone()
            expected_masks[index] = (video_masks[0, 0] > 0.0).numpy()
    assert sorted(expected_logits) == list(range(FRAMES))

    results = [tracker.start(frames[0], ObjectPrompt(BOX, POINTS))]
    worst = float((tracker.low_res_logits() - expected_logits[0]).abs().max())
    for index in range(1, FRAMES):
        results.append(tracker.track(frames[index]))
        worst = max(worst, float((tracker.low_res_logits() - expected_logits[index]).abs().max()))
    assert worst <= 1e-4, f"max |Δ logits| over {FRAMES} frames: {worst}"
    for index, result in enumerate(results):
        assert isinstance(result, TrackedMask) and result.frame_index == index
        assert result.mask.shape == (HEIGHT, WIDTH) and result.mask.dtype == np.bool_
        np.testing.assert_array_equal(result.mask, expected_masks[index])
        assert 0.0 <= result.score <= 1.0 and result.present == (result.score > 0.5)


def test_memory_stays_bounded_over_a_long_stream(tracker):
    """60 frames: the window fills by frame 16, then for 40 more frames neither the frames held nor the bytes of
    their tensors grow (sam2's own video predictor keeps every frame: ~0.77 MB more per frame at 1024 px).
    benchmarks/soak_node.py --tracking runs the same for minutes."""
    frames = moving_disc(12)
    tracker.start(frames[0], ObjectPrompt(BOX, POINTS))
    stored, sizes = [], []
    for index in range(1, 60):
        tracker.track(frames[index % len(frames)])
        stored.append(tracker.stored_frames)
        sizes.append(tracker.stored_bytes)
    assert max(stored) == stored[-1] <= 1 + 16  # the prompt frame + a fixed window, reached early
    assert stored.index(max(stored)) < 20
    assert sizes[-1] == max(sizes) == sizes[20] > sizes[0]


def test_api_rules(tracker, tiny_sam2):
    assert isinstance(tracker, Tracker)
    frames = moving_disc(3)
    tracker.reset()
    with pytest.raises(RuntimeError, match="start"):
        tracker.track(frames[0])
    tracker.start(frames[0], ObjectPrompt(BOX, POINTS))
    with pytest.raises(ValueError, match="reset and start again"):
        tracker.track(np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        tracker.track(frames[1].astype(np.float32))
    tracker.reset()
    small = tracker.start(np.zeros((60, 80, 3), np.uint8), ObjectPrompt(Box(10, 10, 30, 30)))  # a new size after reset
    assert small.mask.shape == (60, 80)
    with pytest.raises(BackendUnavailableError, match="segmenter backend 'box' has no tracker"):
        build_tracker(SegmenterConfig(backend="box"))


def test_follower_tracks_the_newest_frame_drops_the_rest_and_stops(tiny_sam2):
    import threading
    import time

    from segzero_ros.testing.collect import wait_until
    from segzero_ros.tracking.follower import CameraFrame, TrackFollower, TrackState

    frames = moving_disc(12)
    updates, lock = [], threading.Lock()

    def publish(update):
        with lock:
            updates.append(update)

    def seen(number):
        with lock:
            return [u.frame.header for u in updates].count(number) > 0

    def frame(number, pixels=None):  # the header is the frame's number; the message its pixels
        return CameraFrame(number, pixels)

    # The follower hands the caller's frame back with its mask.
    follower = TrackFollower(lambda: build_tracker(tiny_sam2.segmenter_config()), lambda frame: frame.message,
                             publish, max_rate_hz=100.0, lost_after_s=5.0)
    try:
        follower.offer(frame(1, frames[1]))  # nothing to follow yet: ignored
        follower.follow("7", frames[0], [ObjectPrompt(BOX, POINTS)], frame=frame(0))
        wait_until(lambda: seen(0), timeout=60, what="the target's first frame")
        assert updates[0].command_id == "7" and updates[0].frame_index == 0
        for index in range(1, 11):  # faster than the tracker: most of these are dropped, never queued
            follower.offer(frame(index, frames[index]))
        wait_until(lambda: any(u.frame.header == 10 for u in updates[1:]), timeout=60, what="the newest frame's mask")
        status = follower.status()
        tracked_frames = [u.frame.header for u in updates[1:]]
        assert tracked_frames == sorted(tracked_frames) and tracked_frames[-1] == 10  # the newest always wins
        assert status.frames_dropped >= 5 and status.frames_dropped + len(tracked_frames) == 10
        assert status.state is TrackState.TRACKING and status.command_id == "7"
        assert all(u.present and u.box is not None for u in updates)
        # A frame of another size ends the track with a clear error; stop() makes it idle.
        follower.offer(frame(11, np.zeros((60, 80, 3), np.uint8)))
        wait_until(lambda: follower.status().state is TrackState.FAILED, timeout=60, what="the failed state")
        assert "reset and start again" in follower.status().error
        follower.follow("8", frames[0], [ObjectPrompt(BOX, POINTS)], frame=frame(100))
        wait_until(lambda: seen(100), timeout=60, what="the new target")
        assert follower.stop()
        count = len(updates)
        follower.offer(frame(12, frames[3]))
        time.sleep(0.8)
        assert len(updates) == count and follower.status().state is TrackState.IDLE
    finally:
        follower.close()


def test_several_objects_are_each_tracked_exactly_as_alone(tracker):
    """One encoding per frame, a memory per object (as sam2's video predictor keeps one per object id)."""
    frames = moving_disc(5)
    second = ObjectPrompt(Box(100, 20, 150, 70), (Point(125, 45),))
    together = [tracker.start_objects(frames[0], [ObjectPrompt(BOX, POINTS), second])]
    together += [tracker.track_objects(frame) for frame in frames[1:]]
    assert tracker.stored_frames == 2 * len(frames)
    for index, prompt in enumerate([ObjectPrompt(BOX, POINTS), second]):
        alone = [tracker.start(frames[0], prompt)] + [tracker.track(frame) for frame in frames[1:]]
        for both, single in zip(together, alone, strict=True):
            np.testing.assert_array_equal(both[index].mask, single.mask)
            assert both[index].score == single.score and both[index].present == single.present
    with pytest.raises(ValueError, match="at least one"):
        tracker.start_objects(frames[0], [])
