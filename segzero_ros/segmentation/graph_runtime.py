"""The Segmenter the exported-graph backends share: numpy pre/post-processing around two graph calls.

Subclasses (onnxruntime, TensorRT) only say how to run the encoder graph on a preprocessed image and the
decoder graph on a prompt; everything that decides which mask comes out is here, once, so both
runtimes agree with SAM2ImagePredictor by construction.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segzero_ros.config import ExportedGraphsConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.errors import ModelLoadError
from segzero_ros.segmentation.base import SegmentOutput, best_index
from segzero_ros.segmentation.manifest import Sam2OnnxManifest
from segzero_ros.segmentation.processing import (
    LogitUpsampler,
    MaskSelection,
    check_rgb_image,
    decoder_prompt,
    resize_for_encoder,
    select_candidates,
)

LOG = logging.getLogger(__name__)

LOW_RES_LOGIT_LIMIT = 32.0
"""SAM2ImagePredictor clamps the low-res logits it returns to ±32 (the full-res masks are unclamped)."""


@dataclass(frozen=True)
class LowResPrediction:
    """What SAM2ImagePredictor.predict returns before upsampling: one low-res logit map per candidate."""

    logits: np.ndarray
    """k×S/4×S/4 float32 logits, clamped to ±32 like the predictor's low_res_masks (k = 3 multimask, else 1)."""
    scores: np.ndarray
    """k predicted IoUs."""


class Sam2GraphSegmenter(abc.ABC):
    """Segmenter protocol over an exported SAM2 (encoder graph + decoder graph)."""

    def __init__(self, manifest: Sam2OnnxManifest, name: str, multimask_output: bool = True) -> None:
        self._manifest = manifest
        self._name = name
        info = manifest.model
        self._selection = MaskSelection(
            multimask_output=multimask_output,
            dynamic_multimask_via_stability=info.dynamic_multimask_via_stability,
            stability_delta=info.dynamic_multimask_stability_delta,
            stability_thresh=info.dynamic_multimask_stability_thresh,
        )
        self._upsample = LogitUpsampler()
        self._pixels = np.empty((1, 3, info.image_size, info.image_size), dtype=np.float32)
        self._image_hw: tuple[int, int] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_size(self) -> int:
        """Encoder input side S the graphs were exported for."""
        return self._manifest.model.image_size

    @property
    def manifest(self) -> Sam2OnnxManifest:
        return self._manifest

    def set_image(self, image: np.ndarray) -> None:
        """Resize + encode an RGB uint8 H×W×3 image; its features stay with the runtime for `segment`."""
        self._require_open()
        check_rgb_image(image)
        self._image_hw = None
        resize_for_encoder(image, self.image_size, out=self._pixels)
        self._encode(self._pixels)
        self._image_hw = (int(image.shape[0]), int(image.shape[1]))

    def predict_low_res(self, prompt: ObjectPrompt) -> LowResPrediction:
        """The candidates SAM2ImagePredictor.predict would return for this prompt, at low resolution."""
        candidates, scores, _ = self._candidates(prompt)
        return LowResPrediction(logits=np.clip(candidates, -LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT),
                                scores=np.asarray(scores, dtype=np.float32))

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        """Seg-Zero's call: box + positive points → the highest-scoring mask at full resolution."""
        candidates, scores, image_hw = self._candidates(prompt)
        best = best_index(scores)
        # Only the winner is upsampled: the choice depends on the scores alone. Unclamped logits, as the
        # predictor thresholds its upsampled (unclamped) masks.
        full = self._upsample(candidates[best], image_hw)
        return SegmentOutput(mask=full > self._manifest.model.mask_threshold, score=float(scores[best]))

    def _candidates(self, prompt: ObjectPrompt) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        image_hw = self._require_image()
        coords, labels = decoder_prompt(prompt, image_hw, self.image_size)
        masks, scores = self._decode(coords, labels)
        candidates, candidate_scores = select_candidates(masks[0], scores[0], self._selection)
        return candidates, candidate_scores, image_hw

    def close(self) -> None:
        """Release the runtime's sessions/engines and device memory; later calls raise."""
        if self._closed:
            return
        self._closed = True
        self._image_hw = None
        self._release()

    @abc.abstractmethod
    def _encode(self, pixels: np.ndarray) -> None:
        """Run the encoder graph on 1×3×S×S float32 pixels and keep its three outputs for `_decode`."""

    @abc.abstractmethod
    def _decode(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the decoder graph on the kept features: → masks 1×4×S/4×S/4 and scores 1×4, float32 numpy."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free sessions, engines and buffers."""

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"segmenter {self._name} is closed")

    def _require_image(self) -> tuple[int, int]:
        self._require_open()
        if self._image_hw is None:
            raise RuntimeError(f"{type(self).__name__}.segment called before set_image: encode an image first")
        return self._image_hw


def require_onnx_dir(config: ExportedGraphsConfig) -> Path:
    """segmenter.onnx_dir, which the backend registry's preparation step fills in when it was unset."""
    if not config.onnx_dir:
        raise ModelLoadError(
            f"segmenter backend {config.backend!r} needs segmenter.onnx_dir (a folder from `segzero export-sam2`); "
            "segzero_ros.backends.build_segmenter exports the configured SAM2 model into the cache when it is unset")
    return Path(config.onnx_dir).expanduser()
