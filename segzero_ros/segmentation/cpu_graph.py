"""A CPU-only rewrite of the exported encoder graph for onnxruntime's CPU provider.

The shipped graphs stay plain ONNX (opset 18, TensorRT allow-list). onnxruntime's own graph optimiser does
not recognise two patterns the dynamo exporter writes for Hiera, so on its CPU provider they run as chains of
whole-tensor elementwise passes and a materialised attention matrix:

- GELU as x · (0.5 · (erf(x / √2) + 1)): five passes over the largest activations of the encoder; replaced by
  onnxruntime's fused `com.microsoft.Gelu` (same erf formula, one pass).
- scaled-dot-product attention as (q·s)(kᵀ·s) → Softmax → ·v: for Hiera's global-attention blocks the score
  matrix is heads × 4096² floats (256 MB per block at 1024 px) and is written and read three times; replaced
  by `com.microsoft.MultiHeadAttention`, whose CPU kernel tiles it (flash attention) when sequences are long.
  Short (windowed) attention stays as it is: there the decomposed form is as fast or faster.

The rewrite happens in memory when the CPU provider loads the encoder; nothing is written next to the export
and the TensorRT path never sees these operators. Any pattern that does not match exactly is left alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segzero_ros.errors import BackendUnavailableError, ModelLoadError

if TYPE_CHECKING:
    import onnx

MICROSOFT_DOMAIN = "com.microsoft"
DEFAULT_MIN_ATTENTION_LENGTH = 2048
"""Fuse attention only when query and key sequences are at least this long (Hiera's global blocks at 1024 px
have 4096). Measured with onnxruntime 1.32 on one core: 4096 tokens 233 → 193 ms, 1024 tokens equal,
≤ 256 tokens (the windowed blocks) the decomposed form is faster."""

_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class CpuRewriteReport:
    """How many patterns the rewrite replaced (zero of both means the graph was returned unchanged)."""

    gelu: int
    attention: int


class _Graph:
    """Producer/consumer indices over a GraphProto plus the constant scalars it holds."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.shapes = shapes
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.scalars: dict[str, float] = {}
        for tensor in graph.initializer:
            if math.prod(tensor.dims) == 1:
                self.scalars[tensor.name] = float(numpy_helper.to_array(tensor).reshape(()))
        for node in graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                tensor = node.attribute[0].t
                if math.prod(tensor.dims) == 1:
                    self.scalars[node.output[0]] = float(numpy_helper.to_array(tensor).reshape(()))
        self.graph_outputs = {value.name for value in graph.output}

    def single_consumer(self, name: str) -> Any | None:
        found = self.consumers.get(name, [])
        return found[0] if len(found) == 1 and name not in self.graph_outputs else None

    def made_by(self, name: str, op_type: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx") else None

    def scalar_operand(self, node: Any, value: float, tolerance: float = 1e-6) -> str | None:
        """The other input of a binary node whose one input is the scalar constant `value`."""
        first, second = node.input
        if abs(self.scalars.get(second, math.nan) - value) <= tolerance * max(1.0, abs(value)):
            return str(first)
        if abs(self.scalars.get(first, math.nan) - value) <= tolerance * max(1.0, abs(value)):
            return str(second)
        return None


def load_encoder_for_cpu(path: Path) -> tuple[onnx.ModelProto, CpuRewriteReport]:
    """Read the encoder graph at `path` and apply the rewrite (the CPU backend's fp32 and int8 loads)."""
    try:
        import onnx
    except ImportError as error:
        raise BackendUnavailableError("the CPU encoder rewrite needs the onnx package (pip install onnx), "
                                      "or load with cpu_graph_rewrite=False") from error
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    return model, optimize_encoder_for_cpu(model)


def optimize_encoder_for_cpu(model: onnx.ModelProto,
                             min_attention_length: int = DEFAULT_MIN_ATTENTION_LENGTH) -> CpuRewriteReport:
    """Rewrite `model` in place for onnxruntime's CPU provider (see the module docstring)."""
    import onnx

    if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in model.graph.node for attribute in node.attribute):
        return CpuRewriteReport(gelu=0, attention=0)  # subgraphs may read outer values: leave such graphs alone
    inferred = onnx.shape_inference.infer_shapes(_without_weights(model), strict_mode=False)
    shapes = _static_shapes(inferred.graph)
    graph = _Graph(model.graph, shapes)
    gelu = _fuse_gelu(graph)
    graph = _Graph(model.graph, shapes)
    attention = _fuse_attention(graph, min_attention_length)
    if gelu or attention:
        _remove_dead_nodes(model.graph)
        if not any(opset.domain == MICROSOFT_DOMAIN for opset in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(MICROSOFT_DOMAIN, 1))
    return CpuRewriteReport(gelu=gelu, attention=attention)


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose large weights are only declared (shape inference needs their shapes, not their bytes),
    so hiera-large's ~900 MB of weights are not duplicated."""
    import onnx

    light = onnx.ModelProto()
    initializers = list(model.graph.initializer)
    del model.graph.initializer[:]
    try:
        light.CopyFrom(model)
    finally:
        model.graph.initializer.extend(initializers)
    for tensor in initializers:
        if math.prod(tensor.dims) <= 16:
            light.graph.initializer.append(tensor)
        else:  # shape only, as a graph input: enough for shape inference
            light.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return light


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(int(dim.dim_value) for dim in dims)
    return shapes


def _fuse_gelu(graph: _Graph) -> int:
    """x · (0.5 · (erf(x/√2) + 1)) in any association of the two products → com.microsoft.Gelu(x)."""
    import onnx

    replacements = []
    for erf in graph.graph.node:
        if erf.op_type != "Erf" or erf.domain not in ("", "ai.onnx"):
            continue
        x = None
        scaled = graph.made_by(erf.input[0], "Div")
        if scaled is not None and abs(graph.scalars.get(scaled.input[1], math.nan) - _SQRT2) <= 1e-6:
            x = str(scaled.input[0])  # x / √2 (never √2 / x)
        else:
            scaled = graph.made_by(erf.input[0], "Mul")
            x = graph.scalar_operand(scaled, 1.0 / _SQRT2) if scaled is not None else None
        if scaled is None or x is None or not _same(graph.single_consumer(scaled.output[0]), erf):
            continue
        add = graph.single_consumer(erf.output[0])
        if add is None or add.op_type != "Add" or graph.scalar_operand(add, 1.0) != erf.output[0]:
            continue
        first = graph.single_consumer(add.output[0])
        if first is None or first.op_type != "Mul":
            continue
        last = _gelu_tail(graph, first, add.output[0], x)
        if last is not None:
            replacements.append((last, onnx.helper.make_node(
                "Gelu", [x], [last.output[0]], name=f"{last.name or x}_fused_gelu", domain=MICROSOFT_DOMAIN)))
    _replace_nodes(graph.graph, replacements)
    return len(replacements)


def _gelu_tail(graph: _Graph, first: Any, erf_plus_one: str, x: str) -> Any | None:
    """The Mul that completes x · 0.5 · (erf + 1) after `first` (the Mul that consumes erf + 1), or None."""
    other = _other_input(first, erf_plus_one)
    half_x = graph.made_by(other, "Mul")
    if half_x is not None and graph.scalar_operand(half_x, 0.5) == x and _same(graph.single_consumer(other), first):
        return first  # (x · 0.5) · (erf + 1)
    second = graph.single_consumer(first.output[0])
    if second is None or second.op_type != "Mul":
        return None
    outer = _other_input(second, first.output[0])
    # 0.5 and x as the two remaining factors, in either product.
    factors = sorted([other, outer], key=lambda name: name in graph.scalars)
    return second if factors[0] == x and abs(graph.scalars.get(factors[1], math.nan) - 0.5) <= 1e-6 else None


def _fuse_attention(graph: _Graph, min_length: int) -> int:
    """Softmax((q·s₁)(kᵀ·s₂))·v over BNSH tensors that are transposes of BSNH ones → MultiHeadAttention on
    the BSNH tensors (as B×S×(N·H)), scale s₁·s₂. The output keeps BNSH unless its only consumer transposes
    it back to BSNH, in which case that transpose disappears too."""
    import onnx

    replacements = []
    constants = []
    for softmax in graph.graph.node:
        if softmax.op_type != "Softmax" or softmax.domain not in ("", "ai.onnx"):
            continue
        match = _attention_match(graph, softmax)
        if match is None:
            continue
        q_bsnh, k_bsnh, v_bsnh, scale, output_matmul = match
        batch, q_length, heads, head_size = graph.shapes[q_bsnh]
        kv_length = graph.shapes[k_bsnh][1]
        if min(q_length, kv_length) < min_length:
            continue
        prefix = output_matmul.name or output_matmul.output[0]
        hidden = heads * head_size
        nodes = []
        for role, source, length in (("q", q_bsnh, q_length), ("k", k_bsnh, kv_length), ("v", v_bsnh, kv_length)):
            shape_name = f"{prefix}_{role}_bsd_shape"
            constants.append(onnx.numpy_helper.from_array(_int64([batch, length, hidden]), shape_name))
            nodes.append(onnx.helper.make_node("Reshape", [source, shape_name], [f"{prefix}_{role}_bsd"]))
        fused = f"{prefix}_attention_bsd"
        nodes.append(onnx.helper.make_node(
            "MultiHeadAttention", [f"{prefix}_q_bsd", f"{prefix}_k_bsd", f"{prefix}_v_bsd"], [fused],
            name=f"{prefix}_fused_attention", domain=MICROSOFT_DOMAIN, num_heads=heads, scale=scale))
        bsnh_shape = f"{prefix}_bsnh_shape"
        constants.append(onnx.numpy_helper.from_array(_int64([batch, q_length, heads, head_size]), bsnh_shape))
        back = graph.single_consumer(output_matmul.output[0])
        if back is not None and back.op_type == "Transpose" and _perm(back) == [0, 2, 1, 3]:
            nodes.append(onnx.helper.make_node("Reshape", [fused, bsnh_shape], [back.output[0]]))
            replacements.append((back, nodes))
        else:
            nodes.append(onnx.helper.make_node("Reshape", [fused, bsnh_shape], [f"{prefix}_attention_bsnh"]))
            nodes.append(onnx.helper.make_node("Transpose", [f"{prefix}_attention_bsnh"], [output_matmul.output[0]],
                                               perm=[0, 2, 1, 3]))
            replacements.append((output_matmul, nodes))
    graph.graph.initializer.extend(constants)
    _replace_nodes(graph.graph, replacements)
    return len(replacements)


def _attention_match(graph: _Graph, softmax: Any) -> tuple[str, str, str, float, Any] | None:
    """(q, k, v as BSNH tensor names, scale, the P·v MatMul) for an attention Softmax, else None."""
    axis = next((attribute.i for attribute in softmax.attribute if attribute.name == "axis"), -1)
    scores = graph.made_by(softmax.input[0], "MatMul")
    output = graph.single_consumer(softmax.output[0])
    if scores is None or output is None or output.op_type != "MatMul" or output.input[0] != softmax.output[0]:
        return None
    if axis not in (-1, 3) or not _same(graph.single_consumer(scores.output[0]), softmax):
        return None
    scaled_q = graph.made_by(scores.input[0], "Mul")
    scaled_k = graph.made_by(scores.input[1], "Mul")
    if scaled_q is None or scaled_k is None:
        return None
    q_scale = _scalar_factor(graph, scaled_q)
    k_scale = _scalar_factor(graph, scaled_k)
    if q_scale is None or k_scale is None:
        return None
    q_bsnh = _bsnh_source(graph, q_scale[0])
    k_bsnh = _bsnh_source_of_transposed(graph, k_scale[0])
    v_bsnh = _bsnh_source(graph, output.input[1])
    if q_bsnh is None or k_bsnh is None or v_bsnh is None:
        return None
    shapes = [graph.shapes.get(name) for name in (q_bsnh, k_bsnh, v_bsnh)]
    if any(shape is None or len(shape) != 4 for shape in shapes):
        return None
    q_shape, k_shape, v_shape = shapes
    assert q_shape is not None and k_shape is not None and v_shape is not None
    if not (q_shape[0] == k_shape[0] == v_shape[0] and q_shape[2:] == k_shape[2:] == v_shape[2:]
            and k_shape[1] == v_shape[1]):
        return None
    return q_bsnh, k_bsnh, v_bsnh, q_scale[1] * k_scale[1], output


def _scalar_factor(graph: _Graph, mul: Any) -> tuple[str, float] | None:
    first, second = mul.input
    if second in graph.scalars and first not in graph.scalars:
        return str(first), graph.scalars[second]
    if first in graph.scalars and second not in graph.scalars:
        return str(second), graph.scalars[first]
    return None


def _bsnh_source(graph: _Graph, bnsh: str) -> str | None:
    """The B×S×N×H tensor that Transpose(perm 0,2,1,3) turned into `bnsh`."""
    transpose = graph.made_by(bnsh, "Transpose")
    return str(transpose.input[0]) if transpose is not None and _perm(transpose) == [0, 2, 1, 3] else None


def _bsnh_source_of_transposed(graph: _Graph, bnhs: str) -> str | None:
    """The B×S×N×H tensor behind kᵀ (B×N×H×S): a Transpose(0,1,3,2) of BNSH, or the exporter's
    Reshape(B·N×S×H) → Transpose(0,2,1) → Reshape(B×N×H×S) of it."""
    transpose = graph.made_by(bnhs, "Transpose")
    if transpose is not None and _perm(transpose) == [0, 1, 3, 2]:
        return _bsnh_source(graph, transpose.input[0])
    outer = graph.made_by(bnhs, "Reshape")
    middle = graph.made_by(outer.input[0], "Transpose") if outer is not None else None
    inner = graph.made_by(middle.input[0], "Reshape") if middle is not None else None
    if inner is None or middle is None or _perm(middle) != [0, 2, 1]:
        return None
    bnsh_shape = graph.shapes.get(inner.input[0])
    flat_shape = graph.shapes.get(inner.output[0])
    result_shape = graph.shapes.get(bnhs)
    if bnsh_shape is None or flat_shape is None or result_shape is None or len(bnsh_shape) != 4:
        return None
    batch, heads, length, size = bnsh_shape
    if flat_shape != (batch * heads, length, size) or result_shape != (batch, heads, size, length):
        return None
    return _bsnh_source(graph, inner.input[0])


def _same(node: Any | None, other: Any) -> bool:
    """Node identity by output names (protobuf hands out fresh wrapper objects, so `is` is unreliable)."""
    return node is not None and list(node.output) == list(other.output)


def _perm(node: Any) -> list[int]:
    return next((list(attribute.ints) for attribute in node.attribute if attribute.name == "perm"), [])


def _other_input(node: Any, name: str) -> str:
    first, second = node.input
    return str(second if first == name else first)


def _int64(values: Iterable[int]) -> Any:
    import numpy as np

    return np.asarray(list(values), dtype=np.int64)


def _replace_nodes(graph: onnx.GraphProto, replacements: list[tuple[Any, Any]]) -> None:
    """Put each replacement (one node or a list) where the node it replaces was; the bypassed producers
    become dead and are removed afterwards."""
    by_output = {old.output[0]: new if isinstance(new, list) else [new] for old, new in replacements}
    if not by_output:
        return
    rebuilt = []
    for node in graph.node:
        rebuilt.extend(by_output.get(node.output[0], [node]) if node.output else [node])
    del graph.node[:]
    graph.node.extend(rebuilt)


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    needed = {value.name for value in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = Counter(name for node in graph.node for name in node.input)
    unused = [tensor for tensor in graph.initializer if tensor.name not in used and tensor.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)
