"""Export a SAM2 model to the two ONNX graphs (+ optional fp16 copies) and the manifest beside them.

Uses torch.onnx's dynamo exporter: its graphs come out static-shaped and free of the shape arithmetic the
TorchScript exporter leaves behind (Shape/Gather/OneHot chains), which keeps TensorRT's parser on its
well-trodden path. The exporter emits opset 18 natively (its down-conversion to 17 fails on these graphs).

Needs torch, sam2, onnx and onnxscript (fp16 also onnxruntime); the runtimes need none of these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.config import ExportedGraphsConfig, Sam2WeightsConfig, SegmenterConfig, widen
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.export.graph_check import check_exported_graph
from segzero_ros.files import build_folder_atomically
from segzero_ros.segmentation.manifest import (
    DECODER,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    MANIFEST_FILENAME,
    MANIFEST_VERSION,
    GraphSpec,
    Sam2ModelInfo,
    Sam2OnnxManifest,
    TensorSpec,
    load_manifest,
    sha256_of_file,
)
from segzero_ros.segmentation.processing import IMAGE_MEAN, IMAGE_STD

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 18
GRAPH_FILES = {
    "fp32": {ENCODER: "encoder.onnx", DECODER: "decoder.onnx"},
    "fp16": {ENCODER: "encoder.fp16.onnx", DECODER: "decoder.fp16.onnx"},
}
EXPORT_MAX_POINTS = 1024
"""Upper bound torch.export may assume for the dynamic number of prompt points (box corners included)."""
CACHE_SUBFOLDER = "sam2-onnx"

Report = Callable[[str], None]
"""Called with a line of news for the person waiting (what is being built, where it went)."""


def _silent(message: str) -> None:
    del message


@dataclass(frozen=True)
class Sam2Source:
    """A loaded SAM2 model plus what identifies it in the manifest."""

    model: Any
    """sam2.modeling.sam2_base.SAM2Base in eval mode on the CPU, float32."""
    config: str
    checkpoint: str
    checkpoint_sha256: str


def resolve_checkpoint(config: SegmenterConfig) -> tuple[str, Path]:
    """(sam2 config name, checkpoint file) for a SAM2 config, with the sam2 backend's own rules and errors."""
    from segzero_ros.segmentation.sam2_backend import _hub_files, _local_files

    sam2 = widen(config, Sam2WeightsConfig)
    return _local_files(sam2) if sam2.checkpoint is not None else _hub_files(sam2)


def load_sam2_source(config: SegmenterConfig, report: Report = _silent,
                     checkpoint_sha256: str | None = None) -> Sam2Source:
    """Build the SAM2 model a SAM2 config names, on the CPU (export traces in float32)."""
    config = widen(config, Sam2WeightsConfig)
    _require_module("torch", "export-sam2 needs torch and sam2 (pip install 'segzero_ros[infer,export]')")
    _require_module("sam2", "export-sam2 needs the sam2 package (pip install 'segzero_ros[infer,export]')")
    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter

    config_name, checkpoint = resolve_checkpoint(config)
    if checkpoint_sha256 is None:
        report(f"hashing checkpoint {checkpoint} ...")
        checkpoint_sha256 = sha256_of_file(checkpoint)
    report(f"loading SAM2 {config_name} ...")
    segmenter = Sam2Segmenter.from_config(dataclasses.replace(config, backend="sam2", device="cpu"))
    model = segmenter._predictor.model  # the predictor's SAM2Base; Sam2Segmenter exposes no public handle
    model.eval()
    return Sam2Source(model=model, config=config_name, checkpoint=config.source,
                      checkpoint_sha256=checkpoint_sha256)


def export_sam2_onnx(source: Sam2Source, out_dir: Path, *, fp16: bool = False, opset: int = DEFAULT_OPSET,
                     report: Report = _silent) -> Sam2OnnxManifest:
    """Write encoder.onnx + decoder.onnx (and the fp16 pair) into out_dir, check them, then the manifest.

    The manifest is removed first and written last: a folder with a manifest always holds the graphs it
    describes, even if an export is interrupted.
    """
    from segzero_ros.export.wrappers import (
        Sam2ImageEncoderGraph,
        Sam2PromptDecoderGraph,
        frozen_position_embedding,
    )

    model = source.model
    decoder_settings = model.sam_mask_decoder
    info = Sam2ModelInfo(
        config=source.config, checkpoint=source.checkpoint, checkpoint_sha256=source.checkpoint_sha256,
        image_size=int(model.image_size), mask_threshold=0.0,
        dynamic_multimask_via_stability=bool(decoder_settings.dynamic_multimask_via_stability),
        dynamic_multimask_stability_delta=float(decoder_settings.dynamic_multimask_stability_delta),
        dynamic_multimask_stability_thresh=float(decoder_settings.dynamic_multimask_stability_thresh),
    )
    return write_export(Sam2ImageEncoderGraph(model).eval(), Sam2PromptDecoderGraph(model).eval(), info, out_dir,
                        mean=IMAGE_MEAN, std=IMAGE_STD, packages=("sam2", "torch", "onnx", "onnxscript"), fp16=fp16,
                        opset=opset, report=report, tracing=lambda: frozen_position_embedding(model))


def write_export(encoder: Any, decoder: Any, info: Sam2ModelInfo, out_dir: Path, *, mean: Sequence[float],
                 std: Sequence[float], packages: Sequence[str], fp16: bool = False, opset: int = DEFAULT_OPSET,
                 report: Report = _silent, tracing: Any = contextlib.nullcontext) -> Sam2OnnxManifest:
    """Export an encoder and a decoder module of the graph contract (see wrappers.py), check both, write the
    manifest last. `tracing` gives a context the encoder is traced in (e.g. a frozen position embedding)."""
    import onnx
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILENAME).unlink(missing_ok=True)
    size = info.image_size
    image = torch.rand(1, 3, size, size) * 255.0
    with torch.no_grad():
        features = encoder(image)
    coords = torch.tensor([[[0.1 * size, 0.2 * size], [0.8 * size, 0.9 * size], [0.5 * size, 0.5 * size]]])
    labels = torch.tensor([[2, 3, 1]], dtype=torch.int32)

    encoder_path = out_dir / GRAPH_FILES["fp32"][ENCODER]
    decoder_path = out_dir / GRAPH_FILES["fp32"][DECODER]
    with _step(report, f"exporting image encoder ({size}×{size} input, opset {opset})"), tracing():
        _export(encoder, (image,), encoder_path, input_names=ENCODER_INPUTS, output_names=ENCODER_OUTPUTS,
                opset=opset, dynamic_shapes=None)
    num_points = torch.export.Dim("num_points", min=1, max=EXPORT_MAX_POINTS)
    dynamic: dict[str, Any] = {name: None for name in ENCODER_OUTPUTS}
    dynamic.update(point_coords={1: num_points}, point_labels={1: num_points})
    with _step(report, "exporting prompt encoder + mask decoder (dynamic number of points)"):
        _export(decoder, (*features, coords, labels), decoder_path, input_names=DECODER_INPUTS,
                output_names=DECODER_OUTPUTS, opset=opset, dynamic_shapes=dynamic)
    graphs: dict[str, dict[str, GraphSpec]] = {}
    with _step(report, "checking fp32 graphs (onnx.checker, strict shape inference, TensorRT allow-list)"):
        graphs["fp32"] = {role: _checked_spec(out_dir / name) for role, name in GRAPH_FILES["fp32"].items()}
    manifest = Sam2OnnxManifest(
        model=info,
        opset=_opset_of(encoder_path, onnx),
        graphs=graphs,
        versions=_versions(*packages),
        preprocessing={
            "encoder_input": f"RGB float32 1x3x{size}x{size}, values 0..255, resized with antialiased bilinear "
                             "(torchvision Resize on tensors); /255 and mean/std normalisation happen in the graph",
            "mean": list(mean), "std": list(std),
            "point_coords": f"x/W*{size}, y/H*{size} of original-image pixels; box as two corners first",
            "point_labels": "int32: 1 positive, 0 negative, 2 box top-left, 3 box bottom-right",
            "masks": "logits of all 4 mask tokens (0 = single-mask output, 1-3 = multimask outputs); "
                     "resize bilinear (half-pixel, no antialias) to HxW and threshold at mask_threshold",
        },
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    if fp16:
        manifest = _add_fp16(out_dir, manifest, report)
    manifest.save(out_dir)
    report(f"wrote {out_dir / MANIFEST_FILENAME}")
    return manifest


def export_transformers_sam_onnx(config: SegmenterConfig, out_dir: Path, *, fp16: bool = False,
                                 opset: int = DEFAULT_OPSET, report: Report = _silent) -> Sam2OnnxManifest:
    """The image path of a transformers SAM3-tracker or EdgeTAM checkpoint (`segmenter.backend` sam3 or edgetam,
    `segmenter.model`) as the same two graphs as a SAM2 export, for the onnxruntime and tensorrt backends."""
    from segzero_ros.export.transformers_sam_graphs import TransformersSamDecoderGraph, TransformersSamEncoderGraph
    from segzero_ros.segmentation.transformers_sam import load_sam

    report(f"loading {config.backend} {config.model} ...")
    loaded = load_sam(dataclasses.replace(config, device="cpu"))
    model = loaded.model.float().eval()
    image_processor = loaded.processor.image_processor
    decoder_settings = model.config.mask_decoder_config
    info = Sam2ModelInfo(
        config=transformers_export_name(config), checkpoint=str(config.model),
        checkpoint_sha256=weights_sha256(str(config.model)),
        image_size=int(image_processor.size["height"]), mask_threshold=0.0,
        dynamic_multimask_via_stability=bool(decoder_settings.dynamic_multimask_via_stability),
        dynamic_multimask_stability_delta=float(decoder_settings.dynamic_multimask_stability_delta),
        dynamic_multimask_stability_thresh=float(decoder_settings.dynamic_multimask_stability_thresh),
    )
    mean, std = tuple(image_processor.image_mean), tuple(image_processor.image_std)
    return write_export(TransformersSamEncoderGraph(model, mean, std).eval(), TransformersSamDecoderGraph(model).eval(),
                        info, out_dir, mean=mean, std=std, packages=("transformers", "torch", "onnx", "onnxscript"),
                        fp16=fp16, opset=opset, report=report)


def transformers_export_name(config: SegmenterConfig) -> str:
    """What a transformers export records as its config (a SAM2 export records its sam2 config name)."""
    return f"transformers:{config.backend}"


def weights_sha256(model: str) -> str:
    """One digest over a transformers model's weight files (a local folder, or a hub id already in the local
    cache), so a re-export of the same weights is recognised; "" when they cannot be found."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True))
        except Exception:  # not cached (or not a hub id): nothing to compare against
            return ""
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weights:
        return ""
    digest = hashlib.sha256()
    for path in weights:
        digest.update(f"{path.name}:{sha256_of_file(path)}\n".encode())
    return digest.hexdigest()


def add_fp16_graphs(out_dir: Path, report: Report = _silent) -> Sam2OnnxManifest:
    """Add the fp16 pair to an existing fp32 export (no torch needed: a graph-to-graph conversion)."""
    manifest = load_manifest(out_dir)
    if "fp16" in manifest.graphs:
        return manifest
    manifest = _add_fp16(out_dir, manifest, report)
    manifest.save(out_dir)
    return manifest


def _add_fp16(out_dir: Path, manifest: Sam2OnnxManifest, report: Report) -> Sam2OnnxManifest:
    specs = {}
    for role in (ENCODER, DECODER):
        source = out_dir / manifest.graph("fp32", role).file
        target = out_dir / GRAPH_FILES["fp16"][role]
        with _step(report, f"converting {source.name} to fp16 (float32 inputs/outputs kept)"):
            convert_graph_to_fp16(source, target)
        with _step(report, f"checking {target.name}"):
            specs[role] = _checked_spec(target)
    updated = manifest.with_graphs("fp16", specs[ENCODER], specs[DECODER])
    return dataclasses.replace(updated, versions={**updated.versions, **_versions("onnxruntime")})


def convert_graph_to_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic inside, float32 at the inputs/outputs (so runtimes feed the same buffers).

    onnxruntime's converter appends its input casts at the end of the node list and keeps the fp32
    value_info of converted tensors; both are repaired here so the graph passes onnx.checker.
    """
    import onnx

    _require_module("onnxruntime", "fp16 conversion needs onnxruntime (pip install onnxruntime)")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every weight clipped to the fp16 range
        converted = convert_float_to_float16(model, keep_io_types=True)
    sort_topologically(converted.graph)
    del converted.graph.value_info[:]
    _save_atomically(converted, target)


def sort_topologically(graph: Any) -> None:
    """Reorder graph.node so every node comes after the producers of its inputs (stable otherwise)."""
    available = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        blocked = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                blocked.append(node)
        if len(blocked) == len(pending):
            missing = sorted({name for node in blocked for name in node.input if name not in available})
            raise ValueError(f"graph has a cycle or undefined inputs: {', '.join(missing[:5])}")
        pending = blocked
    del graph.node[:]
    graph.node.extend(ordered)


def export_matches(out_dir: Path, source_sha256: str, config_name: str, image_size: int | None,
                   precisions: Sequence[str]) -> bool:
    """Whether out_dir already holds this checkpoint's export with every requested precision."""
    try:
        manifest = load_manifest(out_dir)
    except ModelLoadError:
        return False
    model = manifest.model
    return (model.checkpoint_sha256 == source_sha256 and model.config == config_name
            and (image_size is None or model.image_size == image_size)
            and all(p in manifest.graphs for p in precisions)
            and all((out_dir / spec.file).is_file() for roles in manifest.graphs.values() for spec in roles.values()))


def with_exported_graphs(config: ExportedGraphsConfig) -> ExportedGraphsConfig:
    """The registry's preparation step for the graph backends (onnxruntime, tensorrt): `config` with an
    onnx_dir holding the graphs its precision reads. Unset: the configured SAM2 model is exported once into
    the cache (needs torch + sam2 here; robots usually ship an exported folder). Set without the fp16 pair
    an fp16 precision needs: the fp32 graphs are converted beside them (no torch needed)."""
    precision = config.graph_precision
    if precision not in GRAPH_FILES:
        return config  # the backend itself refuses the precision, with its own hint
    if config.onnx_dir:
        folder = Path(config.onnx_dir).expanduser()
        exported = (folder / MANIFEST_FILENAME).is_file()
        if precision == "fp16" and exported and "fp16" not in load_manifest(folder).graphs:
            LOG.warning("%s has no fp16 graphs yet: converting the fp32 ones", folder)
            add_fp16_graphs(folder, LOG.warning)
        return config
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sam2") is None:
        raise BackendUnavailableError(
            f"segmenter backend {config.backend!r} needs exported SAM2 graphs: set segmenter.onnx_dir to a folder "
            f"from `segzero export-sam2` (this machine lacks torch/sam2 to export them itself)")
    folder = ensure_onnx_export(config, precision, report=LOG.warning)  # once, but minutes for large models
    return dataclasses.replace(config, onnx_dir=str(folder))


def ensure_onnx_export(config: SegmenterConfig, precision: str, cache_root: Path | None = None,
                       report: Report = _silent) -> Path:
    """The cached export folder for the SAM2 model `config` names, exporting it on first use.

    Keyed by the checkpoint's sha256, config, image size and export format, so a changed checkpoint gets a
    fresh folder. This is what lets `segmenter.backend: onnxruntime` work by a config change alone.
    """
    config = widen(config, Sam2WeightsConfig)
    if cache_root is None:
        from segzero_ros.files import default_cache_root

        cache_root = default_cache_root()
    config_name, checkpoint = resolve_checkpoint(config)
    checkpoint_sha256 = sha256_of_file(checkpoint)
    key_fields = {"format": MANIFEST_VERSION, "checkpoint": checkpoint_sha256, "config": config_name,
                  "image_size": config.image_size, "opset": DEFAULT_OPSET}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root / CACHE_SUBFOLDER / f"{Path(config_name).stem}-{config.image_size or 'default'}px-{key}"
    wanted = ["fp32"] if precision == "fp32" else ["fp32", precision]
    if export_matches(folder, checkpoint_sha256, config_name, config.image_size, ["fp32"]):
        if precision == "fp16":
            add_fp16_graphs(folder, report)
        return folder

    def export(staging: Path) -> None:
        report(f"exporting {config_name} to ONNX once, into {folder}")
        source = load_sam2_source(config, report, checkpoint_sha256=checkpoint_sha256)
        export_sam2_onnx(source, staging, fp16="fp16" in wanted, report=report)

    # Concurrent processes never read half an export; the loser of a race simply uses the winner's folder.
    build_folder_atomically(
        folder, export, lambda built: export_matches(built, checkpoint_sha256, config_name, config.image_size, ["fp32"])
    )
    if precision == "fp16":
        add_fp16_graphs(folder, report)
    return folder


def _export(module: Any, args: tuple[Any, ...], path: Path, *, input_names: Sequence[str],
            output_names: Sequence[str], opset: int, dynamic_shapes: dict[str, Any] | None) -> None:
    import torch

    chatter = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, None, dynamo=True, opset_version=opset, input_names=list(input_names),
                output_names=list(output_names), dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
            )
    except Exception as error:
        detail = chatter.getvalue()[-2000:]
        raise RuntimeError(f"torch.onnx.export failed for {path.name}: {error}\n{detail}") from error
    assert program is not None
    _save_atomically(program.model_proto, path)


def _save_atomically(model: Any, path: Path) -> None:
    import onnx

    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        # Graphs over protobuf's 2 GB limit (none of the released SAM2 sizes) go to external data.
        large = model.ByteSize() > 2_000_000_000
        onnx.save_model(model, temporary, save_as_external_data=large,
                        location=f"{path.name}.data" if large else None)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; graphs are meant to be shared
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _checked_spec(path: Path) -> GraphSpec:
    import onnx

    report = check_exported_graph(path)
    model = onnx.load(str(path), load_external_data=False)
    outputs = []
    for value in model.graph.output:  # the inferred shapes, which the checks just proved complete
        outputs.append(dataclasses.replace(_tensor_spec(value, onnx), shape=report.output_shapes[value.name]))
    return GraphSpec(file=path.name, sha256=sha256_of_file(path),
                     inputs=tuple(_tensor_spec(value, onnx) for value in model.graph.input), outputs=tuple(outputs))


def _tensor_spec(value: Any, onnx: Any) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    shape = tuple(dim.dim_param if dim.HasField("dim_param") else int(dim.dim_value) for dim in tensor_type.shape.dim)
    return TensorSpec(name=value.name, dtype=dtype, shape=shape)


def _opset_of(path: Path, onnx: Any) -> int:
    from segzero_ros.export.graph_check import default_opset

    return default_opset(onnx.load(str(path), load_external_data=False))


def _versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[package] = importlib.metadata.version(package)
    return found


def _require_module(name: str, message: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise BackendUnavailableError(message)


@contextlib.contextmanager
def _step(report: Report, message: str) -> Iterator[None]:
    report(f"{message} ...")
    started = time.perf_counter()
    yield
    report(f"  done in {time.perf_counter() - started:.1f} s")
