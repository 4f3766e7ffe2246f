"""`segmenter.compile` on the torch segmenters and trackers (sam2, sam3, edgetam), tiny models on CPU.

In CI torch runs in its `force_eager` stance: the compile wrappers are installed and called and the warm-up
runs, without inductor's minutes of code generation; what is checked is the wiring — every heavy part is
compiled, the warm-up leaves no image or track behind, results equal the uncompiled backend's exactly.
Opt-in (SEGZERO_COMPILE=1, a few minutes on 1 CPU thread): inductor really compiles, and masks agree with the
uncompiled backend's (kernels differ, so not bit for bit). CUDA, where compiling pays off, was not available
here; benchmarks/gpu_suite.py measures it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from segzero_ros.backends import build_segmenter, build_tracker
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation import compiling
from segzero_ros.tiny import tiny_segmenter_config
from tests.test_tracking import BOX, POINTS, moving_disc

pytestmark = pytest.mark.slow

REALLY = os.environ.get("SEGZERO_COMPILE") == "1"
PARTS = {"sam2": (compiling.SAM2_IMAGE_PARTS, compiling.SAM2_VIDEO_PARTS),
         "sam3": (compiling.TRANSFORMERS_IMAGE_PARTS, compiling.TRANSFORMERS_VIDEO_PARTS),
         "edgetam": (compiling.TRANSFORMERS_IMAGE_PARTS, compiling.TRANSFORMERS_VIDEO_PARTS)}
FRAMES = 4


@contextlib.contextmanager
def compiling_stance(really: bool) -> Iterator[None]:
    import torch

    if really:
        torch._dynamo.reset()
        yield
    else:
        with torch.compiler.set_stance("force_eager"):
            yield


def _model(backend: Any) -> Any:
    """The torch model inside a built segmenter or tracker (private attributes: this test looks inside)."""
    inner = backend._predictor.model if hasattr(backend, "_predictor") else None
    if inner is None:
        inner = backend._model if hasattr(backend, "_model") else backend._loaded.model
    return inner


def run(config: Any) -> tuple[list[np.ndarray], list[np.ndarray], Any, Any]:
    """One mask per prompt from the segmenter, one per frame from the tracker; and both backends."""
    frames = moving_disc(FRAMES)
    segmenter, tracker = build_segmenter(config), build_tracker(config)
    segmenter.set_image(frames[0])
    segmented = [segmenter.segment(ObjectPrompt(BOX, POINTS)).mask, segmenter.segment(ObjectPrompt(BOX)).mask]
    tracked = [tracker.start(frames[0], ObjectPrompt(BOX, POINTS)).mask]
    tracked += [tracker.track(frame).mask for frame in frames[1:]]
    return segmented, tracked, segmenter, tracker


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


@pytest.mark.parametrize("backend", list(PARTS))
def test_compile_wraps_every_heavy_part_warms_up_and_changes_no_result(backend, tiny_cache_root):
    eager_config = tiny_segmenter_config(backend, tiny_cache_root)
    compiled_config = tiny_segmenter_config(backend, tiny_cache_root, compile=True)
    assert compiled_config.compile and not eager_config.compile
    segmented, tracked, segmenter, tracker = run(eager_config)
    segmenter.close()
    tracker.close()
    started = time.perf_counter()
    with compiling_stance(REALLY):
        got_segmented, got_tracked, segmenter, tracker = run(compiled_config)
    seconds = time.perf_counter() - started
    image_parts, video_parts = PARTS[backend]
    try:
        assert compiling.compiled_parts(_model(segmenter), image_parts) == list(image_parts)
        assert compiling.compiled_parts(_model(tracker), video_parts) == list(video_parts)
        if REALLY:
            agreements = [_agreement(want, got)
                          for want, got in zip(segmented + tracked, got_segmented + got_tracked, strict=True)]
            print(f"{backend}: compiled, warmed up and ran in {seconds:.1f} s; pixels agreeing with eager: "
                  f"min {min(agreements):.5f}")
            assert min(agreements) >= 0.995
        else:
            for want, got in zip(segmented + tracked, got_segmented + got_tracked, strict=True):
                np.testing.assert_array_equal(got, want)
    finally:
        segmenter.close()
        tracker.close()


def test_the_warm_up_leaves_no_image_and_no_track(tiny_cache_root):
    config = tiny_segmenter_config("edgetam", tiny_cache_root, compile=True)
    with compiling_stance(False):
        segmenter, tracker = build_segmenter(config), build_tracker(config)
    try:
        with pytest.raises(RuntimeError, match="before set_image"):
            segmenter.segment(ObjectPrompt(BOX, POINTS))
        with pytest.raises(RuntimeError):
            tracker.track(moving_disc(1)[0])  # nothing is being tracked until start
    finally:
        segmenter.close()
        tracker.close()


def test_a_missing_part_is_an_error_not_an_eager_run(tiny_cache_root):
    import torch

    with pytest.raises(AttributeError):
        compiling.compile_parts(torch.nn.Linear(2, 2), {"image_encoder": False})
