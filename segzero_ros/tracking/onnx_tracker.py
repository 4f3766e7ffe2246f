"""SAM2 streaming tracking on an export's graphs (onnxruntime here; TensorRT in tensorrt_tracker.py), no torch.

The graphs (segzero_ros/export/tracking_graphs.py, `segzero export-sam2 --tracking`) are sam2's own modules;
this class does what `SAM2Base.track_step` and sam2's video predictor do around them, in numpy, with the same
choices as the torch tracker (sam2_tracker.py), so the two agree to float rounding (tests/test_tracking_onnx.py):

* frames resized to S×S with PIL's bicubic filter, as sam2's video frame loader does; the encoder graph
  normalises them;
* the prompted frame: `prompted_heads` on the image features with no_mem_embed (what the encoder outputs),
  then `prompted_memory` (mask binarised, as from points);
* a tracked frame: memory frames = the prompted frame (temporal slot 0) and the last num_maskmem − 1 frames,
  each with sam2's spatial + temporal encoding; object pointers = the prompted frame's and up to 15 recent
  ones with their frame distance; `memory_attention` → `tracking_heads` → `memory`;
* memory features rounded to bfloat16 as the video predictor stores them; a bounded window of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import ExportedGraphsConfig, SegmenterConfig
from segzero_ros.core.geometry import ObjectPrompt
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.segmentation.manifest import Sam2OnnxManifest, load_manifest
from segzero_ros.segmentation.processing import bilinear_matrix
from segzero_ros.tracking.base import ObjectMemory, ObjectTrackerBase, TrackedMask, check_frame, presence_probability

IMAGE_ENCODER = "encoder"
TRACKING_ROLES = ("memory_attention", "prompted_heads", "tracking_heads", "prompted_memory", "memory")


def bfloat16_round(values: np.ndarray) -> np.ndarray:
    """float32 → the nearest bfloat16 (ties to even), back as float32: torch's `.to(torch.bfloat16)`."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFF0000)
    result: np.ndarray = rounded.view(np.float32)
    return result


class GraphTracker(ObjectTrackerBase):
    """The Tracker protocol over an export's graphs; subclasses say how a graph runs (`_run`)."""

    def __init__(self, folder: Path, manifest: Sam2OnnxManifest, *, memory_frames: int | None = None,
                 freeze_when_absent: bool = False, name: str = "") -> None:
        if manifest.tracking is None:
            raise ModelLoadError(f"{folder} has no tracking graphs: export with `segzero export-sam2 --tracking` "
                                 "(or let the node export them: leave segmenter.onnx_dir unset)")
        self.folder, self.manifest = folder, manifest
        settings = manifest.tracking.settings
        constants = np.load(folder / manifest.tracking.constants)
        self._no_mem_embed = constants["no_mem_embed"].reshape(1, -1, 1, 1)       # added on the C axis
        self._tpos = constants["maskmem_tpos_enc"]                               # num_maskmem×1×1×M
        self._memory_pos = _tokens(constants["maskmem_pos_enc"])                 # HW×1×M
        self._vision_pos = constants["vision_pos_embed"]                         # HW×1×C
        self._size = int(settings["image_size"])
        self._num_maskmem = int(settings["num_maskmem"])
        if memory_frames is not None:
            if not 1 <= memory_frames <= self._num_maskmem - 1:
                raise ValueError(f"memory_frames must be 1..{self._num_maskmem - 1}, got {memory_frames}")
            self._num_maskmem = memory_frames + 1
        self._max_pointers = int(settings["max_obj_ptrs_in_encoder"])
        self._stride = int(settings["memory_temporal_stride_for_eval"])
        self._signed = bool(settings["use_signed_tpos_enc_to_obj_ptrs"])
        self._window = max(self._num_maskmem, self._max_pointers)
        self._freeze_when_absent = freeze_when_absent
        self._name = name or f"graphs:{manifest.model.checkpoint}"
        self._upsample: tuple[np.ndarray, np.ndarray] | None = None
        self.reset()

    def graph_files(self) -> dict[str, Path]:
        """role → .onnx file of every graph the tracker runs (the export's fp32 encoder + the tracking graphs)."""
        tracking = self.manifest.tracking
        assert tracking is not None
        files = {IMAGE_ENCODER: self.manifest.graph("fp32", IMAGE_ENCODER).file,
                 **{role: tracking.graphs[role].file for role in TRACKING_ROLES}}
        paths = {role: self.folder / file for role, file in files.items()}
        for path in paths.values():
            if not path.is_file():
                raise ModelLoadError(f"{path} is listed in {self.folder}/sam2_onnx.json but missing; re-export")
        return paths

    def _run(self, role: str, *inputs: np.ndarray) -> list[np.ndarray]:
        """Run graph `role` on `inputs` (in the graph's input order); its outputs in order."""
        raise NotImplementedError

    def reset(self) -> None:
        self._objects: list[ObjectMemory] = []
        self._frame = -1
        self._shape: tuple[int, int] | None = None

    def close(self) -> None:
        self.reset()

    def start_objects(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[TrackedMask]:
        """Forget any previous targets; remember each prompted object (one encoding, a memory per object)."""
        if not prompts:
            raise ValueError("start_objects needs at least one object prompt")
        self.reset()
        height, width = check_frame(image)
        self._shape, self._frame = (height, width), 0
        embed, high_0, high_1 = self._encode(image)
        current = _tokens(embed - self._no_mem_embed)
        tracked = []
        for prompt in prompts:
            box, points = prompt.box, prompt.points
            coordinates = np.asarray([[box.x1, box.y1], [box.x2, box.y2], *([p.x, p.y] for p in points)], np.float32)
            coordinates = coordinates / np.asarray([width, height], np.float32) * np.float32(self._size)
            labels = np.asarray([[2, 3, *([1] * len(points))]], np.int32)
            low, pointer, score = self._run("prompted_heads", embed, high_0, high_1, coordinates[None], labels)
            (features,) = self._run("prompted_memory", current, low, score)
            memory = ObjectMemory()
            memory.cond[0] = {"memory": bfloat16_round(features), "pointer": pointer}
            memory.latest = low
            self._objects.append(memory)
            tracked.append(self._tracked(low, score))
        return tracked

    def track_objects(self, image: np.ndarray) -> list[TrackedMask]:
        """Every started object on the next frame, in the order they were started (one image encoding)."""
        if self._shape is None:
            raise RuntimeError("call start(image, prompt) before track(image)")
        size = check_frame(image)
        if size != self._shape:
            raise ValueError(f"frame is {size[1]}×{size[0]} but tracking started on {self._shape[1]}×{self._shape[0]}; "
                             "reset and start again")
        self._frame += 1
        embed, high_0, high_1 = self._encode(image)
        current = _tokens(embed - self._no_mem_embed)
        tracked = []
        for memory in self._objects:
            frames, frames_pos, pointers, offsets = self._memory(memory)
            (conditioned,) = self._run("memory_attention", current, self._vision_pos, frames, frames_pos, pointers,
                                       offsets)
            pix_feat = np.ascontiguousarray(conditioned.transpose(1, 2, 0).reshape(embed.shape))
            low, pointer, score = self._run("tracking_heads", pix_feat, high_0, high_1)
            (features,) = self._run("memory", current, low, score)
            result = self._tracked(low, score)
            memory.latest = low
            if result.present or not self._freeze_when_absent:
                memory.non_cond[self._frame] = {"memory": bfloat16_round(features), "pointer": pointer}
            for old in [index for index in memory.non_cond if index <= self._frame - self._window]:
                del memory.non_cond[old]
            tracked.append(result)
        return tracked

    # ------------------------------------------------------------------ internals

    def _encode(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from PIL import Image

        resized = np.asarray(Image.fromarray(image, mode="RGB").resize((self._size, self._size)), np.float32)
        pixels = np.ascontiguousarray(resized.transpose(2, 0, 1)[None])
        embed, high_0, high_1 = self._run(IMAGE_ENCODER, pixels)
        return embed, high_0, high_1

    def _memory(self, memory: ObjectMemory) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """sam2's choice of an object's memories for the current frame (`_prepare_memory_conditioned_features`)."""
        frame = self._frame
        chosen = [(0, out) for out in memory.cond.values()]
        for t_pos in range(1, self._num_maskmem):
            t_rel = self._num_maskmem - t_pos
            stride = self._stride
            previous = frame - 1 if t_rel == 1 else ((frame - 2) // stride) * stride - (t_rel - 2) * stride
            out = memory.non_cond.get(previous)
            if out is not None:
                chosen.append((t_pos, out))
        frames = np.concatenate([_tokens(out["memory"]) for _, out in chosen])
        frames_pos = np.concatenate([self._memory_pos + self._tpos[self._num_maskmem - t_pos - 1]
                                     for t_pos, _ in chosen])
        pointers = [((frame - t) if self._signed else abs(frame - t), out["pointer"]) for t, out in memory.cond.items()
                    if t <= frame]
        for t_diff in range(1, self._max_pointers):
            t = frame - t_diff
            if t < 0:
                break
            out = memory.non_cond.get(t)
            if out is not None:
                pointers.append((t_diff, out["pointer"]))
        offsets = np.asarray([offset for offset, _ in pointers], np.int64)
        stacked = np.stack([pointer for _, pointer in pointers])  # n×1×C
        return frames, frames_pos.astype(np.float32), stacked, offsets

    def _tracked(self, low: np.ndarray, score: np.ndarray) -> TrackedMask:
        assert self._shape is not None
        height, width = self._shape
        if self._upsample is None or self._upsample[0].shape[0] != height or self._upsample[1].shape[1] != width:
            self._upsample = (bilinear_matrix(low.shape[2], height),
                              np.ascontiguousarray(bilinear_matrix(low.shape[3], width).T))
        rows, columns = self._upsample
        logits = (rows @ low[0, 0]) @ columns
        logit = float(score.reshape(-1)[0])
        return TrackedMask(mask=logits > 0.0, score=presence_probability(logit), present=logit > 0,
                           frame_index=self._frame)



class OnnxTracker(GraphTracker):
    """GraphTracker on onnxruntime sessions (CPU or a GPU provider)."""

    def __init__(self, onnx_dir: Path | str, *, providers: Sequence[str] = ("CPUExecutionProvider",),
                 cpu_threads: int = 0, memory_frames: int | None = None, freeze_when_absent: bool = False) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise BackendUnavailableError("tracking on onnxruntime needs the onnxruntime package") from error
        folder = Path(onnx_dir).expanduser()
        manifest = load_manifest(folder)
        super().__init__(folder, manifest, memory_frames=memory_frames, freeze_when_absent=freeze_when_absent,
                         name=f"onnxruntime:{manifest.model.checkpoint}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if cpu_threads > 0:
            options.intra_op_num_threads = cpu_threads
        self._sessions: dict[str, Any] = {}
        self._input_names: dict[str, list[str]] = {}
        """role → its graph's input names, read once (every frame runs several graphs)."""
        for role, path in self.graph_files().items():
            try:
                self._sessions[role] = ort.InferenceSession(str(path), options, providers=list(providers))
                self._input_names[role] = [value.name for value in self._sessions[role].get_inputs()]
            except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ModelLoadError(f"onnxruntime cannot load {path}: {error}") from error

    @classmethod
    def from_config(cls, config: SegmenterConfig, **options: Any) -> OnnxTracker:
        """The tracker of an onnxruntime segmenter config: its export folder (exported once into the cache
        when segmenter.onnx_dir is unset; the tracking graphs are added to a folder that lacks them)."""
        import onnxruntime as ort

        from segzero_ros.config import OnnxRuntimeSegmenterConfig, widen
        from segzero_ros.segmentation.onnx_backend import resolve_providers

        widened = widen(config, OnnxRuntimeSegmenterConfig)
        folder = ensure_tracking_graphs(widened)
        providers = [p if isinstance(p, str) else p[0]
                     for p in resolve_providers(widened.device, widened.providers, ort.get_available_providers())]
        return cls(folder, providers=providers, cpu_threads=widened.cpu_threads, **options)

    def close(self) -> None:
        super().close()
        self._sessions = {}

    def _run(self, role: str, *inputs: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._sessions[role].run(
            None, dict(zip(self._input_names[role], inputs, strict=True)))
        return outputs



def ensure_tracking_graphs(config: ExportedGraphsConfig) -> Path:
    """The export folder of `config` with the tracking graphs in it (exporting them once when missing)."""
    import dataclasses

    from segzero_ros.export.onnx_export import with_exported_graphs

    prepared = with_exported_graphs(dataclasses.replace(config, precision="fp32"))
    assert prepared.onnx_dir is not None
    folder = Path(prepared.onnx_dir).expanduser()
    if load_manifest(folder).tracking is None:
        import importlib.util

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sam2") is None:
            raise BackendUnavailableError(f"{folder} has no tracking graphs and this machine lacks torch/sam2 to "
                                          "export them: run `segzero export-sam2 --tracking` where it has them")
        from segzero_ros.export.tracking_graphs import add_tracking_graphs
        from segzero_ros.segmentation.sam2_backend import build_sam2_model

        # Built as sam2's video predictor (its memory settings), on the CPU: tracing needs no GPU.
        model, _ = build_sam2_model(dataclasses.replace(config, device="cpu"), video=True)
        add_tracking_graphs(folder, model)
    return folder


def _tokens(features: np.ndarray) -> np.ndarray:
    """1×C×H×W → HW×1×C (sam2's sequence-first layout)."""
    channels = features.shape[1]
    return np.ascontiguousarray(features.reshape(channels, -1).T[:, None, :])
