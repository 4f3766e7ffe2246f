"""SAM3's concept detector as a reasoner (`reasoner.backend: sam3_concept`): no language model, the command is
the text prompt.

Sam3Model detects every instance of a noun phrase in an image (with `Sam3Processor`'s
`post_process_instance_segmentation`). Each instance scoring at least `reasoner.score_threshold` becomes an
object of the answer, in the multi-object shape VisionReasoner's answers take: its box and one positive point,
the pixel deepest inside its mask (the centre of its largest inscribed circle). None above the threshold is the
error `not_found`. The segmenter then segments each object as for any reasoner, so the result and everything
downstream (node, tracking, 3D) is the same.

When to use which: a reasoner model (Seg-Zero, VisionReasoner, a Qwen3-VL fine-tune) for commands that need
reasoning ("the thing I can cut bread with"); sam3_concept for plain noun phrases ("the red mug", "all cups")
where a 7B model is too slow or too big for the robot. With `segmenter.backend: sam3` on the same checkpoint
both hold one backbone and encode each image once (`segzero_ros.shared_backbone`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import ReasonerConfig, Sam3ConceptReasonerConfig, widen
from segzero_ros.core.geometry import Box, ObjectPrompt, Point, normalize_box
from segzero_ros.devices import release_torch_memory, resolve_torch_device
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.files import download_hint, hub_offline, hub_problem, looks_like_local_path
from segzero_ros.reasoning.base import BatchReasonerBase, ReasonerOutput
from segzero_ros.shared_backbone import share_backbone


def deepest_point(mask: np.ndarray, box: Box) -> Point:
    """The pixel of the mask inside `box` farthest from the mask's border (first in row-major order among
    equals): a positive point the segmenter can trust. The box's centre when the mask has no pixel in it."""
    import cv2

    inside = np.zeros(mask.shape, dtype=np.uint8)
    inside[box.y1:box.y2 + 1, box.x1:box.x2 + 1] = mask[box.y1:box.y2 + 1, box.x1:box.x2 + 1]
    if not inside.any():
        return Point((box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2)
    distance = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return Point(int(col), int(row))


class Sam3ConceptReasoner(BatchReasonerBase):
    def __init__(self, model: Any, processor: Any, config: Sam3ConceptReasonerConfig, device: Any, dtype: Any
                 ) -> None:
        self._model: Any = model
        self._processor = processor
        self._config, self._device, self._dtype = config, device, dtype

    @classmethod
    def from_config(cls, config: ReasonerConfig) -> Sam3ConceptReasoner:
        config = widen(config, Sam3ConceptReasonerConfig)
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendUnavailableError("the sam3_concept reasoner needs torch and transformers: pip install "
                                          "'segzero_ros[infer]'") from exc
        hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
        device = torch.device(resolve_torch_device(config.device, "reasoner"))
        dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16, "float32": torch.float32}[config.dtype]
        source = _source(config.model)
        try:
            model = hf.Sam3Model.from_pretrained(source)
            processor = hf.Sam3Processor.from_pretrained(source)
        except Exception as exc:
            raise _load_error(source, exc) from exc
        model.to(device=device, dtype=dtype).eval()
        share_backbone(model, source, device, dtype)  # with a sam3 segmenter / tracker of the same checkpoint
        return cls(model, processor, config, device, dtype)

    @property
    def name(self) -> str:
        return f"sam3_concept:{Path(self._config.model).name or self._config.model}"

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        return [self._detect(image, command) for image, command in zip(images, commands, strict=True)]

    def instances(self, image: np.ndarray, command: str) -> dict[str, Any]:
        """Sam3Model's instances of `command` on `image` above the threshold (scores, boxes, masks; best first)."""
        import torch

        if self._model is None:
            raise RuntimeError("reasoner is closed")
        height, width = int(image.shape[0]), int(image.shape[1])
        inputs = self._processor(images=image, text=command.strip(), return_tensors="pt")
        with torch.inference_mode():
            outputs = self._model(**{key: value.to(self._device, dtype=self._dtype) if value.is_floating_point()
                                     else value.to(self._device) for key, value in inputs.items()
                                     if key != "original_sizes"})
        found: dict[str, Any] = self._processor.post_process_instance_segmentation(
            outputs, threshold=self._config.score_threshold, mask_threshold=0.5, target_sizes=[[height, width]])[0]
        order = torch.argsort(found["scores"].float(), descending=True)[: self._config.max_objects]
        return {key: value[order] for key, value in found.items()}

    def _detect(self, image: np.ndarray, command: str) -> ReasonerOutput:
        started = time.perf_counter()
        size = (int(image.shape[1]), int(image.shape[0]))
        found = self.instances(image, command)
        objects, listed = [], []
        for score, box_values, mask in zip(found["scores"].tolist(), found["boxes"].tolist(), found["masks"],
                                           strict=True):
            box = normalize_box(Box(*(round(value) for value in box_values)), size)
            point = deepest_point(mask.cpu().numpy(), box)
            objects.append(ObjectPrompt(box, (point,)))
            listed.append({"bbox_2d": box.as_list(), "point_2d": point.as_list(), "score": round(float(score), 4)})
        reasoning = (f"SAM3 concept {command.strip()!r}: {len(objects)} instance(s) scoring at least "
                     f"{self._config.score_threshold:g}")
        return ReasonerOutput(raw_output=f"<think>{reasoning}</think><answer>{json.dumps(listed)}</answer>",
                              reasoning=reasoning, objects=tuple(objects), error=None,
                              generate_s=time.perf_counter() - started)

    def close(self) -> None:
        if self._model is None:
            return
        self._model = None
        release_torch_memory()


def _source(model: str) -> str:
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or looks_like_local_path(model):
        raise ModelLoadError(f"SAM3 model {model!r}: no such local folder")
    return model


def _load_error(source: str, exc: BaseException) -> ModelLoadError:
    if Path(source).is_dir():
        return ModelLoadError(f"SAM3 model {source!r}: the folder could not be loaded ({type(exc).__name__}: {exc})")
    why = "HF_HUB_OFFLINE=1 forbids downloads" if hub_offline() else (hub_problem() or f"{type(exc).__name__}: {exc}")
    return ModelLoadError(f"SAM3 model {source!r} is not in the local Hugging Face cache and could not be downloaded "
                          f"({why}). Fetch it once on a connected machine ({download_hint(source)}) and set "
                          "reasoner.model to that folder.")
