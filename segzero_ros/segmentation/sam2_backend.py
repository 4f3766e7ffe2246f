"""SAM2 through Meta's `sam2` package (PyTorch): the reference segmenter of Seg-Zero.

Inference is exactly the reference's: `set_image` on the original full-resolution RGB image, one
`predict` with the box and the positive points, keep the highest-scoring mask. Like the Seg-Zero
evaluation scripts, CUDA runs under `torch.inference_mode()` + bfloat16 autocast; CPU runs in float32.

torch and sam2 are imported only when a model is loaded, so `prompt_arrays` (shared with the ONNX and
TensorRT backends) can be imported without them.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segzero_ros.config import Sam2SegmenterConfig, Sam2WeightsConfig, SegmenterConfig, widen
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.devices import release_torch_memory, resolve_torch_device
from segzero_ros.errors import ModelLoadError
from segzero_ros.files import download_hint, hub_problem
from segzero_ros.segmentation.base import SegmentOutput, select_best_mask
from segzero_ros.segmentation.compiling import SAM2_IMAGE_PARTS, compile_parts, warm_up_segmenter

if TYPE_CHECKING:
    import torch

HIERA_TOTAL_STRIDE = 32
"""Hiera downsamples by 4 then pools three times; the FPN needs every level to halve exactly."""

HOW_TO_FIX = (
    "Point at local files with `segzero infer --sam2 CONFIG.yaml:CHECKPOINT.pt` "
    "(e.g. --sam2 configs/sam2/sam2_hiera_l.yaml:/models/sam2_hiera_large.pt), "
    "or set the ROS node parameters segmenter.config and segmenter.checkpoint, "
    "or use --tiny for the offline test model (meaningless masks)."
)


def prompt_arrays(prompt: ObjectPrompt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact arrays Seg-Zero feeds SAM2: points (N, 2) float32 x,y; labels (N,) int32 all 1 (positive);
    box (4,) float32 x1,y1,x2,y2. All in original-image pixels."""
    points = prompt.points
    point_coords = np.array([[point.x, point.y] for point in points], dtype=np.float32).reshape(-1, 2)
    point_labels = np.ones(len(points), dtype=np.int32)
    box_array = np.array(prompt.box.as_list(), dtype=np.float32)
    return point_coords, point_labels, box_array


def build_sam2_model(config: SegmenterConfig, *, video: bool = False) -> tuple[Any, str]:
    """The SAM2 model a segmenter config names, and its display name; every failure is a ModelLoadError.

    `video`: built as sam2's video predictor (its post-processing settings: dynamic multimask fallback,
    binarised masks into the memory encoder), which is what the tracker runs frame by frame.
    """
    config = widen(config, Sam2WeightsConfig)
    device = resolve_torch_device(config.device, "segmenter")
    if config.image_size is not None and (config.image_size <= 0 or config.image_size % HIERA_TOTAL_STRIDE):
        raise ModelLoadError(f"SAM2 image_size must be a positive multiple of {HIERA_TOTAL_STRIDE}, "
                             f"got {config.image_size}")
    if config.checkpoint is not None:
        config_name, checkpoint = _local_files(config)
        name = config.checkpoint
    else:
        config_name, checkpoint = _hub_files(config)
        name = config.model
    _check_config_exists(config_name)

    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    overrides = [] if config.image_size is None else [f"++model.image_size={config.image_size}"]
    build = build_sam2_video_predictor if video else build_sam2
    try:
        with _quiet_sam2_jit_warning():
            model = build(config_name, str(checkpoint), device=device, hydra_overrides_extra=overrides)
    except Exception as error:
        # build_sam2 raises a bare RuntimeError (keys only logged) when checkpoint and config disagree.
        detail = str(error) or "its parameter names do not match the config (missing or unexpected keys)"
        if len(detail) > 300:  # torch lists every mismatched key; the start says enough
            detail = detail[:300] + " …"
        mismatch = isinstance(error, RuntimeError) and (not str(error) or "state_dict" in str(error))
        hint = "Check that the config matches the checkpoint (sam2 vs sam2.1, hiera t/s/b+/l). " if mismatch else ""
        raise ModelLoadError(f"SAM2 checkpoint {checkpoint} could not be loaded with config {config_name}: "
                             f"{type(error).__name__}: {detail}. {hint}{HOW_TO_FIX}") from error
    return model, name


def sam2_feature_sizes(image_size: int, backbone_stride: int = 16) -> list[tuple[int, int]]:
    """Spatial sizes of the three feature maps the image predictor reshapes (stride 4, 8 and 16).

    SAM2ImagePredictor hard-codes them for 1024 px input ([(256, 256), (128, 128), (64, 64)]); any other
    encoder input size needs them recomputed or `set_image` fails to reshape the backbone output.
    """
    coarsest = image_size // backbone_stride
    return [(coarsest * 4, coarsest * 4), (coarsest * 2, coarsest * 2), (coarsest, coarsest)]


class Sam2Segmenter:
    """Segmenter backed by `sam2.sam2_image_predictor.SAM2ImagePredictor`."""

    def __init__(self, predictor: Any, name: str, multimask_output: bool = True) -> None:
        """Wrap an already built SAM2ImagePredictor; most callers want `from_config`."""
        import torch

        self._predictor: Any = predictor
        self._name = name
        self._multimask_output = multimask_output
        self._device: torch.device = predictor.device
        self._image_is_set = False
        self._closed = False
        # The Seg-Zero eval scripts run SAM2 under bf16 autocast on CUDA. GPUs without bf16 fall back to
        # plain float32 rather than fp16, whose narrower range SAM2 was not validated with.
        self._use_bf16_autocast = self._device.type == "cuda" and torch.cuda.is_bf16_supported()

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> Sam2Segmenter:
        """Load from a local config + checkpoint, or from a Hugging Face id through the local hub cache."""
        config = widen(config, Sam2SegmenterConfig)
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        model, name = build_sam2_model(config)
        if config.compile:
            compile_parts(model, SAM2_IMAGE_PARTS)
        with _quiet_sam2_jit_warning():
            predictor = SAM2ImagePredictor(model)
        predictor._bb_feat_sizes = sam2_feature_sizes(model.image_size, model.backbone_stride)
        segmenter = cls(predictor, name=name, multimask_output=config.multimask_output)
        if config.compile:
            warm_up_segmenter(segmenter)
        return segmenter

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_size(self) -> int:
        """Encoder input side the model runs at (1024 for the released checkpoints)."""
        self._require_open()
        return int(self._predictor.model.image_size)

    def set_image(self, image: np.ndarray) -> None:
        """Encode the original full-resolution RGB uint8 H×W×3 image (SAM2 resizes it internally)."""
        self._require_open()
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
            raise ValueError(f"expected an RGB uint8 H×W×3 image, got {described}")
        self._image_is_set = False
        with self._inference_context():
            self._predictor.set_image(image)
        self._image_is_set = True

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        """One SAM2 prediction with the box and all points as positives; the highest-scoring mask wins."""
        self._require_open()
        if not self._image_is_set:
            raise RuntimeError("Sam2Segmenter.segment called before set_image: encode an image first")
        point_coords, point_labels, box_array = prompt_arrays(prompt)
        with self._inference_context():
            masks, scores, _ = self._predictor.predict(
                point_coords=point_coords if prompt.points else None,
                point_labels=point_labels if prompt.points else None,
                box=box_array,
                multimask_output=self._multimask_output,
            )
        return select_best_mask(np.asarray(masks), np.asarray(scores))

    def forget_image(self) -> None:
        """Drop the encoded image (segment then needs a new set_image)."""
        self._require_open()
        self._image_is_set = False
        self._predictor.reset_predictor()

    def close(self) -> None:
        """Drop the model and image features; on CUDA also return cached blocks to the driver."""
        if self._closed:
            return
        self._closed = True
        self._image_is_set = False
        self._predictor.reset_predictor()
        self._predictor = None
        release_torch_memory()

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"segmenter {self._name} is closed")

    def _inference_context(self) -> contextlib.ExitStack:
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self._use_bf16_autocast:
            stack.enter_context(torch.autocast(device_type="cuda", dtype=torch.bfloat16))
        return stack


def _local_files(config: Sam2WeightsConfig) -> tuple[str, Path]:
    assert config.checkpoint is not None
    checkpoint = Path(config.checkpoint).expanduser()
    if not checkpoint.is_file():
        raise ModelLoadError(f"SAM2 checkpoint not found: {checkpoint}. {HOW_TO_FIX}")
    config_name = config.config or _config_for_checkpoint_filename(checkpoint.name)
    if config_name is None:
        raise ModelLoadError(f"SAM2 checkpoint {checkpoint} needs its model config (segmenter.config, e.g. "
                             f"configs/sam2.1/sam2.1_hiera_l.yaml): the file name is not one of Meta's releases. "
                             f"{HOW_TO_FIX}")
    return config_name, checkpoint


def _config_for_checkpoint_filename(filename: str) -> str | None:
    """Meta's released file names (sam2_hiera_large.pt, …) identify their config unambiguously."""
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    for config_name, released_filename in HF_MODEL_ID_TO_FILENAMES.values():
        if released_filename == filename:
            return str(config_name)
    return None


def _hub_files(config: Sam2WeightsConfig) -> tuple[str, Path]:
    """The sam2 package's own id → (config, checkpoint file) mapping, resolved through huggingface_hub."""
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    model_id = config.model
    if model_id not in HF_MODEL_ID_TO_FILENAMES:
        raise ModelLoadError(f"unknown SAM2 model id {model_id!r}; known ids: "
                             f"{', '.join(sorted(HF_MODEL_ID_TO_FILENAMES))}. {HOW_TO_FIX}")
    config_name, filename = HF_MODEL_ID_TO_FILENAMES[model_id]
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, filename)
    problem = None if isinstance(cached, str) else hub_problem()  # fail in seconds when the hub is out of reach
    try:
        if problem is not None:
            raise ConnectionError(problem)
        checkpoint = Path(hf_hub_download(repo_id=model_id, filename=filename))
    except Exception as error:
        why = problem or hub_problem() or f"{type(error).__name__}: {error}"
        raise ModelLoadError(
            f"SAM2 model {model_id!r}: {filename} is not in the local Hugging Face cache and could not be "
            f"downloaded ({why}). Fetch it once on a connected machine "
            f"({download_hint(model_id, filename)}), or: {HOW_TO_FIX}"
        ) from error
    return config.config or str(config_name), checkpoint


def _check_config_exists(config_name: str) -> None:
    """build_sam2 reads configs through hydra from inside the sam2 package; fail early and clearly."""
    package_root = importlib.resources.files("sam2")
    candidates = (config_name, f"{config_name}.yaml")  # hydra accepts the name with or without ".yaml"
    if not any(package_root.joinpath(candidate).is_file() for candidate in candidates):
        shipped = sorted(
            f"configs/{family.name}/{entry.name}"
            for family in package_root.joinpath("configs").iterdir()
            if family.is_dir() and not family.name.endswith("_training")
            for entry in family.iterdir() if entry.name.endswith(".yaml")
        )
        raise ModelLoadError(f"SAM2 config {config_name!r} is not shipped with the sam2 package; "
                             f"use one of: {', '.join(shipped)}. {HOW_TO_FIX}")


@contextlib.contextmanager
def _quiet_sam2_jit_warning() -> Iterator[None]:
    """sam2 1.1 calls torch.jit.script while building, which current torch flags as deprecated on every load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        yield
