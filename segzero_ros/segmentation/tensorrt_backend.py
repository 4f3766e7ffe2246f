"""SAM2 through TensorRT 10+ on the robot's GPU: engines built from the exported ONNX graphs, cached.

Select it with `segmenter.backend: tensorrt`. The first start builds two engines (encoder, decoder) from
the graphs in `segmenter.onnx_dir` (minutes; `segzero build-engine` does it ahead of time) and caches them
under `segmenter.engine_cache_dir`, keyed by graph hash + precision + GPU name and compute capability +
TensorRT version, so a different GPU or TensorRT never loads a stale engine. A timing cache per GPU and
TensorRT version makes rebuilds fast.

Precision: TensorRT 10.12 deprecated (and 11 removed) the FP16 builder flag in favour of strongly typed
networks, so precision comes from the graph: fp16 engines are built, strongly typed, from the fp16 ONNX
(fp16 inside, float32 I/O), fp32 engines from the fp32 ONNX. Both work from TensorRT 10.0 to 11.

Runtime: named I/O tensors, set_input_shape for the dynamic number of prompt points, execute_async_v3 on
a CUDA stream; device memory comes from torch's CUDA allocator, and the encoder's outputs stay on the GPU
as the decoder's inputs. Pre/post-processing is the numpy code shared with the onnxruntime backend.

This module imports tensorrt and torch only when an engine is built or loaded; without them (or without
a GPU) `from_config` raises one BackendUnavailableError saying what is missing. It cannot run on our
development machines (no GPU, TensorRT not installable there); what it consumes, the ONNX graphs, is
checked there instead (segzero_ros.export.graph_check).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from segzero_ros.config import SegmenterConfig, TensorRTSegmenterConfig, widen
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.files import write_atomically
from segzero_ros.segmentation.graph_runtime import Sam2GraphSegmenter, require_onnx_dir
from segzero_ros.segmentation.manifest import (
    DECODER,
    DECODER_OUTPUTS,
    ENCODER,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    GraphSpec,
    Sam2OnnxManifest,
    load_manifest,
)

LOG = logging.getLogger(__name__)

ENGINE_FORMAT_VERSION = 1
"""Part of every engine's cache key: bump when build settings change what an engine computes."""
MAX_PROMPT_POINTS = 16
"""Optimisation profile upper bound for the decoder's points, box corners included (so 14 clicks)."""
OPT_PROMPT_POINTS = 4
"""The profile's optimum: Seg-Zero's prompt is one box (2 corners) + 2 points."""
DYNAMIC_DIMENSION_RANGES = {
    "num_points": (1, OPT_PROMPT_POINTS, MAX_PROMPT_POINTS),
    "memory_frames": (1, 7, 16),    # tracking: the prompted frame + 6 recent (sam2's num_maskmem = 7) is typical
    "object_pointers": (1, 16, 16),  # tracking: sam2 reads up to 16 object pointers
}
"""(min, opt, max) of each named dynamic dimension; "k*name" (k × a named one) is scaled from these."""
INSTALL_HINT = ("install TensorRT 10+ for Python (x86: pip install tensorrt; Jetson: JetPack's python3-libnvinfer), "
                "or use segmenter.backend 'onnxruntime' or 'sam2'")

Report = Callable[[str], None]
"""Called with a line of news for the person waiting (what is being built, where it went)."""


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or one BackendUnavailableError naming what to install."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendUnavailableError(f"segmenter backend 'tensorrt': the tensorrt package is not importable "
                                      f"({error}); {INSTALL_HINT}") from error
    major = int(str(trt.__version__).split(".")[0])
    if major < 10 or not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise BackendUnavailableError(f"segmenter backend 'tensorrt' needs TensorRT 10 or newer (strongly typed "
                                      f"networks, named I/O tensors); found {trt.__version__}. {INSTALL_HINT}")
    return trt  # type: ignore[no-any-return]


def cuda_device_index(device: str) -> int:
    """segmenter.device → CUDA device index; no torch CUDA or no GPU is a BackendUnavailableError."""
    if device == "cpu":
        raise BackendUnavailableError("segmenter backend 'tensorrt' runs on a CUDA GPU, but segmenter.device is "
                                      "'cpu'; use device 'auto'/'cuda:N', or backend 'onnxruntime' on the CPU")
    try:
        import torch
    except ImportError as error:
        raise BackendUnavailableError("segmenter backend 'tensorrt' uses torch's CUDA allocator and streams; "
                                      "install a CUDA build of torch") from error
    if not torch.cuda.is_available():
        raise BackendUnavailableError("segmenter backend 'tensorrt' needs an NVIDIA GPU, and torch sees none "
                                      "(no GPU, no driver, or a CPU-only torch); use backend 'onnxruntime' or 'sam2'")
    if device in ("auto", "cuda"):
        return int(torch.cuda.current_device())
    match = re.fullmatch(r"cuda:(\d+)", device)
    if match is None:
        raise ModelLoadError(f"unknown segmenter device {device!r}: use auto, cuda or cuda:N")
    index = int(match.group(1))
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(f"segmenter device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    return index


@dataclass(frozen=True)
class GpuIdentity:
    """What an engine is only valid for."""

    name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str

    @property
    def slug(self) -> str:
        name = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        major, minor = self.compute_capability
        return f"{name}-sm{major}{minor}-trt{self.tensorrt_version}"


def gpu_identity(device_index: int, tensorrt_version: str) -> GpuIdentity:
    import torch

    properties = torch.cuda.get_device_properties(device_index)
    return GpuIdentity(name=str(properties.name), compute_capability=(int(properties.major), int(properties.minor)),
                       tensorrt_version=tensorrt_version)


def resolve_precision(precision: str) -> str:
    """TensorRT defaults to fp16: what a robot's GPU is for."""
    if precision == "auto":
        return "fp16"
    if precision not in ("fp32", "fp16"):
        hint = " (int8 is an onnxruntime CPU-provider precision)" if precision == "int8" else ""
        raise ModelLoadError(f"segmenter.precision for tensorrt must be auto, fp32 or fp16, got {precision!r}{hint}")
    return precision


ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def profile_shapes(graph: GraphSpec) -> dict[str, ShapeRange]:
    """(min, opt, max) shapes for every input with a dynamic dimension, from the manifest's symbolic names."""
    shapes = {}
    for tensor in graph.inputs:
        if all(isinstance(dim, int) for dim in tensor.shape):
            continue
        bounds = []
        for dim in tensor.shape:
            if isinstance(dim, int):
                bounds.append((dim, dim, dim))
            elif (scaled := _dimension_range(dim)) is not None:
                bounds.append(scaled)
            else:
                raise ModelLoadError(f"{graph.file}: input {tensor.name} has a dynamic dimension {dim!r} with no "
                                     f"known range; re-export the graphs with this version of segzero")
        smallest, optimum, largest = (tuple(bound[i] for bound in bounds) for i in range(3))
        shapes[tensor.name] = (smallest, optimum, largest)
    return shapes


def _dimension_range(dim: str) -> tuple[int, int, int] | None:
    """The range of a named dimension or of "k*name" (the exporter's name for k × name), else None."""
    factor, _, name = dim.rpartition("*")
    if name not in DYNAMIC_DIMENSION_RANGES or (factor and not factor.isdigit()):
        return None
    scale = int(factor) if factor else 1
    low, optimum, high = DYNAMIC_DIMENSION_RANGES[name]
    return low * scale, optimum * scale, high * scale


def engine_for(graph: GraphSpec, folder: Path, cache: Path, *, precision: str, gpu: GpuIdentity, prefix: str,
               report: Report, checkpoint: str = "") -> Path:
    """The cached engine of one exported graph, built (minutes, once per GPU and TensorRT version) if missing."""
    trt = import_tensorrt()
    key = engine_cache_key(graph, precision, gpu)
    engine_path = cache / f"{prefix}-{precision}-{key[:20]}.engine"
    if engine_path.is_file():
        report(f"{prefix}: cached engine {engine_path}")
        return engine_path
    report(f"{prefix}: building a {precision} TensorRT engine from {graph.file} for {gpu.slug}; this takes "
             f"minutes, once")
    _build_engine(trt, folder / graph.file, engine_path, graph=graph,
                  timing_cache_path=cache / f"timing-{gpu.slug}.cache", report=report)
    write_atomically(engine_path.with_suffix(".json"), json.dumps({
        "onnx": str(folder / graph.file), "graph_sha256": graph.sha256, "precision": precision,
        "gpu": gpu.name, "compute_capability": list(gpu.compute_capability),
        "tensorrt": gpu.tensorrt_version, "checkpoint": checkpoint,
        "profiles": {n: [list(s) for s in p] for n, p in profile_shapes(graph).items()},
    }, indent=2).encode())
    report(f"{prefix}: wrote {engine_path}")
    return engine_path


def engine_cache_key(graph: GraphSpec, precision: str, gpu: GpuIdentity) -> str:
    """Hash of everything an engine depends on: the graph bytes, precision, profiles, GPU and TensorRT."""
    fields = {
        "engine_format": ENGINE_FORMAT_VERSION, "graph_sha256": graph.sha256, "precision": precision,
        "profiles": {name: [list(s) for s in shapes] for name, shapes in profile_shapes(graph).items()},
        "gpu": gpu.name, "compute_capability": list(gpu.compute_capability), "tensorrt": gpu.tensorrt_version,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def default_engine_cache_dir() -> Path:
    from segzero_ros.files import default_cache_root

    return default_cache_root() / "tensorrt"


def build_engines(onnx_dir: Path | str, cache_dir: Path | str | None = None, precision: str = "fp16",
                  device: str = "auto", report: Report = LOG.info) -> dict[str, Path]:
    """Engine files for the encoder and decoder of an export, building (and caching) what is missing."""
    trt = import_tensorrt()
    device_index = cuda_device_index(device)
    folder = Path(onnx_dir).expanduser()
    manifest = load_manifest(folder)
    if precision not in manifest.graphs:
        raise ModelLoadError(f"{folder} has no {precision} graphs: export them (`segzero export-sam2 --fp16`), or "
                             "build through segzero_ros.backends.build_segmenter, which converts the fp32 ones")
    cache = Path(cache_dir).expanduser() if cache_dir else default_engine_cache_dir()  # "" from ROS params = unset
    cache.mkdir(parents=True, exist_ok=True)
    import torch

    with torch.cuda.device(device_index):
        gpu = gpu_identity(device_index, str(trt.__version__))
        return {role: engine_for(manifest.graph(precision, role), folder, cache, precision=precision, gpu=gpu,
                                 prefix=f"sam2-{role}", report=report, checkpoint=manifest.model.checkpoint)
                for role in (ENCODER, DECODER)}


def _build_engine(trt: Any, onnx_path: Path, engine_path: Path, *, graph: GraphSpec, timing_cache_path: Path,
                  report: Report) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so external weights are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    shapes = profile_shapes(graph)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (smallest, optimum, largest) in shapes.items():
            profile.set_shape(name, smallest, optimum, largest)
        config.add_optimization_profile(profile)
    timing_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(timing_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt, report)
    if hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    write_atomically(engine_path, bytes(memoryview(serialized)))
    write_atomically(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))


def _progress_monitor(trt: Any, report: Report) -> Any:
    """Top-level builder phases as progress lines (TensorRT calls this from its own threads)."""

    class BuildProgress(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                report(f"  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            del phase_name

    return BuildProgress()


class EngineRunner:
    """One deserialized engine + execution context, run with named tensors on torch CUDA memory."""

    def __init__(self, trt: Any, runtime: Any, engine_path: Path, device: Any) -> None:
        import torch

        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise ModelLoadError(f"TensorRT could not load {engine_path} (built by another TensorRT version or for "
                                 f"another GPU?); delete it to rebuild")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._device = device
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}

    def run(self, inputs: Mapping[str, Any], stream: Any) -> dict[str, Any]:
        """Enqueue one inference on `stream`; the returned output tensors are valid once it is done."""
        import torch

        for name in self.inputs:
            tensor = inputs[name]
            if tensor.dtype != self.dtypes[name] or not tensor.is_contiguous():
                raise TypeError(f"TensorRT input {name} must be contiguous {self.dtypes[name]}, got {tensor.dtype}")
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self._device)
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return outputs

    def close(self) -> None:
        self._context = None
        self._engine = None


class TensorRTSegmenter(Sam2GraphSegmenter):
    """Segmenter over a TensorRT encoder engine and decoder engine on one GPU."""

    def __init__(self, engines: Mapping[str, Path], manifest: Sam2OnnxManifest, name: str, device_index: int,
                 multimask_output: bool = True) -> None:
        """Load built engines; most callers want `from_config`."""
        super().__init__(manifest, name=name, multimask_output=multimask_output)
        trt = import_tensorrt()
        import torch

        self._device = torch.device("cuda", device_index)
        with torch.cuda.device(self._device):
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._encoder = EngineRunner(trt, self._runtime, engines[ENCODER], self._device)
            self._decoder = EngineRunner(trt, self._runtime, engines[DECODER], self._device)
            self._stream: Any = torch.cuda.Stream(device=self._device)  # type: ignore[no-untyped-call]
            # The base class resizes images straight into this page-locked buffer, so the upload is one DMA.
            self._pixels_host: Any = torch.empty(self._pixels.shape, dtype=torch.float32).pin_memory()
            self._pixels = self._pixels_host.numpy()
        self._features: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> TensorRTSegmenter:
        config = widen(config, TensorRTSegmenterConfig)
        import_tensorrt()
        device_index = cuda_device_index(config.device)
        precision = resolve_precision(config.precision)
        onnx_dir = require_onnx_dir(config)
        engines = build_engines(onnx_dir, config.engine_cache_dir, precision=precision, device=f"cuda:{device_index}",
                                report=LOG.warning)
        manifest = load_manifest(onnx_dir)
        name = f"tensorrt:{manifest.model.checkpoint}:{precision}"
        return cls(engines, manifest, name=name, device_index=device_index, multimask_output=config.multimask_output)

    def _encode(self, pixels: np.ndarray) -> None:
        import torch

        self._features = {}
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            image = self._pixels_host.to(self._device, non_blocking=True)
            outputs = self._encoder.run({ENCODER_INPUTS[0]: image}, self._stream)
            self._stream.synchronize()  # the pinned buffer is rewritten by the next set_image
        self._features = {name: outputs[name] for name in ENCODER_OUTPUTS}

    def _decode(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            inputs = dict(self._features)
            inputs["point_coords"] = torch.from_numpy(np.ascontiguousarray(coords, np.float32)).to(self._device)
            inputs["point_labels"] = torch.from_numpy(np.ascontiguousarray(labels, np.int32)).to(self._device)
            outputs = self._decoder.run(inputs, self._stream)
            masks, scores = (outputs[name].float().cpu() for name in DECODER_OUTPUTS)  # .cpu() waits for the stream
        return masks.numpy(), scores.numpy()

    def _release(self) -> None:
        import torch

        self._features = {}
        self._encoder.close()
        self._decoder.close()
        self._runtime = None
        self._pixels = np.empty((0,), dtype=np.float32)  # the last view of the page-locked buffer
        self._pixels_host = None
        self._stream = None
        torch.cuda.empty_cache()
