"""The first tracking graph for onnxruntime / TensorRT: SAM2's memory attention with real-valued rotary
encoding. Checked against sam2's own module (torch, tiny hiera-t) and, exported with dynamic memory sizes,
in onnxruntime; the graph passes the TensorRT allow-list check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def video_model(tiny_sam2):
    from segzero_ros.segmentation.sam2_backend import build_sam2_model

    model, _ = build_sam2_model(tiny_sam2.segmenter_config(), video=True)
    return model.eval()


def sam2_memory_attention(model, inputs):
    current, current_pos, frames, frames_pos, pointers, pointers_pos = inputs
    return model.memory_attention(curr=current, memory=torch.cat([frames, pointers]), curr_pos=current_pos,
                                  memory_pos=torch.cat([frames_pos, pointers_pos]),
                                  num_obj_ptr_tokens=pointers.shape[0])


@pytest.mark.parametrize(("frames", "pointer_tokens"), [(1, 4), (3, 16), (7, 64)])
def test_real_valued_rope_equals_sams_complex_rope(video_model, frames, pointer_tokens):
    from sam2.modeling.sam.transformer import RoPEAttention

    from segzero_ros.export.memory_graphs import RealRoPEAttention, Sam2MemoryAttentionGraph, memory_attention_example

    graph = Sam2MemoryAttentionGraph(video_model).eval()
    inputs = memory_attention_example(video_model, frames, pointer_tokens)
    with torch.no_grad():
        expected, got = sam2_memory_attention(video_model, inputs), graph(*inputs)
    assert got.shape == expected.shape == inputs[0].shape
    assert float((got - expected).abs().max()) <= 1e-6  # measured: 0 (bit-identical) on this CPU
    # Not a trivial pass: every layer's attentions are the real-valued ones, the model's own are untouched.
    layers = graph.memory_attention.layers
    assert len(layers) == len(video_model.memory_attention.layers) == 4
    assert all(type(layer.cross_attn_image) is RealRoPEAttention for layer in layers)
    assert all(type(layer.cross_attn_image) is RoPEAttention for layer in video_model.memory_attention.layers)
    assert float(expected.std()) > 0.1


def test_memory_attention_graph_in_onnxruntime_with_dynamic_memory_sizes(video_model, tmp_path: Path):
    import onnxruntime

    from segzero_ros.export.graph_check import check_exported_graph
    from segzero_ros.export.memory_graphs import (
        MEMORY_ATTENTION_INPUTS,
        export_memory_attention,
        memory_attention_example,
    )

    path = tmp_path / "memory_attention.onnx"
    export_memory_attention(video_model, path)
    report = check_exported_graph(path)  # onnx.checker, strict shape inference, TensorRT allow-list
    assert report.operators.get("MatMul", 0) > 0 and "Softmax" in report.operators
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames, pointer_tokens in [(1, 4), (2, 8), (5, 20), (7, 64)]:  # one graph, every memory size
        inputs = memory_attention_example(video_model, frames, pointer_tokens, seed=frames)
        with torch.no_grad():
            expected = sam2_memory_attention(video_model, inputs).numpy()
        (got,) = session.run(None, {name: t.numpy() for name, t in zip(MEMORY_ATTENTION_INPUTS, inputs, strict=True)})
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-4  # measured ≤ 2e-6
