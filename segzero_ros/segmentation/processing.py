"""Numpy pre- and post-processing around the exported SAM2 graphs, shared by the onnxruntime and TensorRT
backends. Each step reproduces SAM2ImagePredictor (sam2 1.1.0) exactly, so the graphs give the torch
predictor's masks; where it runs:

1. Image (CPU, here): RGB uint8 H×W×3 → S×S float32 with antialiased bilinear resampling, the filter
   torchvision's Resize applies to tensors (Pillow's float "F" mode computes the same triangle filter,
   ~20 ms for 1280×720 → 1024²; torch takes ~80 ms). Values stay 0..255: the /255 and mean/std
   normalisation are folded into the encoder graph, where they are free.
2. Prompt (CPU, here): box corners first (labels 2, 3), then the positive points (label 1), scaled from
   image pixels to the S×S encoder frame exactly like the predictor (x / W · S, y / H · S in float32).
3. Mask choice (CPU, here): the decoder graph returns all four mask tokens and their IoU predictions;
   `select_candidates` applies the predictor's multimask / stability rule, the caller keeps the top score.
4. Upsampling (CPU, here): only the chosen S/4 × S/4 logit map is resized straight to H×W (bilinear,
   half-pixel centres, no antialias: F.interpolate(..., align_corners=False) as in SAM2Transforms; SAM2
   does not pad, so there is no crop) as two small matrix products, then thresholded at the mask threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.segmentation.sam2_backend import prompt_arrays

BOX_CORNER_LABELS = (2, 3)
"""SAM's labels for a box's top-left and bottom-right corners when fed as points."""
NUM_MASK_TOKENS = 4
"""Decoder outputs: token 0 = single-mask output, tokens 1–3 = the multimask outputs."""
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def check_rgb_image(image: object) -> np.ndarray:
    """The RGB uint8 H×W×3 image every SAM2 backend takes; anything else is a ValueError naming it."""
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8
            or image.shape[0] == 0 or image.shape[1] == 0):
        described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f"expected an RGB uint8 H×W×3 image, got {described}")
    return image


def resize_for_encoder(image: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 H×W×3 → float32 1×3×S×S, values 0..255, resampled like torchvision's antialiased Resize.

    `out` (1×3×S×S float32) is filled in place when given, so a runtime can keep one (pinned) buffer.
    """
    from PIL import Image

    check_rgb_image(image)
    if out is None:
        out = np.empty((1, 3, size, size), dtype=np.float32)
    elif out.shape != (1, 3, size, size) or out.dtype != np.float32:
        raise ValueError(f"output buffer must be float32 1×3×{size}×{size}, got {out.dtype} {out.shape}")
    for channel in range(3):
        plane = image[:, :, channel].astype(np.float32)  # contiguous float32 copy: Pillow's "F" mode
        resized = Image.fromarray(plane).resize((size, size), Image.Resampling.BILINEAR)
        out[0, channel] = np.asarray(resized)
    return out


def normalize_for_sam2(pixels: np.ndarray) -> np.ndarray:
    """0..255 float NCHW → what SAM2's image encoder sees; the exported encoder applies the same inside."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGE_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    normalized: np.ndarray = ((pixels / np.float32(255.0)) - mean) / std
    return normalized


def decoder_prompt(prompt: ObjectPrompt, image_hw: tuple[int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Seg-Zero's prompt as the decoder graph takes it: coords 1×N×2 float32 in the S×S encoder frame and
    labels 1×N int32, N = 2 + len(points), box corners first as SAM2ImagePredictor concatenates them."""
    point_coords, point_labels, box_array = prompt_arrays(prompt)
    coords = np.concatenate([box_array.reshape(2, 2), point_coords], axis=0)
    labels = np.concatenate([np.asarray(BOX_CORNER_LABELS, dtype=np.int32), point_labels])
    height, width = image_hw
    # Same float32 operations, in the same order, as SAM2Transforms.transform_coords(normalize=True).
    coords[:, 0] = coords[:, 0] / np.float32(width)
    coords[:, 1] = coords[:, 1] / np.float32(height)
    coords = coords * np.float32(size)
    return coords[None].astype(np.float32), labels[None].astype(np.int32)


@dataclass(frozen=True)
class MaskSelection:
    """How SAM2ImagePredictor.predict picks masks from the decoder's four tokens."""

    multimask_output: bool = True
    dynamic_multimask_via_stability: bool = False
    stability_delta: float = 0.05
    stability_thresh: float = 0.98


def select_candidates(masks: np.ndarray, scores: np.ndarray, selection: MaskSelection) -> tuple[np.ndarray, np.ndarray]:
    """All-token decoder output (4×h×w logits, 4 scores) → the masks and scores `predict` would return."""
    if masks.ndim != 3 or masks.shape[0] != NUM_MASK_TOKENS or scores.shape != (NUM_MASK_TOKENS,):
        raise ValueError(f"expected {NUM_MASK_TOKENS}×h×w masks and {NUM_MASK_TOKENS} scores, "
                         f"got {masks.shape} and {scores.shape}")
    if selection.multimask_output:
        return masks[1:], scores[1:]
    if selection.dynamic_multimask_via_stability:
        single = masks[0]
        area_inner = np.count_nonzero(single > selection.stability_delta)
        area_outer = np.count_nonzero(single > -selection.stability_delta)
        stability = area_inner / area_outer if area_outer > 0 else 1.0
        if stability < selection.stability_thresh:
            best = 1 + int(np.argmax(scores[1:]))
            return masks[best:best + 1], scores[best:best + 1]
    return masks[0:1], scores[0:1]


class LogitUpsampler:
    """Bilinear resize of a low-res logit map to the original image size, as SAM2's postprocess_masks.

    Separable bilinear resizing is two matrix products with banded interpolation matrices; they are cached
    for the last sizes seen (a camera's frames all have one size), so each call costs ~2–5 ms at 720p.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int, int, int] | None = None
        self._rows = np.zeros((0, 0), dtype=np.float32)
        self._columns_t = np.zeros((0, 0), dtype=np.float32)

    def __call__(self, logits: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        if logits.ndim != 2:
            raise ValueError(f"expected one h×w logit map, got shape {logits.shape}")
        height, width = image_hw
        key = (logits.shape[0], logits.shape[1], height, width)
        if key != self._key:
            self._rows = bilinear_matrix(logits.shape[0], height)
            self._columns_t = np.ascontiguousarray(bilinear_matrix(logits.shape[1], width).T)
            self._key = key
        return (self._rows @ logits.astype(np.float32, copy=False)) @ self._columns_t  # type: ignore[no-any-return]


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """size_out×size_in weights of 1-D bilinear interpolation with half-pixel centres and edge clamping
    (torch's upsample_bilinear2d with align_corners=False and no antialias), in float32 like torch."""
    scale = np.float32(size_in) / np.float32(size_out)
    source = scale * (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    source = np.maximum(source, np.float32(0.0))
    lower = np.minimum(source.astype(np.intp), size_in - 1)
    upper = np.minimum(lower + 1, size_in - 1)
    upper_weight = np.clip(source - lower.astype(np.float32), 0.0, 1.0).astype(np.float32)
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, lower), np.float32(1.0) - upper_weight)
    np.add.at(matrix, (rows, upper), upper_weight)
    return matrix
