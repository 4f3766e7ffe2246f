"""The first tracking graph for onnxruntime / TensorRT: SAM2's memory attention with real-valued rotary
encoding. Checked against sam2's own module (torch, tiny hiera-t) and, exported with dynamic memory sizes,
in onnxruntime; the graph passes the TensorRT allow-list check."""

from __future__ import annotations

import numpy as np
import pytest

from segzero_ros.core.geometry import Box, ObjectPrompt, Point

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def sam2_memory_conditioned(model, inputs, max_pointers):
    """What sam2 itself computes from the graph's inputs (its complex RoPE and its own pointer encoding, as
    `_prepare_memory_conditioned_features` does): the reference the graph is checked against."""
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    current, current_pos, frames, frames_pos, pointers, offsets = inputs
    channels, mem_dim = int(model.hidden_dim), int(model.mem_dim)
    tpos_dim = channels if model.proj_tpos_enc_in_obj_ptrs else mem_dim
    pointer_pos = model.obj_ptr_tpos_proj(get_1d_sine_pe(offsets / (max_pointers - 1), dim=tpos_dim))
    pointer_pos = pointer_pos.unsqueeze(1).expand(-1, 1, mem_dim)
    split = channels // mem_dim
    tokens = pointers.reshape(-1, 1, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
    pointer_pos = pointer_pos.repeat_interleave(split, dim=0)
    return model.memory_attention(curr=current, memory=torch.cat([frames, tokens]), curr_pos=current_pos,
                                  memory_pos=torch.cat([frames_pos, pointer_pos]), num_obj_ptr_tokens=tokens.shape[0])


@pytest.fixture(scope="module")
def video_model(tiny_sam2):
    from segzero_ros.segmentation.sam2_backend import build_sam2_model

    model, _ = build_sam2_model(tiny_sam2.segmenter_config(), video=True)
    return model.eval()


@pytest.mark.parametrize(("frames", "pointers"), [(1, 1), (3, 4), (7, 16)])
def test_real_valued_rope_equals_sams_complex_rope(video_model, frames, pointers):
    from sam2.modeling.sam.transformer import RoPEAttention

    from segzero_ros.export.tracking_graphs import (
        RealRoPEAttention,
        Sam2MemoryAttentionGraph,
        memory_attention_example,
    )

    graph = Sam2MemoryAttentionGraph(video_model, max_pointers=16).eval()
    inputs = memory_attention_example(video_model, frames, pointers)
    with torch.no_grad():
        expected, got = sam2_memory_conditioned(video_model, inputs, 16), graph(*inputs)
    assert got.shape == expected.shape == inputs[0].shape
    assert float((got - expected).abs().max()) <= 1e-6  # measured: 0 (bit-identical) on this CPU
    # Not a trivial pass: every layer's attentions are the real-valued ones, the model's own are untouched.
    layers = graph.memory_attention.layers
    assert len(layers) == len(video_model.memory_attention.layers) == 4
    assert all(type(layer.cross_attn_image) is RealRoPEAttention for layer in layers)
    assert all(type(layer.cross_attn_image) is RoPEAttention for layer in video_model.memory_attention.layers)
    assert float(expected.std()) > 0.1


SHARED_CACHE = "segzero-onnx-cache"  # the tiny export test_onnx_export / test_onnx_backend build


@pytest.fixture(scope="module")
def onnx_tracker(tmp_path_factory, tiny_sam2):
    """build_tracker on an onnxruntime config whose export lacks the tracking graphs: they are added."""
    from segzero_ros.export.onnx_export import ensure_onnx_export
    from segzero_ros.segmentation.manifest import load_manifest
    from segzero_ros.tracking import build_tracker

    folder = ensure_onnx_export(tiny_sam2.segmenter_config(), "fp16",
                                cache_root=tmp_path_factory.getbasetemp() / SHARED_CACHE)
    built = build_tracker(tiny_sam2.segmenter_config(backend="onnxruntime", onnx_dir=str(folder), cpu_threads=1))
    tracking = load_manifest(folder).tracking
    assert tracking is not None and set(tracking.graphs) == {
        "memory_attention", "prompted_heads", "tracking_heads", "prompted_memory", "memory"}
    assert all((folder / spec.file).is_file() for spec in tracking.graphs.values())
    yield built
    built.close()


def test_onnxruntime_tracker_equals_the_torch_tracker(onnx_tracker, tiny_sam2):
    """Same frames, same prompt: per-frame low-res logits within 1e-4, masks IoU ≥ 0.999, same presence."""
    from segzero_ros.tracking import build_tracker
    from tests.test_tracking import BOX, POINTS, moving_disc

    frames = moving_disc(24)
    reference = build_tracker(tiny_sam2.segmenter_config())
    try:
        prompt = ObjectPrompt(BOX, POINTS)
        pairs = [(reference.start(frames[0], prompt), onnx_tracker.start(frames[0], prompt))]
        worst = float(np.abs(onnx_tracker.low_res_logits() - reference.low_res_logits().numpy()).max())
        for frame in frames[1:]:
            pairs.append((reference.track(frame), onnx_tracker.track(frame)))
            worst = max(worst, float(np.abs(onnx_tracker.low_res_logits() - reference.low_res_logits().numpy()).max()))
    finally:
        reference.close()
    print(f"max |Δ low-res logits| over {len(frames)} frames: {worst:.2e}")
    assert worst <= 1e-4
    for want, got in pairs:
        assert (got.present, got.frame_index) == (want.present, want.frame_index)
        assert got.score == pytest.approx(want.score, abs=1e-4)
        union = np.logical_or(want.mask, got.mask).sum()
        assert union == 0 or np.logical_and(want.mask, got.mask).sum() / union >= 0.999
    assert sum(want.present for want, _ in pairs) > 0


def test_onnxruntime_tracker_memory_stays_bounded(onnx_tracker):
    from tests.test_tracking import BOX, POINTS, moving_disc

    frames = moving_disc(6)
    onnx_tracker.start(frames[0], ObjectPrompt(BOX, POINTS))
    stored = []
    for index in range(1, 25):
        onnx_tracker.track(frames[index % len(frames)])
        stored.append(onnx_tracker.stored_frames)
    assert max(stored) == stored[-1] <= 1 + 16 and stored.index(max(stored)) < 20
    with pytest.raises(ValueError, match="reset and start again"):
        onnx_tracker.track(np.zeros((60, 80, 3), np.uint8))
    onnx_tracker.reset()
    assert onnx_tracker.start(np.zeros((60, 80, 3), np.uint8), ObjectPrompt(Box(10, 10, 30, 30))).mask.shape == (60, 80)


def test_memory_attention_graph_takes_every_memory_size_and_passes_the_tensorrt_checks(onnx_tracker, video_model):
    import onnxruntime

    from segzero_ros.export.graph_check import check_exported_graph
    from segzero_ros.export.tracking_graphs import (
        MEMORY_ATTENTION_INPUTS,
        memory_attention_example,
    )

    folder = onnx_tracker.folder
    for role in ("memory_attention", "prompted_heads", "tracking_heads", "prompted_memory", "memory"):
        check_exported_graph(folder / onnx_tracker.manifest.tracking.graphs[role].file)  # TensorRT allow-list too
    path = folder / onnx_tracker.manifest.tracking.graphs["memory_attention"].file
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames, pointers in [(1, 1), (2, 3), (5, 9), (7, 16)]:  # one graph, every memory size
        inputs = memory_attention_example(video_model, frames, pointers, seed=frames)
        with torch.no_grad():
            expected = sam2_memory_conditioned(video_model, inputs, 16).numpy()
        (got,) = session.run(None, {name: t.numpy() for name, t in zip(MEMORY_ATTENTION_INPUTS, inputs, strict=True)})
        assert float(np.abs(got - expected).max()) <= 1e-4  # measured ≤ 2e-6


def test_tensorrt_tracker_profiles_cover_the_tracking_graphs_and_a_missing_tensorrt_is_one_clear_error(
        onnx_tracker, tiny_sam2):
    """TensorRT cannot run here (no GPU): its optimisation profiles for the dynamic memory sizes are computed
    from the manifest, and asking for the tensorrt tracker without TensorRT says what to install."""
    import importlib.util

    from segzero_ros.errors import BackendUnavailableError
    from segzero_ros.segmentation.tensorrt_backend import profile_shapes
    from segzero_ros.tracking import build_tracker

    graphs = onnx_tracker.manifest.tracking.graphs
    assert profile_shapes(graphs["memory_attention"]) == {
        "memory_frames": ((256, 1, 64), (7 * 256, 1, 64), (16 * 256, 1, 64)),
        "memory_frames_pos": ((256, 1, 64), (7 * 256, 1, 64), (16 * 256, 1, 64)),
        "object_pointers": ((1, 1, 256), (16, 1, 256), (16, 1, 256)),
        "pointer_offsets": ((1,), (16,), (16,)),
    }
    assert set(profile_shapes(graphs["prompted_heads"])) == {"point_coords", "point_labels"}
    assert profile_shapes(graphs["tracking_heads"]) == profile_shapes(graphs["memory"]) == {}
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(BackendUnavailableError, match="install TensorRT"):
            build_tracker(tiny_sam2.segmenter_config(backend="tensorrt", onnx_dir=str(onnx_tracker.folder)))


def test_onnxruntime_tracker_follows_several_objects_each_as_alone(onnx_tracker):
    from tests.test_tracking import BOX, POINTS, moving_disc

    frames = moving_disc(4)
    second = ObjectPrompt(Box(100, 20, 150, 70), (Point(125, 45),))
    together = [onnx_tracker.start_objects(frames[0], [ObjectPrompt(BOX, POINTS), second])]
    together += [onnx_tracker.track_objects(frame) for frame in frames[1:]]
    for index, prompt in enumerate([ObjectPrompt(BOX, POINTS), second]):
        alone = [onnx_tracker.start(frames[0], prompt)] + [onnx_tracker.track(frame) for frame in frames[1:]]
        for both, single in zip(together, alone, strict=True):
            np.testing.assert_array_equal(both[index].mask, single.mask)
            assert both[index].score == single.score
