"""SAM2 streaming tracking on sam2's own modules (torch), frame by frame, with bounded memory.

The level used is SAM2Base's: `forward_image` → `_prepare_backbone_features` → `track_step`, with this class
keeping the outputs sam2's video predictor would keep, exactly as it keeps them, so the masks equal
`SAM2VideoPredictor.propagate_in_video` on the same frames (tests/test_tracking.py):

* frames are preprocessed as the video predictor loads them: PIL resize to image_size² (bicubic), /255,
  ImageNet mean/std — not the image predictor's transform;
* the prompted frame is a conditioning frame: box corners (labels 2, 3) then the positive points (label 1),
  normalised by the frame size and scaled to image_size; its memory is encoded from the upsampled low-res
  mask with `is_mask_from_pts`, as the predictor's preflight does;
* memory features are stored in bfloat16, as the predictor stores them;
* an endless stream: `num_frames` is "unknown", so the number of object pointers read and their temporal
  scale are those of a long video (min(num_frames, 16) = 16); only the last `window` non-conditioning frames
  are kept (the 6 memory frames and 15 object pointers sam2 reads), so memory stays flat however long it runs.

Not reproduced: `fill_hole_area` (it needs sam2's CUDA extension, absent on CPU, where the predictor skips
it too). `memory_frames` < 7 reads fewer memory frames (faster, results change: opt-in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segzero_ros.config import Sam2SegmenterConfig, SegmenterConfig, widen
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation.compiling import SAM2_VIDEO_PARTS, compile_parts, warm_up_tracker
from segzero_ros.segmentation.sam2_backend import build_sam2_model
from segzero_ros.tracking.base import ObjectMemory, ObjectTrackerBase, TrackedMask, check_frame, presence_probability

ENDLESS = 1 << 30
"""`num_frames` for a live stream: more frames than any pointer window."""
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class Sam2Tracker(ObjectTrackerBase):
    def __init__(self, model: Any, name: str, *, memory_frames: int | None = None,
                 freeze_when_absent: bool = False) -> None:
        """`model`: a SAM2VideoPredictor (sam2's video settings); most callers want `from_config`.

        `memory_frames`: past frames read by memory attention (default: the model's num_maskmem - 1 = 6;
        fewer is faster and changes results). `freeze_when_absent`: do not add frames where the object is
        absent to memory (keeps a lost object's memory clean; changes results, so off by default)."""
        import torch

        self._torch: Any = torch
        self._model: Any = model
        self._name = name
        self._device = model.device
        self._image_size = int(model.image_size)
        if memory_frames is not None:
            if not 1 <= memory_frames <= model.num_maskmem - 1:
                raise ValueError(f"memory_frames must be 1..{model.num_maskmem - 1}, got {memory_frames}")
            model.num_maskmem = memory_frames + 1
        self._freeze_when_absent = freeze_when_absent
        self._window = max(model.num_maskmem, model.max_obj_ptrs_in_encoder)
        self._mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]
        self.reset()

    @classmethod
    def from_config(cls, config: SegmenterConfig, **options: Any) -> Sam2Tracker:
        config = widen(config, Sam2SegmenterConfig)
        model, name = build_sam2_model(config, video=True)
        if config.compile:
            compile_parts(model, SAM2_VIDEO_PARTS)
        tracker = cls(model, name, **options)
        if config.compile:
            warm_up_tracker(tracker)
        return tracker

    @property
    def stored_bytes(self) -> int:
        """Bytes of the tensors held in memory now (what grows without bound in sam2's own video predictor)."""
        return sum(value.element_size() * value.nelement() for memory in self._objects
                   for outputs in (*memory.cond.values(), *memory.non_cond.values())
                   for value in _tensors(outputs))

    def reset(self) -> None:
        self._objects: list[ObjectMemory] = []
        self._frame = -1
        self._size: tuple[int, int] | None = None

    def close(self) -> None:
        self.reset()
        self._model = None

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
        """Forget any previous targets; remember each prompted object (the image is encoded once). Each object
        keeps a memory of its own, as sam2's video predictor keeps one per object id."""
        if not prompts:
            raise ValueError("start_objects needs at least one object prompt")
        self.reset()
        torch = self._torch
        height, width = check_frame(image)
        self._size = (height, width)
        self._frame = 0
        tracked = []
        with torch.inference_mode():
            features = self._features(image)
            scale = torch.tensor([width, height], dtype=torch.float32)
            for prompt in prompts:
                box, points = prompt.box, prompt.points
                memory = ObjectMemory()
                coordinates = [[box.x1, box.y1], [box.x2, box.y2], *([p.x, p.y] for p in points)]
                labels = [2, 3, *([1] * len(points))]
                point_inputs = {
                    "point_coords": (torch.tensor(coordinates, dtype=torch.float32) / scale * self._image_size)[None]
                    .to(self._device),
                    "point_labels": torch.tensor(labels, dtype=torch.int32)[None].to(self._device),
                }
                out = self._model.track_step(
                    frame_idx=0, is_init_cond_frame=True, current_vision_feats=features[0],
                    current_vision_pos_embeds=features[1], feat_sizes=features[2], point_inputs=point_inputs,
                    mask_inputs=None, output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                    num_frames=ENDLESS, track_in_reverse=False, run_mem_encoder=False, prev_sam_mask_logits=None)
                # What the video predictor's preflight does for a prompted frame: memory from the upsampled mask.
                high_res = torch.nn.functional.interpolate(
                    out["pred_masks"], size=(self._image_size, self._image_size), mode="bilinear",
                    align_corners=False)
                maskmem, position = self._model._encode_new_memory(
                    current_vision_feats=features[0], feat_sizes=features[2], pred_masks_high_res=high_res,
                    object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
                out["maskmem_features"], out["maskmem_pos_enc"] = maskmem, position
                memory.cond[0] = self._compact(out)
                memory.latest = out["pred_masks"]
                self._objects.append(memory)
                tracked.append(self._tracked(out))
        return tracked

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        """Every started object on the next frame, in the order they were started (one image encoding)."""
        if self._size is None:
            raise RuntimeError("call start(image, prompt) before track(image)")
        torch = self._torch
        size = check_frame(image)
        if size != self._size:
            raise ValueError(f"frame is {size[1]}×{size[0]} but tracking started on {self._size[1]}×{self._size[0]}; "
                             "reset and start again")
        self._frame += 1
        tracked = []
        with torch.inference_mode():
            features = self._features(image)
            for memory in self._objects:
                out = self._model.track_step(
                    frame_idx=self._frame, is_init_cond_frame=False, current_vision_feats=features[0],
                    current_vision_pos_embeds=features[1], feat_sizes=features[2], point_inputs=None,
                    mask_inputs=None,
                    output_dict={"cond_frame_outputs": memory.cond, "non_cond_frame_outputs": memory.non_cond},
                    num_frames=ENDLESS, track_in_reverse=False, run_mem_encoder=True)
                result = self._tracked(out)
                memory.latest = out["pred_masks"]
                if result.present or not self._freeze_when_absent:
                    memory.non_cond[self._frame] = self._compact(out)
                for old in [index for index in memory.non_cond if index <= self._frame - self._window]:
                    del memory.non_cond[old]
                tracked.append(result)
        return tracked

    # ------------------------------------------------------------------ internals

    def _features(self, image: np.ndarray) -> tuple[Any, Any, Any]:
        """Backbone features of one frame, preprocessed as sam2's video frame loader does."""
        from PIL import Image

        torch = self._torch
        resized = np.array(Image.fromarray(image, mode="RGB").resize((self._image_size, self._image_size)))
        pixels = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
        pixels = ((pixels - self._mean) / self._std).to(self._device).float().unsqueeze(0)
        backbone = self._model.forward_image(pixels)
        _, vision_feats, vision_pos_embeds, feat_sizes = self._model._prepare_backbone_features(backbone)
        return vision_feats, vision_pos_embeds, feat_sizes

    def _compact(self, out: dict[str, Any]) -> dict[str, Any]:
        """What the video predictor stores per frame (memory features in bfloat16)."""
        memory = out["maskmem_features"]
        return {
            "maskmem_features": memory.to(self._torch.bfloat16) if memory is not None else None,
            "maskmem_pos_enc": out["maskmem_pos_enc"],
            "pred_masks": out["pred_masks"],
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }

    def _tracked(self, out: dict[str, Any]) -> TrackedMask:
        assert self._size is not None
        logits = self._torch.nn.functional.interpolate(out["pred_masks"], size=self._size, mode="bilinear",
                                                       align_corners=False)
        score_logit = float(out["object_score_logits"].reshape(-1)[0])
        mask = (logits[0, 0] > 0.0).cpu().numpy()
        return TrackedMask(mask=mask, score=presence_probability(score_logit), present=score_logit > 0,
                           frame_index=self._frame)


def _tensors(outputs: dict[str, Any]) -> list[Any]:
    values = [value for value in outputs.values() if value is not None]
    return [item for value in values for item in (value if isinstance(value, list) else [value])]

