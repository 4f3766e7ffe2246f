"""The manifest written beside exported SAM2 graphs: what was exported, from what, and how to feed it.

Runtimes read everything they need from here (image size, tensor names and shapes, the decoder's mask
selection settings), so a folder of graphs is self-describing and an engine cache can key on graph hashes
without re-reading gigabytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero_ros.errors import ModelLoadError
from segzero_ros.files import write_atomically

MANIFEST_FILENAME = "sam2_onnx.json"
MANIFEST_FORMAT = "segzero-sam2-onnx"
MANIFEST_VERSION = 1
"""Bump when graph inputs/outputs or their meaning change; runtimes refuse other versions."""

ENCODER = "encoder"
DECODER = "decoder"
PRECISIONS = ("fp32", "fp16")
ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
"""The decoder takes these under the same names, so a runtime can hand them over without copies."""
DECODER_INPUTS = (*ENCODER_OUTPUTS, "point_coords", "point_labels")
DECODER_OUTPUTS = ("masks", "iou_predictions")

EXPORT_HINT = (
    "Export the graphs with `segzero export-sam2 --config CONFIG.yaml --checkpoint CHECKPOINT.pt --out DIR` "
    "(or --tiny for the offline test model) and set segmenter.onnx_dir to DIR"
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    """numpy dtype name of the graph's I/O tensor ("float32", "int32")."""
    shape: tuple[int | str, ...]
    """Fixed sizes as ints; a dynamic dimension by its symbolic name (e.g. "num_points")."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TensorSpec:
        return cls(name=str(values["name"]), dtype=str(values["dtype"]),
                   shape=tuple(d if isinstance(d, str) else int(d) for d in values["shape"]))


@dataclass(frozen=True)
class GraphSpec:
    file: str
    """File name relative to the manifest's folder."""
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, self.file)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, self.file)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GraphSpec:
        return cls(file=str(values["file"]), sha256=str(values["sha256"]),
                   inputs=tuple(TensorSpec.from_dict(t) for t in values["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(t) for t in values["outputs"]))


def _by_name(tensors: tuple[TensorSpec, ...], name: str, file: str) -> TensorSpec:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise KeyError(f"{file} has no tensor {name!r}; it has {', '.join(t.name for t in tensors)}")


@dataclass(frozen=True)
class Sam2ModelInfo:
    config: str
    """sam2 package config the model was built from (e.g. configs/sam2.1/sam2.1_hiera_l.yaml)."""
    checkpoint: str
    """The checkpoint as it was named at export time (path or Hugging Face id)."""
    checkpoint_sha256: str
    image_size: int
    """Encoder input side S: the image is resized to S×S; low-res masks are S/4 × S/4."""
    mask_threshold: float = 0.0
    dynamic_multimask_via_stability: bool = False
    """With multimask_output off, SAM2 falls back to the best multimask output when the single mask is
    unstable; these three fields carry the decoder's settings for that choice (made in numpy)."""
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    @property
    def low_res_size(self) -> int:
        return self.image_size // 4


@dataclass(frozen=True)
class Sam2TrackingInfo:
    """The tracking graphs of an export (`segzero export-sam2 --tracking`): SAM2's memory, for the
    onnxruntime / tensorrt trackers. The image encoder is the export's own fp32 encoder."""

    graphs: Mapping[str, GraphSpec]
    """role (memory_attention, prompted_heads, tracking_heads, prompted_memory, memory) → graph."""
    constants: str
    """.npz beside the manifest: the model's constant tensors the trackers combine in numpy."""
    settings: Mapping[str, Any]
    """sam2's memory settings the graphs were exported for (num_maskmem, max_obj_ptrs_in_encoder, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return {"graphs": {role: spec.to_dict() for role, spec in self.graphs.items()}, "constants": self.constants,
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Sam2TrackingInfo:
        return cls(graphs={str(role): GraphSpec.from_dict(spec) for role, spec in values["graphs"].items()},
                   constants=str(values["constants"]), settings=dict(values["settings"]))


@dataclass(frozen=True)
class Sam2OnnxManifest:
    model: Sam2ModelInfo
    opset: int
    graphs: Mapping[str, Mapping[str, GraphSpec]]
    """precision ("fp32"/"fp16") → role ("encoder"/"decoder") → graph."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """Library versions at export time (sam2, torch, onnx, onnxruntime), for bug reports."""
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    tracking: Sam2TrackingInfo | None = None
    """Present when the export includes the tracking graphs."""

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in PRECISIONS if p in self.graphs)

    def graph(self, precision: str, role: str) -> GraphSpec:
        if precision not in self.graphs:
            raise ModelLoadError(f"no {precision} SAM2 graphs in this export (it has: "
                                 f"{', '.join(self.precisions) or 'none'}); re-export with --fp16 or use another "
                                 f"segmenter.precision")
        return self.graphs[precision][role]

    def with_graphs(self, precision: str, encoder: GraphSpec, decoder: GraphSpec) -> Sam2OnnxManifest:
        graphs = {p: dict(g) for p, g in self.graphs.items()}
        graphs[precision] = {ENCODER: encoder, DECODER: decoder}
        return Sam2OnnxManifest(model=self.model, opset=self.opset, graphs=graphs, versions=self.versions,
                                preprocessing=self.preprocessing, created=self.created, tracking=self.tracking)

    def to_dict(self) -> dict[str, Any]:
        model = self.model
        tracking = {} if self.tracking is None else {"tracking": self.tracking.to_dict()}
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "created": self.created,
            "model": {
                "config": model.config, "checkpoint": model.checkpoint,
                "checkpoint_sha256": model.checkpoint_sha256, "image_size": model.image_size,
                "low_res_size": model.low_res_size, "mask_threshold": model.mask_threshold,
                "dynamic_multimask_via_stability": model.dynamic_multimask_via_stability,
                "dynamic_multimask_stability_delta": model.dynamic_multimask_stability_delta,
                "dynamic_multimask_stability_thresh": model.dynamic_multimask_stability_thresh,
            },
            "opset": self.opset,
            "preprocessing": dict(self.preprocessing),
            "versions": dict(self.versions),
            "graphs": {p: {role: spec.to_dict() for role, spec in roles.items()} for p, roles in self.graphs.items()},
            **tracking,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Sam2OnnxManifest:
        if values.get("format") != MANIFEST_FORMAT or values.get("format_version") != MANIFEST_VERSION:
            raise ValueError(f"not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest (format "
                             f"{values.get('format')!r} v{values.get('format_version')!r}); re-export the graphs")
        model = values["model"]
        info = Sam2ModelInfo(
            config=str(model["config"]), checkpoint=str(model["checkpoint"]),
            checkpoint_sha256=str(model["checkpoint_sha256"]), image_size=int(model["image_size"]),
            mask_threshold=float(model["mask_threshold"]),
            dynamic_multimask_via_stability=bool(model["dynamic_multimask_via_stability"]),
            dynamic_multimask_stability_delta=float(model["dynamic_multimask_stability_delta"]),
            dynamic_multimask_stability_thresh=float(model["dynamic_multimask_stability_thresh"]),
        )
        graphs = {str(p): {str(role): GraphSpec.from_dict(spec) for role, spec in roles.items()}
                  for p, roles in values["graphs"].items()}
        return cls(model=info, opset=int(values["opset"]), graphs=graphs,
                   versions={str(k): str(v) for k, v in values.get("versions", {}).items()},
                   preprocessing=dict(values.get("preprocessing", {})), created=str(values.get("created", "")),
                   tracking=Sam2TrackingInfo.from_dict(values["tracking"]) if "tracking" in values else None)

    def save(self, directory: Path) -> Path:
        """Write atomically, so a reader never sees half a manifest."""
        path = directory / MANIFEST_FILENAME
        write_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def load_manifest(directory: Path | str) -> Sam2OnnxManifest:
    """Read DIR/sam2_onnx.json; a missing or foreign manifest is a ModelLoadError that says how to export."""
    path = Path(directory).expanduser() / MANIFEST_FILENAME
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"no SAM2 ONNX export at {path.parent} ({MANIFEST_FILENAME} missing). "
                             f"{EXPORT_HINT}") from error
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}. {EXPORT_HINT}") from error
    try:
        return Sam2OnnxManifest.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelLoadError(f"{path} is not a usable SAM2 export manifest: {error}. {EXPORT_HINT}") from error


def sha256_of_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
