"""Checks every exported graph must pass before anyone builds a TensorRT engine from it on a robot.

TensorRT cannot run on our development machines, so what it depends on is checked here instead:
1. `onnx.checker` with full_check (which runs strict shape inference) and a second, explicit strict shape
   inference pass with data propagation: every graph output must come out with a known rank and dtype.
2. Only operators in TENSORRT_ONNX_OPS, the allow-list below, and only in the forms TensorRT's ONNX parser
   accepts (Resize modes, constant axes, ...), at an opset TensorRT 10.0 already parses (9..20), so engines
   also build with the TensorRT 10.3 of JetPack 6.

The allow-list is written from onnx-tensorrt's docs/operators.md for TensorRT 10.x (operators marked
supported, floating-point and integer forms). It is deliberately a subset: operators a SAM2 export could
plausibly contain, plus their close relatives. Adding an operator here is a claim that TensorRT 10.0+
parses it; check that table before doing so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segzero_ros.errors import SegZeroError

if TYPE_CHECKING:
    import onnx

TENSORRT_MIN_OPSET = 9
TENSORRT_MAX_OPSET = 20
"""TensorRT 10.0 parses opsets 9..20 (later 10.x releases go further); JetPack 6 ships TensorRT 10.3."""

_NO_RESTRICTION = ""
TENSORRT_ONNX_OPS: dict[str, str] = {
    # Elementwise arithmetic and math.
    "Abs": _NO_RESTRICTION, "Add": _NO_RESTRICTION, "Sub": _NO_RESTRICTION, "Mul": _NO_RESTRICTION,
    "Div": _NO_RESTRICTION, "Pow": _NO_RESTRICTION, "Sqrt": _NO_RESTRICTION, "Reciprocal": _NO_RESTRICTION,
    "Neg": _NO_RESTRICTION, "Exp": _NO_RESTRICTION, "Log": _NO_RESTRICTION, "Erf": _NO_RESTRICTION,
    "Sin": _NO_RESTRICTION, "Cos": _NO_RESTRICTION, "Tan": _NO_RESTRICTION, "Tanh": _NO_RESTRICTION,
    "Floor": _NO_RESTRICTION, "Ceil": _NO_RESTRICTION, "Round": _NO_RESTRICTION, "Sign": _NO_RESTRICTION,
    "Mod": _NO_RESTRICTION, "Max": _NO_RESTRICTION, "Min": _NO_RESTRICTION, "Mean": _NO_RESTRICTION,
    "Sum": _NO_RESTRICTION, "Clip": _NO_RESTRICTION,
    # Activations.
    "Relu": _NO_RESTRICTION, "LeakyRelu": _NO_RESTRICTION, "Sigmoid": _NO_RESTRICTION,
    "HardSigmoid": _NO_RESTRICTION, "Softplus": _NO_RESTRICTION, "Elu": _NO_RESTRICTION, "Selu": _NO_RESTRICTION,
    "Gelu": _NO_RESTRICTION, "PRelu": _NO_RESTRICTION, "Softmax": _NO_RESTRICTION, "LogSoftmax": _NO_RESTRICTION,
    # Comparison and logic.
    "Equal": _NO_RESTRICTION, "Greater": _NO_RESTRICTION, "GreaterOrEqual": _NO_RESTRICTION,
    "Less": _NO_RESTRICTION, "LessOrEqual": _NO_RESTRICTION, "And": "bool only", "Or": "bool only",
    "Xor": "bool only", "Not": "bool only", "Where": _NO_RESTRICTION, "IsNaN": _NO_RESTRICTION,
    # Linear algebra, convolution, pooling, normalisation.
    "MatMul": _NO_RESTRICTION, "Gemm": _NO_RESTRICTION, "Einsum": _NO_RESTRICTION,
    "Conv": "2-D or 3-D", "ConvTranspose": "2-D or 3-D",
    "MaxPool": "2-D or 3-D; no Indices output; dilations all 1",
    "AveragePool": "2-D or 3-D; dilations all 1",
    "GlobalAveragePool": _NO_RESTRICTION, "GlobalMaxPool": _NO_RESTRICTION,
    "BatchNormalization": _NO_RESTRICTION, "InstanceNormalization": _NO_RESTRICTION,
    "LayerNormalization": "only the first output (Y) may be used", "GroupNormalization": _NO_RESTRICTION,
    "ReduceMean": "axes must be constant", "ReduceSum": "axes must be constant", "ReduceMax": "axes must be constant",
    "ReduceMin": "axes must be constant", "ReduceProd": "axes must be constant",
    "ReduceL2": "axes must be constant", "ReduceSumSquare": "axes must be constant",
    "ArgMax": _NO_RESTRICTION, "ArgMin": _NO_RESTRICTION, "TopK": "K constant and < 3840; sorted=1",
    "CumSum": "axis must be constant",
    # Shape and data movement.
    "Shape": _NO_RESTRICTION, "Size": _NO_RESTRICTION, "Reshape": _NO_RESTRICTION, "Flatten": _NO_RESTRICTION,
    "Transpose": _NO_RESTRICTION, "Squeeze": "axes must be constant", "Unsqueeze": "axes must be constant",
    "Concat": _NO_RESTRICTION, "Split": _NO_RESTRICTION, "Slice": _NO_RESTRICTION, "Gather": _NO_RESTRICTION,
    "GatherElements": _NO_RESTRICTION, "GatherND": _NO_RESTRICTION, "ScatterND": "reduction must be none",
    "ScatterElements": _NO_RESTRICTION, "Expand": _NO_RESTRICTION, "Tile": _NO_RESTRICTION, "Pad": _NO_RESTRICTION,
    "Range": _NO_RESTRICTION, "OneHot": "depth must be constant", "Trilu": _NO_RESTRICTION,
    "DepthToSpace": _NO_RESTRICTION, "SpaceToDepth": _NO_RESTRICTION,
    "Constant": "no sparse or string values", "ConstantOfShape": _NO_RESTRICTION,
    "Identity": _NO_RESTRICTION, "Cast": _NO_RESTRICTION, "CastLike": _NO_RESTRICTION,
    "Dropout": "inference only",
    "Resize": "modes nearest/linear; no antialias; half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, "
              "asymmetric or align_corners coordinates; stretch aspect policy",
    "If": "both branches' outputs of equal rank",
}

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
_CONSTANT_INPUTS = {  # operator → index of the input TensorRT needs to know at build time
    "Squeeze": 1, "Unsqueeze": 1, "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1,
    "ReduceProd": 1, "ReduceL2": 1, "ReduceSumSquare": 1, "CumSum": 1, "OneHot": 1, "TopK": 1,
}


class GraphCheckError(SegZeroError):
    """An exported graph fails the ONNX checker, shape inference or the TensorRT allow-list."""


@dataclass(frozen=True)
class GraphReport:
    path: Path
    opset: int
    operators: dict[str, int]
    """Operator type → number of nodes."""
    output_shapes: dict[str, tuple[int | str, ...]]
    """As inferred by strict shape inference: ints for fixed sizes, names for dynamic ones."""


def check_exported_graph(path: Path) -> GraphReport:
    """Run all checks on one .onnx file; raise GraphCheckError listing every problem found."""
    import onnx

    model = onnx.load(str(path))
    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        problems.append(f"onnx.checker: {error}")
    output_shapes: dict[str, tuple[int | str, ...]] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        for output in inferred.graph.output:
            shape = _inferred_shape(output)
            if shape is None:
                problems.append(f"shape inference: output {output.name!r} has no inferred shape")
            else:
                output_shapes[output.name] = shape
    except onnx.shape_inference.InferenceError as error:
        problems.append(f"shape inference: {error}")
    problems.extend(tensorrt_problems(model))
    if problems:
        raise GraphCheckError(f"{path.name} is not fit for TensorRT:\n  " + "\n  ".join(problems))
    return GraphReport(path=path, opset=default_opset(model),
                       operators=dict(sorted(Counter(node.op_type for node in model.graph.node).items())),
                       output_shapes=output_shapes)


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Everything in `model` TensorRT's ONNX parser would reject; empty when the graph is fit."""
    problems: list[str] = []
    opset = default_opset(model)
    if not TENSORRT_MIN_OPSET <= opset <= TENSORRT_MAX_OPSET:
        problems.append(f"opset {opset} is outside {TENSORRT_MIN_OPSET}..{TENSORRT_MAX_OPSET} (TensorRT 10.0)")
    graph = model.graph
    constants = {initializer.name for initializer in graph.initializer}
    constants.update(output for node in graph.node if node.op_type == "Constant" for output in node.output)
    consumed = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for node in graph.node:
        where = f"{node.op_type} node {node.name or '(unnamed)'}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} (TensorRT would need a plugin)")
            continue
        if node.op_type not in TENSORRT_ONNX_OPS:
            problems.append(f"{where}: operator not in the TensorRT allow-list")
            continue
        attributes = _attributes(node)
        index = _CONSTANT_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
            problems.append(f"{where}: input {index} must be a constant for TensorRT")
        if node.op_type == "Resize":
            problems.extend(_resize_problems(where, attributes))
        elif node.op_type in ("MaxPool", "AveragePool"):
            if any(d != 1 for d in attributes.get("dilations", [])):
                problems.append(f"{where}: dilations other than 1")
            if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1] in consumed:
                problems.append(f"{where}: the Indices output is used")
        elif node.op_type == "LayerNormalization":
            if any(name and name in consumed for name in node.output[1:]):
                problems.append(f"{where}: Mean/InvStdDev outputs are used")
        elif node.op_type == "ScatterND" and attributes.get("reduction", b"none") not in (b"none", "none"):
            problems.append(f"{where}: reduction {attributes['reduction']!r}")
    return problems


def _resize_problems(where: str, attributes: dict[str, Any]) -> list[str]:
    problems = []
    mode = _text(attributes.get("mode", b"nearest"))
    coordinates = _text(attributes.get("coordinate_transformation_mode", b"half_pixel"))
    if mode not in _RESIZE_MODES:
        problems.append(f"{where}: mode {mode!r} (TensorRT: nearest or linear)")
    if coordinates not in _RESIZE_COORDINATES:
        problems.append(f"{where}: coordinate_transformation_mode {coordinates!r}")
    if mode == "nearest" and _text(attributes.get("nearest_mode", b"round_prefer_floor")) not in _RESIZE_NEAREST_MODES:
        problems.append(f"{where}: nearest_mode {_text(attributes['nearest_mode'])!r}")
    if int(attributes.get("antialias", 0)):
        problems.append(f"{where}: antialias (TensorRT does not antialias)")
    if _text(attributes.get("keep_aspect_ratio_policy", b"stretch")) != "stretch":
        problems.append(f"{where}: keep_aspect_ratio_policy {_text(attributes['keep_aspect_ratio_policy'])!r}")
    return problems


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    import onnx

    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _inferred_shape(value: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.elem_type or not tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(str(dim.dim_param))
        else:
            return None
    return tuple(dims)
