"""SAM3's promptable tracker and EdgeTAM as segmenters, through transformers' own classes.

transformers ships both behind the same processor API as its SAM2: an image model (Sam3TrackerModel,
EdgeTamModel) that encodes an image once (`get_image_embeddings`) and decodes any number of box + point prompts
on that encoding, and a video model of the same weights (Sam3TrackerVideoModel, EdgeTamVideoModel; see
`segzero_ros.tracking.transformers_sam_tracker`). One checkpoint folder or hub id serves both (facebook/sam3 holds
all of SAM3's classes). Seg-Zero's rule is applied as with SAM2: the box and every point (positive) in one
prompt, multimask output, the best-scoring mask kept.

torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import (
    EdgeTamSegmenterConfig,
    Sam3SegmenterConfig,
    SegmenterConfig,
    TransformersSamConfig,
    widen,
)
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.devices import release_torch_memory, resolve_torch_device
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.files import download_hint, hub_offline, hub_problem, looks_like_local_path
from segzero_ros.segmentation.base import SegmentOutput, select_best_mask
from segzero_ros.segmentation.compiling import (
    TRANSFORMERS_IMAGE_PARTS,
    TRANSFORMERS_VIDEO_PARTS,
    compile_parts,
    warm_up_segmenter,
)
from segzero_ros.shared_backbone import share_backbone


@dataclass(frozen=True)
class SamClasses:
    """The transformers classes of one model family, by name (resolved when it is loaded)."""

    label: str
    image_model: str
    video_model: str
    processor: str
    video_processor: str


SAM3 = SamClasses("SAM3", "Sam3TrackerModel", "Sam3TrackerVideoModel", "Sam3TrackerProcessor",
                  "Sam3TrackerVideoProcessor")
EDGETAM = SamClasses("EdgeTAM", "EdgeTamModel", "EdgeTamVideoModel", "Sam2Processor", "Sam2VideoProcessor")
CLASSES: dict[type, SamClasses] = {Sam3SegmenterConfig: SAM3, EdgeTamSegmenterConfig: EDGETAM}


def classes_for(config: SegmenterConfig) -> tuple[TransformersSamConfig, SamClasses]:
    """The backend's own config and its model classes."""
    for config_class, classes in CLASSES.items():
        if isinstance(config, config_class) or config.backend == config_class().backend:
            return widen(config, config_class), classes
    raise ValueError(f"segmenter backend {config.backend!r} is not a transformers SAM family")


@dataclass
class LoadedSam:
    """A loaded model with what it runs on."""

    model: Any
    processor: Any
    device: Any
    dtype: Any
    name: str


def load_sam(config: SegmenterConfig, *, video: bool = False) -> LoadedSam:
    """The image (or video) model and processor `config` names, on its device; every failure one ModelLoadError
    saying how to point at local files."""
    config, classes = classes_for(config)
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailableError(f"the {config.backend} segmenter needs torch and transformers: pip install "
                                      "'segzero_ros[infer]'") from exc
    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    source = _source(config, classes)
    device = torch.device(resolve_torch_device(config.device, "segmenter"))
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16, "float32": torch.float32}[config.dtype]
    try:
        model = getattr(hf, classes.video_model if video else classes.image_model).from_pretrained(source)
        processor = _processor(hf, source, classes, video)
    except ImportError as exc:  # EdgeTAM's RepViT encoder comes through timm
        raise BackendUnavailableError(f"the {config.backend} segmenter needs {exc.name or 'a package'}: pip install "
                                      "'segzero_ros[infer]'") from exc
    except Exception as exc:
        raise _load_error(config, classes, source, exc) from exc
    model.to(device=device, dtype=dtype).eval()
    share_backbone(model, source, device, dtype)  # one backbone with the other models of this checkpoint
    if config.compile:
        compile_parts(model, TRANSFORMERS_VIDEO_PARTS if video else TRANSFORMERS_IMAGE_PARTS)
    return LoadedSam(model, processor, device, dtype, f"{config.backend}:{Path(source).name or source}")


class _SharedCheckpointNotice(logging.Filter):
    """Drops transformers' warning that a `sam3_video` checkpoint instantiates a `sam3_tracker` model: that is how
    facebook/sam3 serves its tracker classes, not a mistake the user should chase."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("You are using a model of type `sam3_video` to instantiate")
                    and "sam3_tracker" in message)


logging.getLogger("transformers.configuration_utils").addFilter(_SharedCheckpointNotice())


def _processor(hf: Any, source: str, classes: SamClasses, video: bool) -> Any:
    """The family's processor around the checkpoint's own image processor (a checkpoint such as facebook/sam3
    saves the processor of another of its classes; the image settings are what matters)."""
    image_processor = hf.AutoImageProcessor.from_pretrained(source)
    if not video:
        return getattr(hf, classes.processor)(image_processor=image_processor)
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    size = image_processor.size
    video_processor = Sam2VideoVideoProcessor(size={"height": size["height"], "width": size["width"]},
                                              image_mean=image_processor.image_mean,
                                              image_std=image_processor.image_std)
    return getattr(hf, classes.video_processor)(image_processor=image_processor, video_processor=video_processor)


def _source(config: TransformersSamConfig, classes: SamClasses) -> str:
    if not config.model:
        raise ModelLoadError(f"{classes.label}: set segmenter.model to a hub id or a local checkpoint folder")
    path = Path(config.model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{classes.label} model {config.model!r}: the folder has no config.json, so it is "
                                 "not a transformers model folder")
        return str(path)
    if path.exists() or looks_like_local_path(config.model):
        raise ModelLoadError(f"{classes.label} model {config.model!r}: no such local folder")
    return config.model


def _load_error(config: TransformersSamConfig, classes: SamClasses, source: str, exc: BaseException) -> ModelLoadError:
    if Path(source).is_dir():
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else 'no detail'}"
        return ModelLoadError(f"{classes.label} model {source!r}: the folder could not be loaded ({why})")
    why = "HF_HUB_OFFLINE=1 forbids downloads" if hub_offline() else (hub_problem() or f"{type(exc).__name__}: {exc}")
    return ModelLoadError(
        f"{classes.label} model {source!r} is not in the local Hugging Face cache and could not be downloaded "
        f"({why}). Fetch it once on a connected machine ({download_hint(source)}) and set segmenter.model to that "
        "folder (`segzero infer --segmenter.model DIR`), or use --tiny for the offline test models.")


class TransformersSamSegmenter:
    """Segmenter on a transformers SAM3-tracker or EdgeTAM image model: encode once, decode per object."""

    def __init__(self, loaded: LoadedSam, multimask_output: bool = True) -> None:
        self._loaded: LoadedSam | None = loaded
        self._multimask_output = multimask_output
        self._embeddings: Any = None
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> TransformersSamSegmenter:
        segmenter = cls(load_sam(config), multimask_output=config.multimask_output)
        if classes_for(config)[0].compile:
            warm_up_segmenter(segmenter)
        return segmenter

    @property
    def name(self) -> str:
        return self._require().name

    def set_image(self, image: np.ndarray) -> None:
        """Encode an RGB uint8 H×W×3 image (the processor resizes and normalises it as the model expects)."""
        import torch

        loaded = self._require()
        inputs = loaded.processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            pixels = inputs["pixel_values"].to(loaded.device, dtype=loaded.dtype)
            self._embeddings = loaded.model.get_image_embeddings(pixels)
        self._size = (int(image.shape[0]), int(image.shape[1]))

    def segment(self, prompt: ObjectPrompt) -> SegmentOutput:
        """The box and every point as positives in one prompt; the best-scoring of the candidate masks."""
        import torch

        loaded = self._require()
        if self._embeddings is None or self._size is None:
            raise RuntimeError(f"{type(self).__name__}.segment called before set_image: encode an image first")
        inputs = prompt_inputs(loaded.processor, prompt, self._size)
        with torch.inference_mode():
            outputs = loaded.model(image_embeddings=self._embeddings, multimask_output=self._multimask_output,
                                   **{key: value.to(loaded.device) for key, value in inputs.items()})
        masks = loaded.processor.post_process_masks(outputs.pred_masks.float().cpu(), [list(self._size)])[0][0]
        return select_best_mask(masks.numpy(), outputs.iou_scores[0, 0].float().cpu().numpy())

    def forget_image(self) -> None:
        """Drop the encoded image (segment then needs a new set_image)."""
        self._embeddings, self._size = None, None

    def close(self) -> None:
        """Drop the model and the image's features; on CUDA also return cached blocks to the driver."""
        if self._loaded is None:
            return
        self._loaded, self._embeddings = None, None
        release_torch_memory()

    def _require(self) -> LoadedSam:
        if self._loaded is None:
            raise RuntimeError("segmenter is closed")
        return self._loaded


def prompt_lists(prompt: ObjectPrompt) -> dict[str, Any]:
    """One object as transformers' SAM processors take it (original-image pixels): its box, and its points as
    positives when it has any (nested as image, object, point)."""
    if not prompt.points:
        return {"input_boxes": [[prompt.box.as_list()]]}
    return {"input_boxes": [[prompt.box.as_list()]], "input_points": [[[p.as_list() for p in prompt.points]]],
            "input_labels": [[[1] * len(prompt.points)]]}


def prompt_inputs(processor: Any, prompt: ObjectPrompt, size: tuple[int, int]) -> dict[str, Any]:
    """The processor's tensors for one object (coordinates normalised to the model's input size)."""
    encoded = processor(original_sizes=[list(size)], return_tensors="pt", **prompt_lists(prompt))
    return {key: encoded[key] for key in ("input_boxes", "input_points", "input_labels") if key in encoded}
