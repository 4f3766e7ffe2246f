"""The onnxruntime segmenter against the sam2 torch predictor on the tiny offline SAM2 (random weights):
low-res logits, chosen mask and score must match; plus the shared numpy pre/post-processing against the
torch code it replaces, registry/config selection, the pipeline integration, and the TensorRT backend's
parts that need no GPU."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from segzero_ros.config import OnnxRuntimeSegmenterConfig, PipelineConfig, ReasonerConfig, TensorRTSegmenterConfig
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.segmentation.base import Segmenter
from segzero_ros.segmentation.manifest import MANIFEST_FILENAME, GraphSpec, TensorSpec, load_manifest
from segzero_ros.segmentation.processing import (
    LogitUpsampler,
    MaskSelection,
    bilinear_matrix,
    decoder_prompt,
    normalize_for_sam2,
    resize_for_encoder,
    select_candidates,
)

pytestmark = pytest.mark.slow

SIZE = 256
SHARED_CACHE = "segzero-onnx-cache"  # same tmp cache as test_onnx_export.py: one export per session
ODD = (517, 333)  # H, W: odd, not square (catches H/W swaps); both sides shrink to 256 (antialiased)
WIDE = (180, 1280)  # rows grow, columns shrink: both resampling directions in one image


def rng_image(height: int, width: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def prompt_for(height: int, width: int) -> tuple[Box, list[Point]]:
    return (Box(width // 8, height // 9, width * 7 // 8, height * 8 // 9),
            [Point(width // 3, height // 3), Point(width * 2 // 3, height * 3 // 4)])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sam2) -> Path:
    from segzero_ros.export.onnx_export import ensure_onnx_export

    return ensure_onnx_export(tiny_sam2.segmenter_config(), "fp16",
                              cache_root=tmp_path_factory.getbasetemp() / SHARED_CACHE)


@pytest.fixture(scope="module")
def predictor(tiny_sam2):
    """SAM2ImagePredictor on the tiny checkpoint, called exactly as Seg-Zero's scripts call it."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2(tiny_sam2.config, str(tiny_sam2.checkpoint), device="cpu",
                       hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    built = SAM2ImagePredictor(model)
    built._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
    return built


def predict(predictor, image: np.ndarray, box: Box, points: list[Point], multimask: bool = True):
    import torch

    with torch.inference_mode():
        predictor.set_image(image)
        return predictor.predict(point_coords=[p.as_list() for p in points] if points else None,
                                 point_labels=[1] * len(points) if points else None,
                                 box=box.as_list(), multimask_output=multimask)


def side_by_side(segmenter, predictor, image_hw: tuple[int, int]):
    """The torch predictor's (masks, scores, low-res logits) and the segmenter's (low-res prediction, output)
    on the same random image and prompt."""
    image = rng_image(*image_hw)
    box, points = prompt_for(*image_hw)
    masks, scores, low_res = predict(predictor, image, box, points)
    segmenter.set_image(image)
    return masks, scores, low_res, segmenter.predict_low_res(ObjectPrompt(box, points)), segmenter.segment(ObjectPrompt(box, points))


@pytest.fixture(scope="module")
def segmenter(export_dir: Path):
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    loaded = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, precision="fp32", device="cpu", cpu_threads=1)
    yield loaded
    loaded.close()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


# --- parity with the torch predictor -------------------------------------------------------------------


@pytest.mark.parametrize("image_hw", [ODD, WIDE])
def test_fp32_graphs_match_torch_predictor(segmenter, predictor, image_hw) -> None:
    image = rng_image(*image_hw)
    box, points = prompt_for(*image_hw)
    masks, scores, low_res = predict(predictor, image, box, points)
    best = int(np.argmax(scores))
    assert any((masks[i] != masks[best]).any() for i in range(3) if i != best), "the choice would not matter"

    segmenter.set_image(image)
    low = segmenter.predict_low_res(ObjectPrompt(box, points))
    assert low.logits.shape == low_res.shape == (3, 64, 64)
    assert np.abs(low.logits - low_res).max() < 1e-4
    np.testing.assert_allclose(low.scores, scores, atol=1e-5)
    output = segmenter.segment(ObjectPrompt(box, points))
    assert output.mask.shape == image_hw and output.mask.dtype == np.bool_
    assert int(np.argmax(low.scores)) == best
    assert output.score == pytest.approx(float(scores[best]), abs=1e-5)
    assert iou(output.mask, masks[best] > 0) >= 0.99
    assert (output.mask != (masks[best] > 0)).sum() <= 1e-4 * output.mask.size  # a handful of boundary pixels


def test_matches_sam2_segmenter_box_only_and_single_mask(export_dir: Path, tiny_sam2, predictor) -> None:
    """Box without points, and multimask_output off (SAM2's stability fallback), through both backends."""
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter
    from segzero_ros.segmentation.sam2_backend import Sam2Segmenter

    image = rng_image(*ODD, seed=3)
    box, points = prompt_for(*ODD)
    torch_segmenter = Sam2Segmenter.from_config(tiny_sam2.segmenter_config())
    torch_segmenter.set_image(image)
    single = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, cpu_threads=1, multimask_output=False)
    single.set_image(image)
    try:
        expected = torch_segmenter.segment(ObjectPrompt(box))
        multi = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, cpu_threads=1)
        multi.set_image(image)
        got = multi.segment(ObjectPrompt(box))
        assert iou(got.mask, expected.mask) >= 0.99 and got.score == pytest.approx(expected.score, abs=1e-5)
        multi.close()

        masks, _, low_res = predict(predictor, image, box, points, multimask=False)
        low = single.predict_low_res(ObjectPrompt(box, points))
        assert low.logits.shape == low_res.shape == (1, 64, 64)
        assert np.abs(low.logits - low_res).max() < 1e-4
        assert iou(single.segment(ObjectPrompt(box, points)).mask, masks[0] > 0) >= 0.99
    finally:
        torch_segmenter.close()
        single.close()


def test_fp16_graphs_give_nearly_the_same_masks(export_dir: Path, predictor) -> None:
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    half = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, precision="fp16", cpu_threads=1)
    try:
        for image_hw in (ODD, WIDE):
            masks, scores, low_res, low, output = side_by_side(half, predictor, image_hw)
            assert np.abs(low.logits - low_res).max() < 0.05  # fp16 keeps ~3 significant digits
            assert int(np.argmax(low.scores)) == int(np.argmax(scores))
            assert iou(output.mask, masks[int(np.argmax(scores))] > 0) >= 0.99
    finally:
        half.close()


def test_segmenter_protocol_and_errors(segmenter, export_dir: Path) -> None:
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    assert segmenter.providers == ["CPUExecutionProvider"] and segmenter.image_size == SIZE
    assert isinstance(segmenter, Segmenter)
    assert segmenter.name.startswith("onnxruntime:") and segmenter.name.endswith(":fp32")
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.set_image(np.zeros((20, 30), dtype=np.uint8))
    fresh = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, cpu_threads=1)
    with pytest.raises(RuntimeError, match="before set_image"):
        fresh.segment(ObjectPrompt(Box(1, 1, 5, 5)))
    fresh.close()
    with pytest.raises(RuntimeError, match="closed"):
        fresh.set_image(rng_image(8, 8))


# --- CPU-only encoder rewrite ----------------------------------------------------------------------------


def test_cpu_session_loads_the_rewritten_encoder_and_leaves_the_files_alone(segmenter, export_dir: Path) -> None:
    """The parity tests above run through the rewrite: here, that it is the one in use, what it replaced
    at the default threshold (hiera-t: 12 MLP GELUs; at 256 px no attention is long enough), and that the
    graph file TensorRT reads is untouched."""
    import hashlib

    from segzero_ros.segmentation.cpu_graph import CpuRewriteReport
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    assert segmenter.cpu_rewrite == CpuRewriteReport(gelu=12, attention=0)
    manifest = load_manifest(export_dir)
    encoder = export_dir / manifest.graph("fp32", "encoder").file
    assert hashlib.sha256(encoder.read_bytes()).hexdigest() == manifest.graph("fp32", "encoder").sha256
    plain = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, cpu_threads=1, cpu_graph_rewrite=False)
    half = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, precision="fp16", cpu_threads=1)
    try:
        assert plain.cpu_rewrite is None and half.cpu_rewrite is None  # fp16: no float32-only contrib kernels
    finally:
        plain.close()
        half.close()


def test_cpu_rewrite_of_every_attention_block_keeps_the_encoder_outputs(export_dir: Path) -> None:
    """With the length threshold at 1 every attention block (windowed, pooled-query and global) and every
    GELU is replaced; onnxruntime's outputs agree with the exported graph's to float rounding."""
    import onnx
    import onnxruntime as ort

    from segzero_ros.segmentation.cpu_graph import optimize_encoder_for_cpu

    path = export_dir / load_manifest(export_dir).graph("fp32", "encoder").file
    original = onnx.load(str(path))
    rewritten = onnx.load(str(path))
    report = optimize_encoder_for_cpu(rewritten, min_attention_length=1)
    operators = [node.op_type for node in rewritten.graph.node]
    assert (report.gelu, report.attention) == (12, 12)
    assert operators.count("Gelu") == 12 and operators.count("MultiHeadAttention") == 12
    assert "Erf" not in operators and "Softmax" not in operators  # the bypassed chains are gone
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    image = rng_image(SIZE, SIZE).transpose(2, 0, 1)[None].astype(np.float32)
    expected, actual = (
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        .run(None, {"image": image}) for model in (original, rewritten))
    for reference, value in zip(expected, actual, strict=True):
        assert value.shape == reference.shape
        assert np.abs(value - reference).max() <= 1e-5 * max(1.0, float(np.abs(reference).max()))


# --- int8 encoder (CPU provider) --------------------------------------------------------------------------


def test_int8_encoder_is_built_once_into_the_cache_and_keeps_the_masks(export_dir: Path, predictor, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """precision int8: the rewritten encoder's 51 weight MatMuls (hiera-t: 12 blocks × qkv, proj, fc1, fc2
    + 3 stage projections) become integer MatMuls in a cache folder; the shipped files stay as exported.
    Masks stay close to torch's (random weights; real-checkpoint figures are not measurable here)."""
    import hashlib

    import onnx

    from segzero_ros.backends import build_segmenter
    from segzero_ros.segmentation.cpu_graph import CpuRewriteReport
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    manifest = load_manifest(export_dir)
    int8 = OnnxRuntimeSegmenter.from_onnx_dir(export_dir, precision="int8", cpu_threads=1, int8_cache_root=tmp_path)
    try:
        built = int8.int8_encoder
        assert built is not None and built.built and built.quantized_matmuls == 51
        assert built.path.is_relative_to(tmp_path) and int8.cpu_rewrite == CpuRewriteReport(gelu=12, attention=0)
        assert int8.name.endswith(":int8") and int8.providers == ["CPUExecutionProvider"]
        operators = [node.op_type for node in onnx.load(str(built.path)).graph.node]
        assert operators.count("MatMulInteger") == 51 and operators.count("Gelu") == 12
        for image_hw in (ODD, WIDE):
            masks, scores, low_res, low, output = side_by_side(int8, predictor, image_hw)
            # Measured here (AMX, 8-bit weights): |Δ| ≈ 1.5 % of the largest logit, IoU 0.988-0.992 (random
            # weights put most logits near the 0 threshold, so the IoU is a pessimistic proxy).
            difference = float(np.abs(low.logits - low_res).max())
            assert 1e-5 < difference < 0.05 * float(np.abs(low_res).max())  # int8 in effect, and close
            assert int(np.argmax(low.scores)) == int(np.argmax(scores))
            assert iou(output.mask, masks[int(np.argmax(scores))] > 0) >= 0.97
            assert output.score == pytest.approx(float(np.max(scores)), abs=0.01)
    finally:
        int8.close()
    # By configuration (as the pipeline and node load it): the default cache root holds the same build.
    monkeypatch.setenv("SEGZERO_CACHE", str(tmp_path))
    again = build_segmenter(OnnxRuntimeSegmenterConfig(onnx_dir=str(export_dir), precision="int8",
                                            cpu_threads=1))
    assert isinstance(again, OnnxRuntimeSegmenter)
    assert again.int8_encoder is not None and not again.int8_encoder.built
    assert again.int8_encoder.path == built.path
    again.close()
    for role in ("encoder", "decoder"):
        graph = manifest.graph("fp32", role)
        assert hashlib.sha256((export_dir / graph.file).read_bytes()).hexdigest() == graph.sha256
    tracking = [] if manifest.tracking is None else [  # when the tracking tests added theirs to the shared export
        manifest.tracking.constants, *(graph.file for graph in manifest.tracking.graphs.values())]
    assert sorted(path.name for path in export_dir.iterdir()) == sorted(
        [MANIFEST_FILENAME, *(graph.file for graphs in manifest.graphs.values() for graph in graphs.values()),
         *tracking])  # nothing written into the export folder


def test_int8_is_cpu_only_and_the_recipe_follows_the_cpu() -> None:
    from segzero_ros.segmentation.cpu_int8 import needs_reduced_range
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    for device, providers, named in (("cuda", "", "device 'cuda'"), ("cpu", "CUDAExecutionProvider", "providers")):
        with pytest.raises(ModelLoadError, match=f"int8 runs on onnxruntime's CPU provider only, but {named}"):
            OnnxRuntimeSegmenter.from_onnx_dir("/nonexistent", precision="int8", device=device, providers=providers)
    from segzero_ros.segmentation import tensorrt_backend

    with pytest.raises(ModelLoadError, match="int8 is an onnxruntime CPU-provider precision"):
        tensorrt_backend.resolve_precision("int8")
    # u8·s8 saturates on x86 without VNNI: 7-bit weights there; VNNI, AMX and ARM take the full 8 bits.
    assert needs_reduced_range("x86_64", frozenset({"avx2", "fma"}))
    assert needs_reduced_range("x86_64", frozenset({"avx512f", "avx512bw"}))
    assert not needs_reduced_range("x86_64", frozenset({"avx2", "avx_vnni"}))
    assert not needs_reduced_range("AMD64", frozenset({"avx512_vnni"}))
    assert not needs_reduced_range("aarch64", frozenset())


@pytest.mark.parametrize(("form", "fused"), [
    ("x*(0.5*(erf(x/sqrt2)+1))", True),
    ("(x*0.5)*(erf(x/sqrt2)+1)", True),
    ("(x*(erf(x*rsqrt2)+1))*0.5", True),
    ("x*(0.5*(erf(x/2)+1))", False),      # not GELU: wrong divisor
    ("y*(0.5*(erf(x/sqrt2)+1))", False),  # not GELU: the outer factor is another tensor
])
def test_gelu_forms_are_fused_and_lookalikes_are_not(form: str, fused: bool) -> None:
    import math

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from segzero_ros.segmentation.cpu_graph import optimize_encoder_for_cpu

    def const(name: str, value: float) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(value, dtype=np.float32), name)

    divisor = 2.0 if "x/2" in form else math.sqrt(2.0)
    scale = [helper.make_node("Mul", ["x", "rsqrt2"], ["scaled"])] if "rsqrt2" in form else \
        [helper.make_node("Div", ["x", "divisor"], ["scaled"])]
    outer = "y" if form.startswith("y") else "x"
    erf = [*scale, helper.make_node("Erf", ["scaled"], ["erf"]), helper.make_node("Add", ["erf", "one"], ["plus"])]
    if form.startswith("(x*0.5)"):
        tail = [helper.make_node("Mul", ["x", "half"], ["a"]), helper.make_node("Mul", ["a", "plus"], ["out"])]
    elif form.startswith("(x*(erf"):
        tail = [helper.make_node("Mul", ["x", "plus"], ["a"]), helper.make_node("Mul", ["a", "half"], ["out"])]
    else:
        tail = [helper.make_node("Mul", ["half", "plus"], ["a"]), helper.make_node("Mul", [outer, "a"], ["out"])]
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 5]) for name in ("x", "y", "out")]
    graph = helper.make_graph(erf + tail, "gelu", values[:2], values[2:], [
        const("divisor", divisor), const("rsqrt2", 1 / math.sqrt(2.0)), const("one", 1.0), const("half", 0.5)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    report = optimize_encoder_for_cpu(model)
    assert report.gelu == int(fused)
    assert [node.op_type for node in model.graph.node] == (["Gelu"] if fused else [n.op_type for n in erf + tail])
    x = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    y = x[::-1].copy()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result = session.run(None, {"x": x, "y": y})[0]
    erf_of = np.vectorize(math.erf)
    expected = (y if outer == "y" else x) * 0.5 * (erf_of(x / divisor) + 1)
    np.testing.assert_allclose(result, expected, atol=1e-6)


# --- selection by config, auto-export, errors ----------------------------------------------------------


def test_registry_builds_it_from_config_and_auto_exports_into_the_cache(
        export_dir: Path, tiny_sam2, monkeypatch: pytest.MonkeyPatch) -> None:
    from segzero_ros.backends import build_segmenter
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter

    explicit = build_segmenter(OnnxRuntimeSegmenterConfig(onnx_dir=str(export_dir), device="cpu",
                                               cpu_threads=1))
    assert isinstance(explicit, OnnxRuntimeSegmenter) and explicit.name.endswith(":fp32")
    explicit.close()

    # No onnx_dir: the configured checkpoint's cached export is found (here: the one the fixture made).
    monkeypatch.setenv("SEGZERO_CACHE", str(export_dir.parent.parent))
    written_at = (export_dir / MANIFEST_FILENAME).stat().st_mtime_ns
    config = tiny_sam2.segmenter_config(backend="onnxruntime", precision="fp16", cpu_threads=1)
    automatic = build_segmenter(config)
    assert automatic.name.endswith(":fp16")
    assert (export_dir / MANIFEST_FILENAME).stat().st_mtime_ns == written_at  # reused, not re-exported
    automatic.close()


def test_load_errors_name_the_fix(export_dir: Path, tmp_path: Path) -> None:
    from segzero_ros.segmentation.onnx_backend import OnnxRuntimeSegmenter, resolve_providers

    with pytest.raises(ModelLoadError, match="segzero export-sam2"):
        OnnxRuntimeSegmenter.from_onnx_dir(tmp_path)
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        OnnxRuntimeSegmenter.from_onnx_dir(export_dir, device="cuda")
    with pytest.raises(ModelLoadError, match="precision for onnxruntime must be auto, fp32, fp16, int8"):
        OnnxRuntimeSegmenter.from_onnx_dir(export_dir, precision="bf16")
    with pytest.raises(ValueError, match=r"segmenter.precision must be one of auto, fp32, fp16, int8; got 'bf16'"):
        OnnxRuntimeSegmenterConfig(onnx_dir=str(export_dir), precision="bf16")  # refused where it is made
    cpu_only = ["CPUExecutionProvider"]
    assert resolve_providers("auto", "", cpu_only) == ["CPUExecutionProvider"]
    assert resolve_providers("auto", "", ["CUDAExecutionProvider", *cpu_only]) == ["CUDAExecutionProvider", *cpu_only]
    assert resolve_providers("cuda:1", "", ["CUDAExecutionProvider", *cpu_only]) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert resolve_providers("cuda", " CPUExecutionProvider ,", cpu_only) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="lacks TensorrtExecutionProvider"):
        resolve_providers("auto", "TensorrtExecutionProvider", cpu_only)


def test_pipeline_runs_on_onnxruntime_by_config_change_only(export_dir: Path, tiny_sam2, tmp_path: Path) -> None:
    from segzero_ros.backends import build_pipeline

    answer = ('<think>the mug</think><answer>{"bbox": [100,120,600,700], "points_1": [300,350], '
              '"points_2": [400,500]}</answer>')
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"*": answer}))
    reasoner = ReasonerConfig(backend="scripted", model=str(outputs))
    image = rng_image(*ODD, seed=11)
    results = {}
    for backend in ("sam2", "onnxruntime"):
        segmenter = tiny_sam2.segmenter_config(backend=backend, onnx_dir=str(export_dir), cpu_threads=1)
        pipeline = build_pipeline(PipelineConfig(reasoner=reasoner, segmenter=segmenter))
        try:
            results[backend] = pipeline.run(image, "the mug")
        finally:
            pipeline.close()
    torch_result, onnx_result = results["sam2"], results["onnxruntime"]
    assert torch_result.ok and onnx_result.ok, (torch_result.error, onnx_result.error)
    assert onnx_result.mask is not None and torch_result.mask is not None
    # 840-frame answer scaled to 333×517: x · 333/840, y · 517/840.
    assert onnx_result.box == torch_result.box == Box(40, 74, 238, 431)
    assert onnx_result.segmenter_name.startswith("onnxruntime:")
    assert iou(onnx_result.mask, torch_result.mask) >= 0.99
    assert onnx_result.score == pytest.approx(torch_result.score, abs=1e-5)


# --- shared numpy pre/post-processing --------------------------------------------------------------------


@pytest.mark.parametrize("image_hw", [ODD, WIDE, (256, 256), (40, 30)])
def test_resize_and_normalise_match_sam2_transforms(image_hw) -> None:
    from sam2.utils.transforms import SAM2Transforms

    image = rng_image(image_hw[0], image_hw[1], seed=5)
    expected = SAM2Transforms(SIZE, mask_threshold=0.0)(image).numpy()
    pixels = resize_for_encoder(image, SIZE)
    assert pixels.shape == (1, 3, SIZE, SIZE) and pixels.dtype == np.float32
    assert np.abs(normalize_for_sam2(pixels)[0] - expected).max() < 1e-5
    buffer = np.zeros((1, 3, SIZE, SIZE), dtype=np.float32)
    assert resize_for_encoder(image, SIZE, out=buffer) is buffer
    with pytest.raises(ValueError, match="float32 1×3×256×256"):
        resize_for_encoder(image, SIZE, out=np.zeros((3, SIZE, SIZE), dtype=np.float32))


def test_decoder_prompt_is_box_corners_then_points_in_encoder_frame(predictor) -> None:
    coords, labels = decoder_prompt(ObjectPrompt(Box(40, 60, 290, 470), (Point(120, 200), Point(210, 380))), (517, 333), 256)
    assert coords.dtype == np.float32 and labels.dtype == np.int32
    assert coords.shape == (1, 4, 2) and labels.tolist() == [[2, 3, 1, 1]]
    expected = [[40 / 333 * 256, 60 / 517 * 256], [290 / 333 * 256, 470 / 517 * 256],
                [120 / 333 * 256, 200 / 517 * 256], [210 / 333 * 256, 380 / 517 * 256]]
    np.testing.assert_allclose(coords[0], expected, rtol=1e-6)
    # Bit-identical to the predictor's own transform of the same prompt.
    predictor._orig_hw = [(517, 333)]
    _, point_coords, _, box_coords = predictor._prep_prompts(np.array([[120, 200], [210, 380]]), np.array([1, 1]),
                                                             np.array([40, 60, 290, 470]), None, True)
    np.testing.assert_array_equal(coords[0, :2], box_coords[0].numpy())
    np.testing.assert_array_equal(coords[0, 2:], point_coords[0].numpy())
    _, box_only = decoder_prompt(ObjectPrompt(Box(0, 0, 10, 10)), (20, 20), 256)
    assert box_only.tolist() == [[2, 3]]


def test_bilinear_matrix_by_hand_and_upsampler_against_torch() -> None:
    import torch
    from torch.nn.functional import interpolate

    # 2 → 4 with half-pixel centres: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper index clamped).
    np.testing.assert_allclose(bilinear_matrix(2, 4), np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]))
    # 4 → 2: sources 0.5 and 2.5, no antialiasing (as F.interpolate with antialias=False).
    np.testing.assert_allclose(bilinear_matrix(4, 2), np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    logits = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32) * 8
    upsample = LogitUpsampler()
    for image_hw in (ODD, WIDE, (30, 20)):
        expected = interpolate(torch.from_numpy(logits)[None, None], image_hw, mode="bilinear",
                                 align_corners=False)[0, 0].numpy()
        got = upsample(logits, image_hw)
        assert got.shape == image_hw
        assert np.abs(got - expected).max() < 1e-3
        assert ((got > 0) != (expected > 0)).sum() <= 2


def test_mask_selection_follows_the_predictor_rules() -> None:
    masks = np.stack([np.full((4, 4), value, dtype=np.float32) for value in (0.01, 5.0, -5.0, 5.0)])
    scores = np.array([0.875, 0.25, 0.75, 0.5], dtype=np.float32)  # exact in float32
    multi_masks, multi_scores = select_candidates(masks, scores, MaskSelection(multimask_output=True))
    np.testing.assert_array_equal(multi_scores, [0.25, 0.75, 0.5])
    assert multi_masks.shape == (3, 4, 4)
    stable_off = MaskSelection(multimask_output=False, dynamic_multimask_via_stability=False)
    np.testing.assert_array_equal(select_candidates(masks, scores, stable_off)[1], [0.875])
    # Token 0's logits (0.01) lie inside ±0.05: stability 0/16 < 0.98 → the best multimask token (score 0.75).
    fallback = MaskSelection(multimask_output=False, dynamic_multimask_via_stability=True)
    chosen, chosen_scores = select_candidates(masks, scores, fallback)
    np.testing.assert_array_equal(chosen_scores, [0.75])
    assert (chosen[0] == -5.0).all()
    masks[0] = 3.0  # now stable: 16/16
    np.testing.assert_array_equal(select_candidates(masks, scores, fallback)[1], [0.875])


# --- TensorRT: everything that needs no GPU ---------------------------------------------------------------


def test_tensorrt_backend_without_tensorrt_is_one_clear_error(export_dir: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    from segzero_ros.backends import build_segmenter
    from segzero_ros.cli import main

    with pytest.raises(BackendUnavailableError, match=r"tensorrt package is not importable.*pip install tensorrt"):
        build_segmenter(TensorRTSegmenterConfig(onnx_dir=str(export_dir)))
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["build-engine", "--onnx-dir", str(export_dir)])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segzero build-engine: error: segmenter backend 'tensorrt'")


def test_tensorrt_profiles_and_engine_cache_keys(export_dir: Path) -> None:
    from segzero_ros.segmentation.tensorrt_backend import (
        MAX_PROMPT_POINTS,
        GpuIdentity,
        engine_cache_key,
        profile_shapes,
        resolve_precision,
    )

    manifest = load_manifest(export_dir)
    assert profile_shapes(manifest.graph("fp16", "encoder")) == {}
    assert profile_shapes(manifest.graph("fp16", "decoder")) == {
        "point_coords": ((1, 1, 2), (1, 4, 2), (1, MAX_PROMPT_POINTS, 2)),
        "point_labels": ((1, 1), (1, 4), (1, MAX_PROMPT_POINTS)),
    }
    orin = GpuIdentity("Orin (nvgpu)", (8, 7), "10.3.0")
    assert orin.slug == "orin-nvgpu-sm87-trt10.3.0"
    graph = manifest.graph("fp16", "decoder")
    key = engine_cache_key(graph, "fp16", orin)
    assert key == engine_cache_key(graph, "fp16", GpuIdentity("Orin (nvgpu)", (8, 7), "10.3.0"))
    others = {engine_cache_key(graph, "fp32", orin), engine_cache_key(manifest.graph("fp32", "decoder"), "fp16", orin),
              engine_cache_key(graph, "fp16", GpuIdentity("Orin (nvgpu)", (8, 7), "10.7.0")),
              engine_cache_key(graph, "fp16", GpuIdentity("NVIDIA RTX 4000 Ada", (8, 9), "10.3.0"))}
    assert key not in others and len(others) == 4
    assert (resolve_precision("auto"), resolve_precision("fp32")) == ("fp16", "fp32")
    unknown = GraphSpec(file="x.onnx", sha256="0", outputs=(),
                        inputs=(TensorSpec("point_coords", "float32", (1, "batch", 2)),))
    with pytest.raises(ModelLoadError, match="dynamic dimension 'batch'"):
        profile_shapes(unknown)
