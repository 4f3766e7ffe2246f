"""`segmenter.compile`: torch.compile on the heavy parts of a SAM-family model, and a warm-up that pays for it
at configure rather than on the first command.

Only `forward` of each named submodule is replaced (the module keeps its parameters and its state-dict names, so
checkpoints still load and the shared SAM3 backbone still compares equal); a backbone shared by several models
of one checkpoint is compiled once, inside its cache, for all of them. The mode is inductor's default: fused
kernels, no autotuning (max-autotune's kernel search makes loading take many minutes more, for little on models
whose matrix products go to cuBLAS anyway) and no CUDA graphs (a CUDA-graph replay overwrites the outputs of the
previous one, and these models keep outputs across calls: the image predictor's features, the tracker's memory
bank, the shared backbone's last output).
Image encoders see one input size (the model's own), so they compile static; memory attention reads a number
of memories that grows with the first frames of a track, so it compiles dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.shared_backbone import CachedForward

MODE = "default"

SAM2_IMAGE_PARTS: Mapping[str, bool] = {"image_encoder": False}
"""sam2's SAM2Base: submodule → dynamic shapes."""
SAM2_VIDEO_PARTS: Mapping[str, bool] = {**SAM2_IMAGE_PARTS, "memory_attention": True, "memory_encoder": False}
TRANSFORMERS_IMAGE_PARTS: Mapping[str, bool] = {"vision_encoder.backbone": False}
"""transformers' Sam3Tracker* / EdgeTam* models (the backbone is what SAM3's models share)."""
TRANSFORMERS_VIDEO_PARTS: Mapping[str, bool] = {**TRANSFORMERS_IMAGE_PARTS, "memory_attention": True,
                                                "memory_encoder": False}
WARM_UP_FRAMES = 4
"""Tracked frames of the warm-up: past the first, the memory count has taken its general (dynamic) shape."""


def compile_parts(model: Any, parts: Mapping[str, bool]) -> None:
    """Compile `forward` of each submodule of `model` named in `parts` (path → dynamic). A path the model lacks
    is an error, not a silent eager run."""
    import torch

    for path, dynamic in parts.items():
        module = model.get_submodule(path)
        if is_compiled(module):
            continue
        cache = module.__dict__.get("forward")
        if isinstance(cache, CachedForward):  # a shared backbone: compile inside its cache, which still answers
            cache.inner = torch.compile(cache.inner, mode=MODE, dynamic=dynamic)  # a repeated image at once
        else:
            module.forward = torch.compile(module.forward, mode=MODE, dynamic=dynamic)


def is_compiled(module: Any) -> bool:
    """Whether `module.forward` (inside a shared backbone's cache, if any) is a torch.compile wrapper."""
    forward = module.__dict__.get("forward")
    if isinstance(forward, CachedForward):
        forward = forward.inner
    return forward is not None and hasattr(forward, "_torchdynamo_orig_callable")


def compiled_parts(model: Any, parts: Mapping[str, bool]) -> list[str]:
    """Those of `parts` whose forward is compiled now (for logs and tests)."""
    return [path for path in parts if is_compiled(model.get_submodule(path))]


def warm_up_frames(count: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    """A square moving across a grey frame: something to segment and follow, so every compiled part runs."""
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 96, dtype=np.uint8)
        left = width // 4 + index * 4
        frame[height // 3: height // 3 + height // 4, left: left + width // 5] = (220, 40, 40)
        frames.append(frame)
    return frames


def warm_up_prompt(height: int = 480, width: int = 640) -> ObjectPrompt:
    """The square of the first warm-up frame: its box and two points inside it."""
    top, left = height // 3, width // 4
    bottom, right = top + height // 4, left + width // 5
    centre = Point((left + right) // 2, (top + bottom) // 2)
    return ObjectPrompt(Box(left, top, right, bottom), (centre, Point(centre.x + 4, centre.y + 4)))


def warm_up_segmenter(segmenter: Any) -> None:
    """Encode one frame and decode one prompt, so compilation happens now; then forget the frame."""
    segmenter.set_image(warm_up_frames(1)[0])
    segmenter.segment(warm_up_prompt())
    segmenter.forget_image()


def warm_up_tracker(tracker: Any) -> None:
    """Start a track and follow it a few frames, then forget it."""
    frames = warm_up_frames(WARM_UP_FRAMES)
    tracker.start(frames[0], warm_up_prompt())
    for frame in frames[1:]:
        tracker.track(frame)
    tracker.reset()
