"""SAM2 streaming tracking on TensorRT: the onnxruntime tracker's bookkeeping over engines of the same graphs.

Engines are built from the export's fp32 encoder and tracking graphs (strongly typed: fp32 arithmetic), once
per GPU and TensorRT version, cached like the segmenter's (engine_cache_dir). Between graphs the tensors
come back to the host for the numpy bookkeeping (memory selection, bfloat16 storage) — simple and exact,
not the fastest: a device-resident memory bank is the next step once a GPU measures it.

Not run here: TensorRT needs an NVIDIA GPU. What is checked without one: the graphs pass the TensorRT
operator allow-list and their dynamic dimensions map to optimisation profiles (tests/test_tracking_onnx.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import SegmenterConfig, TensorRTSegmenterConfig, widen
from segzero_ros.errors import ModelLoadError
from segzero_ros.segmentation.manifest import GraphSpec, Sam2OnnxManifest, load_manifest
from segzero_ros.segmentation.tensorrt_backend import (
    EngineRunner,
    Report,
    cuda_device_index,
    default_engine_cache_dir,
    engine_for,
    gpu_identity,
    import_tensorrt,
)
from segzero_ros.tracking.onnx_tracker import GraphTracker, ensure_tracking_graphs

LOG = logging.getLogger(__name__)
ENGINE_PRECISION = "fp32"
"""The tracking graphs are exported in fp32; their engines compute in fp32 (strongly typed networks)."""


def tracking_graphs(manifest: Sam2OnnxManifest) -> dict[str, GraphSpec]:
    """role → graph of everything the tracker runs: the export's fp32 encoder and its tracking graphs."""
    if manifest.tracking is None:
        raise ModelLoadError("this export has no tracking graphs: `segzero export-sam2 --tracking`")
    return {"encoder": manifest.graph("fp32", "encoder"), **manifest.tracking.graphs}


def build_tracking_engines(onnx_dir: Path | str, cache_dir: str | Path | None = None, device: str = "auto",
                           report: Report = LOG.warning) -> dict[str, Path]:
    """The tracker's engines (role → file), built once per GPU and TensorRT version; `segzero build-engine`
    calls it too, so a robot can build them before the first command."""
    trt = import_tensorrt()
    import torch

    device_index = cuda_device_index(device)
    folder = Path(onnx_dir).expanduser()
    manifest = load_manifest(folder)
    cache = Path(cache_dir).expanduser() if cache_dir else default_engine_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with torch.cuda.device(device_index):
        gpu = gpu_identity(device_index, str(trt.__version__))
        return {role: engine_for(graph, folder, cache, precision=ENGINE_PRECISION, gpu=gpu, prefix=f"sam2-track-{role}",
                                 report=report, checkpoint=manifest.model.checkpoint)
                for role, graph in tracking_graphs(manifest).items()}


class TensorRTTracker(GraphTracker):
    """GraphTracker on TensorRT engines on one GPU."""

    def __init__(self, onnx_dir: Path | str, *, device: str = "cuda", engine_cache_dir: str | None = None,
                 memory_frames: int | None = None, freeze_when_absent: bool = False) -> None:
        trt = import_tensorrt()
        import torch

        device_index = cuda_device_index(device)
        folder = Path(onnx_dir).expanduser()
        manifest = load_manifest(folder)
        super().__init__(folder, manifest, memory_frames=memory_frames, freeze_when_absent=freeze_when_absent,
                         name=f"tensorrt:{manifest.model.checkpoint}")
        graphs = tracking_graphs(manifest)
        engines = build_tracking_engines(folder, engine_cache_dir, device=f"cuda:{device_index}")
        self._device = torch.device("cuda", device_index)
        self._inputs = {role: [tensor.name for tensor in graph.inputs] for role, graph in graphs.items()}
        self._outputs = {role: [tensor.name for tensor in graph.outputs] for role, graph in graphs.items()}
        with torch.cuda.device(self._device):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._runners = {role: EngineRunner(trt, self._runtime, engines[role], self._device) for role in graphs}
            self._stream: Any = torch.cuda.Stream(device=self._device)  # type: ignore[no-untyped-call]

    @classmethod
    def from_config(cls, config: SegmenterConfig, **options: Any) -> TensorRTTracker:
        widened = widen(config, TensorRTSegmenterConfig)
        folder = ensure_tracking_graphs(widened)
        return cls(folder, device=widened.device, engine_cache_dir=widened.engine_cache_dir, **options)

    def close(self) -> None:
        super().close()
        for runner in getattr(self, "_runners", {}).values():
            runner.close()
        self._runners = {}

    def _run(self, role: str, *inputs: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            tensors = {name: torch.from_numpy(np.ascontiguousarray(value)).to(self._device)
                       for name, value in zip(self._inputs[role], inputs, strict=True)}
            outputs = self._runners[role].run(tensors, self._stream)
            return [outputs[name].float().cpu().numpy() for name in self._outputs[role]]  # .cpu() waits
