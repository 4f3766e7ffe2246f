"""SAM2's tracking step as exportable graphs, for the onnxruntime / tensorrt trackers.

Five graphs beside the export's image encoder: memory attention (`memory_attention`), the SAM heads on the
prompted frame and on tracked frames (`prompted_heads`, `tracking_heads`: masks, object pointer, object
score), and the memory encoder for both (`prompted_memory`, `memory`). Each wraps sam2's own module calls
(`_forward_sam_heads`, `_encode_new_memory`, the memory-attention layers, `get_1d_sine_pe` and
`obj_ptr_tpos_proj` for the pointers' temporal encoding); which memories to read is plain bookkeeping the
tracker does in numpy (segzero_ros/tracking/onnx_tracker.py), with the constants saved beside the graphs.

Memory attention needs one change:
sam2's RoPEAttention rotates queries and keys with complex numbers (`torch.view_as_complex`), which no ONNX
exporter takes (`ScalarType ComplexFloat`) and TensorRT has no type for. The same rotation in real numbers —
for each channel pair (a, b) and angle θ: (a cos θ − b sin θ, a sin θ + b cos θ) — with the angles' cos/sin as
constant buffers, exports with dynamic memory sizes and is also TensorRT's fast path (a matmul rotation was
3× slower there, sam2#639). The modules here share the loaded model's weights; the model is never changed.

Memory sizes are dynamic: `memory_frames` holds F past frames' memory tokens (F × H×W, F ≥ 1) and
`object_pointers` n pointers (n ≥ 1, split into tokens of mem_dim inside the graph); rotary encoding applies to
the frame tokens only, as in sam2 (num_k_exclude_rope = the pointer tokens).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from sam2.modeling.sam.transformer import RoPEAttention
from torch import nn

from segzero_ros.segmentation.manifest import Sam2OnnxManifest, Sam2TrackingInfo


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x B×heads×L×C rotated pairwise by the angles whose cos/sin are N×C/2, L a multiple of N (keys of several
    memory frames repeat the frame's angles, as sam2's repeat_freqs_k does)."""
    batch, heads, length, channels = x.shape
    pairs = x.float().reshape(batch, heads, -1, cos.shape[0], channels // 2, 2)
    first, second = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rotated.reshape(batch, heads, length, channels).type_as(x)


class RealRoPEAttention(RoPEAttention):  # type: ignore[misc]  # sam2 is untyped
    """sam2's RoPEAttention.forward with the rotation of :func:`rotate_pairs`; same projections and weights.
    A subclass only so sam2's memory-attention layers accept it (they check the class); its own state is
    set up here, not by RoPEAttention.__init__."""

    def __init__(self, attention: Any, grid: tuple[int, int]) -> None:
        nn.Module.__init__(self)
        self.attention = attention
        self.num_heads = int(attention.num_heads)
        self.rope_k_repeat = bool(attention.rope_k_repeat)
        angles = attention.compute_cis(end_x=grid[1], end_y=grid[0])  # complex N×C/2 for this grid
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.register_buffer("cos", angles.real.float().contiguous())
        self.register_buffer("sin", angles.imag.float().contiguous())

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        attention = self.attention
        q = attention._separate_heads(attention.q_proj(q), self.num_heads)
        k = attention._separate_heads(attention.k_proj(k), self.num_heads)
        v = attention._separate_heads(attention.v_proj(v), self.num_heads)
        q = rotate_pairs(q, self.cos, self.sin)
        if num_k_exclude_rope:
            rope_length = k.shape[-2] - num_k_exclude_rope
            k = torch.cat([rotate_pairs(k[:, :, :rope_length], self.cos, self.sin), k[:, :, rope_length:]], dim=2)
        else:
            k = rotate_pairs(k, self.cos, self.sin)
        out = F.scaled_dot_product_attention(q, k, v)
        return attention.out_proj(attention._recombine_heads(out))  # type: ignore[no-any-return]


def real_rope_memory_attention(model: Any) -> nn.Module:
    """A copy of `model.memory_attention` whose RoPE attentions rotate in real arithmetic (weights shared)."""
    side = int(model.image_size) // int(model.backbone_stride)
    layers = []
    for layer in model.memory_attention.layers:
        replaced = _shallow_module_copy(layer)
        for name in ("self_attn", "cross_attn_image"):
            attention = getattr(layer, name)
            if isinstance(attention, RoPEAttention):
                replaced._modules[name] = RealRoPEAttention(attention, (side, side))
        layers.append(replaced)
    module = _shallow_module_copy(model.memory_attention)
    module._modules["layers"] = nn.ModuleList(layers)
    return module


def _shallow_module_copy(module: nn.Module) -> nn.Module:
    """A copy with its own child table (children can be swapped without touching `module`), same weights."""
    copied = copy.copy(module)
    copied._modules = dict(module._modules)
    return copied


class Sam2MemoryAttentionGraph(nn.Module):
    """The current frame's top-level features conditioned on memory, as `_prepare_memory_conditioned_features`
    conditions them on a tracked (non-prompted) frame of an endless stream:

    inputs  current HW×1×C and current_pos HW×1×C (the frame's top-level features and position encoding),
            memory_frames (F·HW)×1×M and memory_frames_pos (spatial + temporal encodings, added by the caller),
            object_pointers n×1×C and pointer_offsets n int64 (frames between each pointer and this frame);
    output  conditioned HW×1×C.
    """

    def __init__(self, model: Any, max_pointers: int) -> None:
        super().__init__()
        self.memory_attention = real_rope_memory_attention(model)
        self.tpos_projection = model.obj_ptr_tpos_proj
        self.hidden_dim, self.mem_dim = int(model.hidden_dim), int(model.mem_dim)
        self.temporal_pointers = bool(model.add_tpos_enc_to_obj_ptrs)
        self.tpos_dim = self.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else self.mem_dim
        self.offset_scale = max_pointers - 1
        """sam2's t_diff_max = min(num_frames, max_obj_ptrs_in_encoder) - 1: a stream is a long video."""

    def forward(self, current: torch.Tensor, current_pos: torch.Tensor,  # noqa: PLR0917  (the graph's inputs)
                memory_frames: torch.Tensor, memory_frames_pos: torch.Tensor, object_pointers: torch.Tensor,
                pointer_offsets: torch.Tensor) -> torch.Tensor:
        from sam2.modeling.sam2_utils import get_1d_sine_pe

        batch = object_pointers.shape[1]
        if self.temporal_pointers:
            pointer_pos = self.tpos_projection(get_1d_sine_pe(pointer_offsets / self.offset_scale, dim=self.tpos_dim))
            pointer_pos = pointer_pos.unsqueeze(1).expand(-1, batch, self.mem_dim)
        else:
            pointer_pos = object_pointers.new_zeros(object_pointers.shape[0], batch, self.mem_dim)
        pointers = object_pointers
        if self.mem_dim < self.hidden_dim:  # a pointer becomes C / mem_dim tokens
            split = self.hidden_dim // self.mem_dim
            pointers = pointers.reshape(-1, batch, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pointer_pos = pointer_pos.repeat_interleave(split, dim=0)
        memory = torch.cat([memory_frames, pointers], dim=0)
        memory_pos = torch.cat([memory_frames_pos, pointer_pos], dim=0)
        out: torch.Tensor = self.memory_attention(curr=current, memory=memory, curr_pos=current_pos,
                                                  memory_pos=memory_pos, num_obj_ptr_tokens=pointers.shape[0])
        return out


class Sam2HeadsGraph(nn.Module):
    """sam2's `_forward_sam_heads` on a tracked frame's memory-conditioned features (no prompt). Outputs the
    chosen low-res mask logits 1×1×S/4², the object pointer 1×C and the object-score logit 1×1."""

    prompted = False

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.multimask = heads_multimask(model, self.prompted)

    def forward(self, pix_feat: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._heads(pix_feat, high_res_feats_0, high_res_feats_1, None)

    def _heads(self, pix_feat: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
               point_inputs: dict[str, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.model._forward_sam_heads(
            backbone_features=pix_feat, point_inputs=point_inputs, mask_inputs=None,
            high_res_features=[high_res_feats_0, high_res_feats_1], multimask_output=self.multimask)
        _, _, _, low_res_masks, _, obj_ptr, object_score_logits = outputs
        return low_res_masks, obj_ptr, object_score_logits


class Sam2PromptedHeadsGraph(Sam2HeadsGraph):
    """The same on the prompted frame: box corners + points in the S×S frame (labels int32: 2, 3, then 1s)."""

    prompted = True

    def forward(self, pix_feat: torch.Tensor, high_res_feats_0: torch.Tensor,  # type: ignore[override]
                high_res_feats_1: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._heads(pix_feat, high_res_feats_0, high_res_feats_1,
                           {"point_coords": point_coords, "point_labels": point_labels})


def heads_multimask(model: Any, prompted: bool) -> bool:
    """sam2's `_use_multimask` for the frames a graph serves; the prompted graph's point count is dynamic, so
    the choice must be the same for every count from 2 (a box) up (true of the released configs)."""
    if not prompted:
        return bool(model._use_multimask(False, None))
    choices = {bool(model._use_multimask(True, {"point_labels": torch.zeros(1, count)}))
               for count in range(2, MAX_PROMPT_POINTS + 1)}
    if len(choices) != 1:
        raise ValueError("this SAM2 config's multimask choice depends on the number of prompt points; "
                         "its prompted frame cannot be one graph")
    return choices.pop()


class Sam2MemoryGraph(nn.Module):
    """sam2's `_encode_new_memory` for one frame: top-level features HW×1×C (without no_mem_embed), its low-res
    mask logits 1×1×S/4² (upsampled here as `_forward_sam_heads` does) and object-score logit 1×1 → memory
    features 1×M×H×W (float32; sam2's video predictor stores them as bfloat16, so does the tracker)."""

    def __init__(self, model: Any, prompted: bool) -> None:
        super().__init__()
        self.model, self.prompted = model, prompted
        side = int(model.image_size) // int(model.backbone_stride)
        self.size, self.grid = int(model.image_size), (side, side)

    def forward(self, current: torch.Tensor, low_res_masks: torch.Tensor, object_score_logits: torch.Tensor
                ) -> torch.Tensor:
        high_res = F.interpolate(low_res_masks, size=(self.size, self.size), mode="bilinear", align_corners=False)
        features, _ = self.model._encode_new_memory(current_vision_feats=[current], feat_sizes=[self.grid],
                                                    pred_masks_high_res=high_res,
                                                    object_score_logits=object_score_logits,
                                                    is_mask_from_pts=self.prompted)
        return features  # type: ignore[no-any-return]


MEMORY_ATTENTION = "memory_attention"
PROMPTED_HEADS = "prompted_heads"
TRACKING_HEADS = "tracking_heads"
PROMPTED_MEMORY = "prompted_memory"
MEMORY = "memory"
TRACKING_FILES = {MEMORY_ATTENTION: "track_memory_attention.onnx", PROMPTED_HEADS: "track_prompted_heads.onnx",
                  TRACKING_HEADS: "track_heads.onnx", PROMPTED_MEMORY: "track_prompted_memory.onnx",
                  MEMORY: "track_memory.onnx"}
CONSTANTS_FILE = "track_constants.npz"
MEMORY_ATTENTION_INPUTS = ("current", "current_pos", "memory_frames", "memory_frames_pos", "object_pointers",
                           "pointer_offsets")
HEADS_INPUTS = ("pix_feat", "high_res_feats_0", "high_res_feats_1")
PROMPT_INPUTS = ("point_coords", "point_labels")
HEADS_OUTPUTS = ("low_res_masks", "obj_ptr", "object_score_logits")
MEMORY_INPUTS = ("current", "low_res_masks", "object_score_logits")
MAX_MEMORY_FRAMES = 16
"""Upper bound of the dynamic frame count (sam2 reads at most num_maskmem = 7: 1 conditioning + 6 recent)."""
MAX_PROMPT_POINTS = 16
SETTINGS = ("num_maskmem", "max_obj_ptrs_in_encoder", "memory_temporal_stride_for_eval", "max_cond_frames_in_attn",
            "use_signed_tpos_enc_to_obj_ptrs", "only_obj_ptrs_in_the_past_for_eval", "directly_add_no_mem_embed",
            "image_size", "backbone_stride", "hidden_dim", "mem_dim")


def memory_attention_example(model: Any, frames: int = 2, pointers: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the memory-attention graph for `frames` memory frames and `pointers` object pointers."""
    generator = torch.Generator().manual_seed(seed)
    side = int(model.image_size) // int(model.backbone_stride)
    tokens, channels, memory = side * side, int(model.hidden_dim), int(model.mem_dim)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    offsets = torch.arange(1, pointers + 1, dtype=torch.int64)
    return (normal(tokens, 1, channels), normal(tokens, 1, channels), normal(frames * tokens, 1, memory),
            normal(frames * tokens, 1, memory), normal(pointers, 1, channels), offsets)


def tracking_constants(model: Any) -> dict[str, np.ndarray]:
    """The model's constant tensors the tracker combines in numpy (float32)."""
    side = int(model.image_size) // int(model.backbone_stride)
    size = int(model.image_size)
    with torch.no_grad():
        backbone = model.forward_image(torch.zeros(1, 3, size, size, device=model.device))
        _, _, vision_pos, _ = model._prepare_backbone_features(backbone)
        memory_out = model.memory_encoder(torch.zeros(1, int(model.hidden_dim), side, side),
                                          torch.zeros(1, 1, size, size), skip_mask_sigmoid=True)
        values = {
            "no_mem_embed": model.no_mem_embed,                      # 1×1×C
            "maskmem_tpos_enc": model.maskmem_tpos_enc,              # num_maskmem×1×1×M
            "maskmem_pos_enc": memory_out["vision_pos_enc"][-1],     # 1×M×H×W (position only: input-free)
            "vision_pos_embed": vision_pos[-1],                      # HW×1×C of the top level
        }
        return {name: value.detach().float().cpu().numpy() for name, value in values.items()}


def export_tracking_graphs(model: Any, out_dir: Path, opset: int = 18) -> Sam2TrackingInfo:
    """Write the five tracking graphs and the constants into out_dir (beside an export's encoder), check each
    (onnx.checker, shape inference, TensorRT allow-list); the manifest's tracking block describes them."""
    from segzero_ros.export.onnx_export import _checked_spec, _export

    model.eval()
    side = int(model.image_size) // int(model.backbone_stride)
    size, channels = int(model.image_size), int(model.hidden_dim)
    max_pointers = int(model.max_obj_ptrs_in_encoder)
    tokens = side * side
    features = (torch.randn(1, channels, side, side), torch.randn(1, channels // 8, 4 * side, 4 * side),
                torch.randn(1, channels // 4, 2 * side, 2 * side))
    frames = torch.export.Dim("memory_frames", min=1, max=MAX_MEMORY_FRAMES)
    pointers = torch.export.Dim("object_pointers", min=1, max=max_pointers)
    points = torch.export.Dim("num_points", min=1, max=MAX_PROMPT_POINTS)
    exports: dict[str, tuple[nn.Module, tuple[Any, ...], tuple[str, ...], tuple[str, ...], dict[str, Any] | None]] = {
        MEMORY_ATTENTION: (
            Sam2MemoryAttentionGraph(model, max_pointers), memory_attention_example(model), MEMORY_ATTENTION_INPUTS,
            ("conditioned",), {"current": None, "current_pos": None, "memory_frames": {0: tokens * frames},
                               "memory_frames_pos": {0: tokens * frames}, "object_pointers": {0: pointers},
                               "pointer_offsets": {0: pointers}}),
        PROMPTED_HEADS: (
            Sam2PromptedHeadsGraph(model),
            (*features, torch.tensor([[[0.1 * size, 0.2 * size], [0.8 * size, 0.9 * size], [0.5 * size, 0.5 * size]]]),
             torch.tensor([[2, 3, 1]], dtype=torch.int32)),
            HEADS_INPUTS + PROMPT_INPUTS, HEADS_OUTPUTS,
            {**{name: None for name in HEADS_INPUTS}, "point_coords": {1: points}, "point_labels": {1: points}}),
        TRACKING_HEADS: (Sam2HeadsGraph(model), features, HEADS_INPUTS, HEADS_OUTPUTS, None),
        PROMPTED_MEMORY: (Sam2MemoryGraph(model, prompted=True),
                          (torch.randn(tokens, 1, channels), torch.randn(1, 1, 4 * side, 4 * side), torch.ones(1, 1)),
                          MEMORY_INPUTS, ("maskmem_features",), None),
        MEMORY: (Sam2MemoryGraph(model, prompted=False),
                 (torch.randn(tokens, 1, channels), torch.randn(1, 1, 4 * side, 4 * side), torch.ones(1, 1)),
                 MEMORY_INPUTS, ("maskmem_features",), None),
    }
    specs = {}
    for role, (graph, example, inputs, outputs, dynamic) in exports.items():
        path = out_dir / TRACKING_FILES[role]
        _export(graph.eval(), example, path, input_names=inputs, output_names=outputs, opset=opset,
                dynamic_shapes=dynamic)
        specs[role] = _checked_spec(path)
    constants = tracking_constants(model)
    np.savez(out_dir / CONSTANTS_FILE, **constants)  # type: ignore[arg-type]
    settings: dict[str, Any] = {name: _plain(getattr(model, name)) for name in SETTINGS}
    settings["prompted_multimask"] = heads_multimask(model, prompted=True)
    settings["tracking_multimask"] = heads_multimask(model, prompted=False)
    return Sam2TrackingInfo(graphs=specs, constants=CONSTANTS_FILE, settings=settings)


def add_tracking_graphs(out_dir: Path, model: Any) -> Sam2OnnxManifest:
    """Add the tracking graphs to an existing export folder (its manifest gains the tracking block)."""
    from segzero_ros.segmentation.manifest import load_manifest

    manifest = load_manifest(out_dir)
    updated = dataclasses.replace(manifest, tracking=export_tracking_graphs(model, out_dir, manifest.opset))
    updated.save(out_dir)
    return updated


def _plain(value: Any) -> bool | int | float:
    return value if isinstance(value, (bool, int, float)) else float(value)


__all__ = [
    "CONSTANTS_FILE",
    "MEMORY",
    "MEMORY_ATTENTION",
    "MEMORY_ATTENTION_INPUTS",
    "PROMPTED_HEADS",
    "PROMPTED_MEMORY",
    "TRACKING_FILES",
    "TRACKING_HEADS",
    "RealRoPEAttention",
    "Sam2HeadsGraph",
    "Sam2MemoryAttentionGraph",
    "Sam2MemoryGraph",
    "Sam2PromptedHeadsGraph",
    "add_tracking_graphs",
    "export_tracking_graphs",
    "memory_attention_example",
    "real_rope_memory_attention",
    "rotate_pairs",
    "tracking_constants",
]
