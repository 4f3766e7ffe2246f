"""SAM2 through onnxruntime: the exported encoder + decoder graphs on the CPU or CUDA execution provider.

Select it with `segmenter.backend: onnxruntime`. With `segmenter.onnx_dir` unset, the configured SAM2
checkpoint is exported once into the cache (needs torch + sam2); on a robot point onnx_dir at a folder
made by `segzero export-sam2`. Pre/post-processing is shared with the TensorRT backend
(segzero_ros.segmentation.processing), so both match SAM2ImagePredictor.

The encoder's outputs stay inside onnxruntime (OrtValues, on the GPU with the CUDA provider) and are bound
straight into the decoder, so repeated `segment` calls on one image copy only the prompt in and the
small low-res masks out.

On the CPU provider (fp32) the encoder is loaded through a CPU-only rewrite (segzero_ros.segmentation.cpu_graph:
fused GELU and long-sequence attention, onnxruntime contrib operators), made in memory at load time; the
graph files on disk, which TensorRT also reads, stay plain ONNX. `segmenter.precision: int8` (CPU only)
runs that rewritten encoder with int8 weights, derived once into the cache (segzero_ros.segmentation.cpu_int8):
about twice as fast on a CPU with VNNI/AMX, at the cost of exact parity with the torch backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import OnnxRuntimeSegmenterConfig, SegmenterConfig, widen
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.segmentation.cpu_graph import CpuRewriteReport
from segzero_ros.segmentation.cpu_int8 import Int8Encoder, ensure_int8_encoder
from segzero_ros.segmentation.graph_runtime import Sam2GraphSegmenter, require_onnx_dir
from segzero_ros.segmentation.manifest import (
    DECODER,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    Sam2OnnxManifest,
    load_manifest,
)

LOG = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
GPU_PROVIDERS = (CUDA_PROVIDER, "TensorrtExecutionProvider")
"""Providers whose outputs live in CUDA memory when bound with device_type "cuda"."""

ProviderList = list[str | tuple[str, dict[str, Any]]]


PRECISIONS = ("fp32", "fp16", "int8")
INT8 = "int8"
"""CPU provider only: the fp32 export's encoder with int8 weights, derived and cached at load time
(segzero_ros.segmentation.cpu_int8); the decoder stays fp32."""


def resolve_precision(precision: str) -> str:
    """onnxruntime defaults to fp32: fp16 graphs run slower on its CPU provider, and int8 changes results."""
    if precision == "auto":
        return "fp32"
    if precision not in PRECISIONS:
        raise ModelLoadError(f"segmenter.precision for onnxruntime must be auto, {', '.join(PRECISIONS)}; "
                             f"got {precision!r}")
    return precision


def graph_precision(precision: str) -> str:
    """Which exported graphs a precision loads: int8 is derived from the fp32 ones."""
    return "fp32" if precision == INT8 else precision


def resolve_providers(device: str, providers: str, available: list[str]) -> ProviderList:
    """segmenter.providers (explicit, comma-separated) or segmenter.device → onnxruntime provider list."""
    requested = [name.strip() for name in providers.split(",") if name.strip()]
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise BackendUnavailableError(f"onnxruntime here lacks {', '.join(missing)}; available: "
                                          f"{', '.join(available)} (GPU providers need the onnxruntime-gpu package)")
        return list(requested)
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    if device == "cuda" or device.startswith("cuda:"):
        if CUDA_PROVIDER not in available:
            raise BackendUnavailableError(
                f"segmenter device {device!r} requested but this onnxruntime has no {CUDA_PROVIDER} "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use device 'cpu'")
        device_id = int(device.partition(":")[2] or 0)
        return [(CUDA_PROVIDER, {"device_id": device_id}), CPU_PROVIDER]
    raise ModelLoadError(f"unknown segmenter device {device!r}: use auto, cpu, cuda or cuda:N")


class OnnxRuntimeSegmenter(Sam2GraphSegmenter):
    """Segmenter over two onnxruntime InferenceSessions (encoder, decoder)."""

    def __init__(self, encoder: Any, decoder: Any, manifest: Sam2OnnxManifest, name: str,
                 multimask_output: bool = True, *, cpu_rewrite: CpuRewriteReport | None = None,
                 int8_encoder: Int8Encoder | None = None) -> None:
        """Wrap two loaded sessions; most callers want `from_config` or `from_onnx_dir`."""
        super().__init__(manifest, name=name, multimask_output=multimask_output)
        self.cpu_rewrite = cpu_rewrite
        """What the CPU-only encoder rewrite replaced; None when the encoder was loaded as exported."""
        self.int8_encoder = int8_encoder
        """The cached int8 encoder in use (precision int8), else None."""
        _check_session_names(encoder, ENCODER_INPUTS, ENCODER_OUTPUTS, "encoder")
        _check_session_names(decoder, DECODER_INPUTS, DECODER_OUTPUTS, "decoder")
        self._encoder: Any = encoder
        self._decoder: Any = decoder
        active = encoder.get_providers()
        self._feature_device = ("cuda", _device_id(encoder)) if active and active[0] in GPU_PROVIDERS else ("cpu", 0)
        self._features: list[Any] = []

    @classmethod
    def from_config(cls, config: SegmenterConfig) -> OnnxRuntimeSegmenter:
        config = widen(config, OnnxRuntimeSegmenterConfig)
        precision = resolve_precision(config.precision)
        onnx_dir = require_onnx_dir(config)
        return cls.from_onnx_dir(onnx_dir, precision=precision, device=config.device, providers=config.providers,
                                 cpu_threads=config.cpu_threads, multimask_output=config.multimask_output)

    @classmethod
    def from_onnx_dir(cls, onnx_dir: Path | str, *, precision: str = "fp32", device: str = "cpu", providers: str = "",
                      cpu_threads: int = 0, multimask_output: bool = True,
                      cpu_graph_rewrite: bool = True, int8_cache_root: Path | None = None) -> OnnxRuntimeSegmenter:
        """Load DIR/encoder*.onnx + decoder*.onnx as listed in DIR/sam2_onnx.json.

        cpu_graph_rewrite: on a CPU-only fp32 session, load the encoder through the CPU rewrite (faster on
        onnxruntime's CPU provider; same results to float rounding). False loads the files as they are.
        precision "int8" (CPU provider only) loads the cached int8 encoder derived from the fp32 one, building
        it on first use (int8_cache_root: where; None = the default cache root).
        """
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise BackendUnavailableError("segmenter backend 'onnxruntime' needs the onnxruntime package "
                                          "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from error
        precision = resolve_precision(precision)
        if precision == INT8:
            provider_list: ProviderList = [_int8_cpu_provider(device, providers)]
        else:
            provider_list = resolve_providers(device, providers, ort.get_available_providers())
        folder = Path(onnx_dir).expanduser()
        manifest = load_manifest(folder)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: graph-optimiser notes are not the user's business
        if cpu_threads > 0:
            options.intra_op_num_threads = cpu_threads
        # The contrib operators the rewrite uses have float32 CPU kernels; GPU providers fuse on their own.
        rewrite = cpu_graph_rewrite and precision == "fp32" and provider_list == [CPU_PROVIDER]
        sessions = []
        report = None
        int8 = None
        for role in (ENCODER, DECODER):
            graph = manifest.graph(graph_precision(precision), role)
            path = folder / graph.file
            if not path.is_file():
                raise ModelLoadError(f"{path} is listed in {folder}/sam2_onnx.json but missing; re-export the graphs")
            source: str | bytes = str(path)
            if rewrite and role == ENCODER:
                source, report = _rewritten_for_cpu(path)
            if precision == INT8 and role == ENCODER:
                int8 = ensure_int8_encoder(path, graph.sha256, cache_root=int8_cache_root, report=LOG.warning)
                source, report = str(int8.path), int8.rewrite
            try:
                sessions.append(ort.InferenceSession(source, options, providers=provider_list))
            except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ModelLoadError(f"onnxruntime cannot load {path}: {error}") from error
        name = f"onnxruntime:{manifest.model.checkpoint}:{precision}"
        return cls(sessions[0], sessions[1], manifest, name=name, multimask_output=multimask_output,
                   cpu_rewrite=report, int8_encoder=int8)

    @property
    def providers(self) -> list[str]:
        """Execution providers the sessions actually run on, in priority order."""
        self._require_open()
        return list(self._encoder.get_providers())

    def _encode(self, pixels: np.ndarray) -> None:
        self._features = []
        binding = self._encoder.io_binding()
        binding.bind_cpu_input(ENCODER_INPUTS[0], pixels)
        device_type, device_id = self._feature_device
        for name in ENCODER_OUTPUTS:
            binding.bind_output(name, device_type, device_id)
        self._encoder.run_with_iobinding(binding)
        self._features = list(binding.get_outputs())

    def _decode(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        binding = self._decoder.io_binding()
        for name, value in zip(ENCODER_OUTPUTS, self._features, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_cpu_input("point_coords", np.ascontiguousarray(coords, dtype=np.float32))
        binding.bind_cpu_input("point_labels", np.ascontiguousarray(labels, dtype=np.int32))
        for name in DECODER_OUTPUTS:
            binding.bind_output(name, "cpu")
        self._decoder.run_with_iobinding(binding)
        masks, scores = binding.copy_outputs_to_cpu()
        return np.asarray(masks, dtype=np.float32), np.asarray(scores, dtype=np.float32)

    def _release(self) -> None:
        self._features = []
        self._encoder = None
        self._decoder = None


def _rewritten_for_cpu(path: Path) -> tuple[bytes, CpuRewriteReport]:
    """The encoder graph with the CPU-only fusions applied, serialised for InferenceSession."""
    from segzero_ros.segmentation.cpu_graph import load_encoder_for_cpu

    model, report = load_encoder_for_cpu(path)
    return model.SerializeToString(), report


def _int8_cpu_provider(device: str, providers: str) -> str:
    """int8 encoders use CPU-only kernels, so int8 means the CPU provider; anything else asked for is an error."""
    requested = {name.strip() for name in providers.split(",") if name.strip()}
    if device not in ("auto", "cpu") or requested - {CPU_PROVIDER}:
        asked = f"providers {providers!r}" if requested - {CPU_PROVIDER} else f"device {device!r}"
        raise ModelLoadError(f"segmenter.precision int8 runs on onnxruntime's CPU provider only, but {asked} was "
                             f"configured; use fp16 (or fp32) on a GPU, or device 'cpu' for int8")
    return CPU_PROVIDER


def _check_session_names(session: Any, inputs: tuple[str, ...], outputs: tuple[str, ...], role: str) -> None:
    """A graph from another exporter (or an older format) fails here with names, not deep in run()."""
    found_inputs = tuple(value.name for value in session.get_inputs())
    found_outputs = tuple(value.name for value in session.get_outputs())
    if set(found_inputs) != set(inputs) or set(found_outputs) != set(outputs):
        raise ModelLoadError(f"the {role} graph has inputs {found_inputs} and outputs {found_outputs}; expected "
                             f"{inputs} → {outputs}. Re-export it with `segzero export-sam2`")


def _device_id(session: Any) -> int:
    options = session.get_provider_options()
    for provider in GPU_PROVIDERS:
        if provider in options:
            return int(options[provider].get("device_id", 0))
    return 0
