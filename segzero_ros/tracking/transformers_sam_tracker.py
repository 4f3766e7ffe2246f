"""Streaming trackers on transformers' SAM3-tracker and EdgeTAM video models, with bounded memory.

transformers drives both with an inference session: `init_video_session()` without a video (streaming),
`add_inputs_to_inference_session(..., frame_idx=0, original_size=...)` for the prompted frame, then
`model(inference_session=..., frame=..., frame_idx=i)` per frame. Such a session keeps EVERY frame's pixels and
outputs (high-resolution masks included), so on an endless camera stream it grows without bound. This tracker
passes explicit frame indices (after pruning, a session numbering frames by its stored count would repeat
indices and silently change results) and, after each frame, drops what no later frame can read: the pixels
of past frames, and each object's outputs older than the window (16 frames: the object pointers the model
reads; its 6 memory frames are among them). The prompted frame's outputs stay. With the default window the
masks equal those of the unpruned session exactly (tests/test_tracking_transformers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation.compiling import warm_up_tracker
from segzero_ros.segmentation.transformers_sam import LoadedSam, classes_for, load_sam, prompt_lists
from segzero_ros.tracking.base import TrackedMask, check_frame, presence_probability

WINDOW = 16
"""Past frames whose outputs are kept: the most object pointers the released models read (16), which covers
their memory frames (num_maskmem 7: the prompted frame + 6 recent)."""


class TransformersSamTracker:
    """Tracker over a transformers SAM video model: one session, one object id per started object."""

    def __init__(self, loaded: LoadedSam, *, memory_frames: int | None = None,
                 freeze_when_absent: bool = False) -> None:
        self._loaded: LoadedSam | None = loaded
        self._window = WINDOW if memory_frames is None else memory_frames
        self._freeze_when_absent = freeze_when_absent
        self._session: Any = None
        self._size: tuple[int, int] | None = None
        self._frame = -1
        self._count = 0
        self._latest: Any = None

    @classmethod
    def from_config(cls, config: SegmenterConfig, **options: Any) -> TransformersSamTracker:
        """The video model of the same checkpoint as the segmenter (`memory_frames`: how many past frames stay
        readable, fewer than 16 changes results; `freeze_when_absent`: frames without the object are dropped)."""
        tracker = cls(load_sam(config, video=True), **options)
        if classes_for(config)[0].compile:
            warm_up_tracker(tracker)
        return tracker

    @property
    def name(self) -> str:
        return self._require().name + ":tracker"

    @property
    def stored_frames(self) -> int:
        """Frames whose outputs the session holds now, over all objects (bounded, however long it runs)."""
        if self._session is None:
            return 0
        return sum(len(outputs["cond_frame_outputs"]) + len(outputs["non_cond_frame_outputs"])
                   for outputs in self._session.output_dict_per_obj.values())

    @property
    def stored_bytes(self) -> int:
        """Bytes of the tensors the session holds (frames' pixels and every stored output)."""
        if self._session is None:
            return 0
        held = [*self._session.processed_frames.values(),
                *(value for outputs in self._session.output_dict_per_obj.values()
                  for frames in outputs.values() for frame in frames.values() for value in _tensors(frame))]
        return sum(int(tensor.element_size() * tensor.nelement()) for tensor in held)

    def low_res_logits(self, index: int = 0) -> Any:
        """Object `index`'s latest low-resolution mask logits (for exactness tests)."""
        return None if self._latest is None else self._latest[index]

    def start(self, image: np.ndarray, prompt: ObjectPrompt) -> TrackedMask:
        return self.start_objects(image, [prompt])[0]

    def track(self, image: np.ndarray) -> TrackedMask:
        return self.track_objects(image)[0]

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
        """Forget any previous targets; prompt each object on this frame (frame 0 of a new session)."""
        if not prompts:
            raise ValueError("start_objects needs at least one object prompt")
        loaded = self._require()
        self.reset()
        self._size = check_frame(image)
        self._session = loaded.processor.init_video_session(inference_device=loaded.device, dtype=loaded.dtype)
        for object_id, prompt in enumerate(prompts, start=1):
            loaded.processor.add_inputs_to_inference_session(
                self._session, frame_idx=0, obj_ids=object_id, original_size=self._size, **prompt_lists(prompt))
        # Each call names only its own object as new (so one call per object keeps every object's prompt as it
        # is, without the padding points of a batched call); all of them are new on the prompted frame.
        self._session.obj_with_new_inputs = list(range(1, len(prompts) + 1))
        self._count = len(prompts)
        return self._step(image, 0)

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        """Every started object on the next frame, in the order they were started."""
        if self._size is None:
            raise RuntimeError("call start(image, prompt) before track(image)")
        size = check_frame(image)
        if size != self._size:
            raise ValueError(f"frame is {size[1]}×{size[0]} but tracking started on {self._size[1]}×{self._size[0]}; "
                             "reset and start again")
        return self._step(image, self._frame + 1)

    def reset(self) -> None:
        self._session, self._size, self._frame, self._count, self._latest = None, None, -1, 0, None

    def close(self) -> None:
        self.reset()
        self._loaded = None

    # ------------------------------------------------------------------ internals

    def _step(self, image: np.ndarray, frame_idx: int) -> list[TrackedMask]:
        import torch

        loaded, session, size = self._require(), self._session, self._size
        assert session is not None and size is not None
        pixels = loaded.processor(images=image, device=loaded.device, return_tensors="pt")["pixel_values"][0]
        with torch.inference_mode():
            out = loaded.model(inference_session=session, frame=pixels, frame_idx=frame_idx)
        self._frame, self._latest = frame_idx, out.pred_masks
        masks = loaded.processor.post_process_masks([out.pred_masks.float().cpu()], original_sizes=[list(size)],
                                                    binarize=False)[0]
        logits = out.object_score_logits.reshape(-1).float().cpu().tolist()
        tracked = [TrackedMask(mask=(masks[index, 0] > 0).numpy(), score=presence_probability(logit),
                               present=logit > 0, frame_index=frame_idx) for index, logit in enumerate(logits)]
        self._prune(frame_idx, [item.present for item in tracked])
        return tracked

    def _prune(self, frame_idx: int, present: list[bool]) -> None:
        """Drop what no later frame reads: past frames' pixels, outputs older than the window, and (with
        freeze_when_absent) this frame's outputs of objects that are absent on it."""
        session = self._session
        for index in [index for index in session.processed_frames if index != frame_idx]:
            del session.processed_frames[index]
        for obj_idx, outputs in session.output_dict_per_obj.items():
            tracked = outputs["non_cond_frame_outputs"]
            for index in [index for index in tracked if index <= frame_idx - self._window]:
                del tracked[index]
                session.frames_tracked_per_obj[obj_idx].pop(index, None)
            if self._freeze_when_absent and frame_idx > 0 and not present[obj_idx]:
                tracked.pop(frame_idx, None)

    def _require(self) -> LoadedSam:
        if self._loaded is None:
            raise RuntimeError("tracker is closed")
        return self._loaded


def _tensors(outputs: Any) -> list[Any]:
    """The tensors in one stored frame output (values may be tensors, lists of tensors or other data)."""
    import torch

    values = outputs.values() if isinstance(outputs, dict) else [outputs]
    found = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        found += [item for item in items if isinstance(item, torch.Tensor)]
    return found
