"""SAM2's memory attention as an exportable graph: rotary position encoding in real arithmetic.

sam2's RoPEAttention rotates queries and keys with complex numbers (`torch.view_as_complex`), which no ONNX
exporter takes (`ScalarType ComplexFloat`) and TensorRT has no type for. The same rotation in real numbers —
for each channel pair (a, b) and angle θ: (a cos θ − b sin θ, a sin θ + b cos θ) — with the angles' cos/sin as
constant buffers, exports with dynamic memory sizes and is also TensorRT's fast path (a matmul rotation was
3× slower there, sam2#639). The modules here share the loaded model's weights; the model is never changed.

Memory sizes are dynamic: `memory_frames` holds F past frames' memory tokens (F × H×W, F ≥ 1) and `pointers`
the object-pointer tokens (P ≥ 1, 4 per pointer at mem_dim 64); rotary encoding applies to the frame tokens
only, as in sam2 (num_k_exclude_rope = P).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from sam2.modeling.sam.transformer import RoPEAttention
from torch import nn


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
    """The current frame's top-level features conditioned on memory, as track_step's
    `_prepare_memory_conditioned_features` calls memory attention:

    inputs  current HW×1×C and current_pos HW×1×C (the frame's features and position encoding),
            memory_frames (F·HW)×1×M and memory_frames_pos (with the temporal encodings already added),
            pointers P×1×M and pointers_pos;
    output  conditioned HW×1×C.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.memory_attention = real_rope_memory_attention(model)

    def forward(self, current: torch.Tensor, current_pos: torch.Tensor,  # noqa: PLR0917  (the graph's inputs)
                memory_frames: torch.Tensor, memory_frames_pos: torch.Tensor, pointers: torch.Tensor,
                pointers_pos: torch.Tensor) -> torch.Tensor:
        memory = torch.cat([memory_frames, pointers], dim=0)
        memory_pos = torch.cat([memory_frames_pos, pointers_pos], dim=0)
        out: torch.Tensor = self.memory_attention(curr=current, memory=memory, curr_pos=current_pos,
                                                  memory_pos=memory_pos, num_obj_ptr_tokens=pointers.shape[0])
        return out


MEMORY_ATTENTION_INPUTS = ("current", "current_pos", "memory_frames", "memory_frames_pos", "pointers",
                           "pointers_pos")
MEMORY_ATTENTION_OUTPUTS = ("conditioned",)
MAX_MEMORY_FRAMES = 16
"""Upper bound of the dynamic frame count (sam2 reads at most num_maskmem = 7: 1 conditioning + 6 recent)."""
MAX_POINTER_TOKENS = 4 * 16
"""16 object pointers of 4 tokens each (sam2's max_obj_ptrs_in_encoder at mem_dim 64)."""


def memory_attention_example(model: Any, frames: int = 2, pointer_tokens: int = 8,
                             seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's shapes for `frames` memory frames and `pointer_tokens` pointer tokens."""
    generator = torch.Generator().manual_seed(seed)
    side = int(model.image_size) // int(model.backbone_stride)
    tokens, channels, memory = side * side, int(model.hidden_dim), int(model.mem_dim)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return (normal(tokens, 1, channels), normal(tokens, 1, channels), normal(frames * tokens, 1, memory),
            normal(frames * tokens, 1, memory), normal(pointer_tokens, 1, memory), normal(pointer_tokens, 1, memory))


def export_memory_attention(model: Any, path: Path, opset: int = 18) -> None:
    """Write the memory-attention graph (dynamic frame and pointer counts) to `path` (.onnx)."""
    from segzero_ros.export.onnx_export import _export

    graph = Sam2MemoryAttentionGraph(model).eval()
    side = int(model.image_size) // int(model.backbone_stride)
    frames = torch.export.Dim("memory_frames", min=1, max=MAX_MEMORY_FRAMES)
    pointer_tokens = torch.export.Dim("pointer_tokens", min=1, max=MAX_POINTER_TOKENS)
    frame_tokens = side * side * frames
    dynamic: dict[str, Any] = {"current": None, "current_pos": None,
                               "memory_frames": {0: frame_tokens}, "memory_frames_pos": {0: frame_tokens},
                               "pointers": {0: pointer_tokens}, "pointers_pos": {0: pointer_tokens}}
    _export(graph, memory_attention_example(model), path, input_names=MEMORY_ATTENTION_INPUTS,
            output_names=MEMORY_ATTENTION_OUTPUTS, opset=opset, dynamic_shapes=dynamic)


__all__ = ["MEMORY_ATTENTION_INPUTS", "MEMORY_ATTENTION_OUTPUTS", "RealRoPEAttention", "Sam2MemoryAttentionGraph",
           "export_memory_attention", "memory_attention_example", "real_rope_memory_attention",
           "rotate_pairs"]
