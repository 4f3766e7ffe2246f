"""SAM2 → ONNX export of the tiny offline SAM2: manifest, graph checks (onnx.checker, strict shape inference,
TensorRT allow-list), fp16 copies, dynamic prompt size, CLI. The export runs once per session into a shared
tmp cache (~20 s); test_onnx_backend.py reuses it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from segzero_ros.errors import ModelLoadError
from segzero_ros.export.graph_check import (
    TENSORRT_ONNX_OPS,
    GraphCheckError,
    check_exported_graph,
    tensorrt_problems,
)
from segzero_ros.segmentation.manifest import MANIFEST_FILENAME, load_manifest

pytestmark = pytest.mark.slow

SIZE = 256  # the tiny SAM2's encoder input
SHARED_CACHE = "segzero-onnx-cache"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sam2) -> Path:
    """fp32 + fp16 export of the tiny SAM2, shared by both ONNX test modules through one tmp cache root."""
    from segzero_ros.export.onnx_export import ensure_onnx_export

    return ensure_onnx_export(tiny_sam2.segmenter_config(), "fp16",
                              cache_root=tmp_path_factory.getbasetemp() / SHARED_CACHE)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_describes_model_graphs_and_tensors(export_dir: Path, tiny_sam2) -> None:
    manifest = load_manifest(export_dir)
    model = manifest.model
    assert model.config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert model.checkpoint == str(tiny_sam2.checkpoint)
    assert model.checkpoint_sha256 == sha256(tiny_sam2.checkpoint)
    assert (model.image_size, model.low_res_size, model.mask_threshold) == (SIZE, SIZE // 4, 0.0)
    # build_sam2's default post-processing switches on the single-mask stability fallback.
    assert (model.dynamic_multimask_via_stability, model.dynamic_multimask_stability_delta,
            model.dynamic_multimask_stability_thresh) == (True, 0.05, 0.98)
    assert manifest.opset == 18
    assert manifest.versions["sam2"] == importlib.metadata.version("sam2")
    assert manifest.precisions == ("fp32", "fp16")

    raw = json.loads((export_dir / MANIFEST_FILENAME).read_text())
    assert raw["format"] == "segzero-sam2-onnx" and raw["model"]["low_res_size"] == 64
    for precision in ("fp32", "fp16"):
        encoder, decoder = manifest.graph(precision, "encoder"), manifest.graph(precision, "decoder")
        for graph in (encoder, decoder):
            assert sha256(export_dir / graph.file) == graph.sha256
        assert [(t.name, t.dtype, t.shape) for t in encoder.inputs] == [("image", "float32", (1, 3, 256, 256))]
        assert [(t.name, t.shape) for t in encoder.outputs] == [
            ("image_embed", (1, 256, 16, 16)), ("high_res_feats_0", (1, 32, 64, 64)), ("high_res_feats_1", (1, 64, 32, 32))]
        assert [(t.name, t.dtype, t.shape) for t in decoder.inputs][3:] == [
            ("point_coords", "float32", (1, "num_points", 2)), ("point_labels", "int32", (1, "num_points"))]
        assert [(t.name, t.dtype, t.shape) for t in decoder.outputs] == [
            ("masks", "float32", (1, 4, 64, 64)), ("iou_predictions", "float32", (1, 4))]
    assert manifest.graph("fp16", "encoder").file == "encoder.fp16.onnx"


@pytest.mark.parametrize("name", ["encoder.onnx", "decoder.onnx", "encoder.fp16.onnx", "decoder.fp16.onnx"])
def test_graphs_pass_checker_shape_inference_and_tensorrt_allow_list(export_dir: Path, name: str) -> None:
    report = check_exported_graph(export_dir / name)
    assert report.opset == 18
    assert set(report.operators) <= set(TENSORRT_ONNX_OPS)
    # Hiera's bicubic position-embedding resize must have been frozen into a constant: TensorRT has no cubic.
    model = onnx.load(str(export_dir / name))
    modes = [helper.get_attribute_value(a) for n in model.graph.node if n.op_type == "Resize"
             for a in n.attribute if a.name == "mode"]
    assert b"cubic" not in modes
    expected = {"encoder": {"image_embed": (1, 256, 16, 16), "high_res_feats_0": (1, 32, 64, 64),
                            "high_res_feats_1": (1, 64, 32, 32)},
                "decoder": {"masks": (1, 4, 64, 64), "iou_predictions": (1, 4)}}[name.split(".", maxsplit=1)[0]]
    assert report.output_shapes == expected


def test_fp16_graphs_compute_in_half_precision_behind_float32_io(export_dir: Path) -> None:
    for name in ("encoder", "decoder"):
        full = onnx.load(str(export_dir / f"{name}.onnx"))
        half = onnx.load(str(export_dir / f"{name}.fp16.onnx"))
        weights = {t.data_type for t in half.graph.initializer if len(t.dims) >= 2}
        assert weights == {TensorProto.FLOAT16}
        io_types = [v.type.tensor_type.elem_type for v in [*half.graph.input, *half.graph.output]]
        assert io_types == [v.type.tensor_type.elem_type for v in [*full.graph.input, *full.graph.output]]
        assert (export_dir / f"{name}.fp16.onnx").stat().st_size < 0.6 * (export_dir / f"{name}.onnx").stat().st_size


def test_decoder_takes_any_number_of_points(export_dir: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(export_dir / "decoder.onnx"), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    features = {"image_embed": rng.standard_normal((1, 256, 16, 16), dtype=np.float32),
                "high_res_feats_0": rng.standard_normal((1, 32, 64, 64), dtype=np.float32),
                "high_res_feats_1": rng.standard_normal((1, 64, 32, 32), dtype=np.float32)}
    prompts = [np.array([[30.0, 40.0]]), np.array([[30.0, 40.0], [200.0, 220.0]]),
               np.array([[30.0, 40.0], [200.0, 220.0], [100.0, 120.0], [90.0, 60.0], [150.0, 150.0]])]
    labels = [np.array([1]), np.array([2, 3]), np.array([2, 3, 1, 1, 0])]
    outputs = []
    for coords, label in zip(prompts, labels, strict=True):
        masks, scores = session.run(None, {**features, "point_coords": coords[None].astype(np.float32),
                                           "point_labels": label[None].astype(np.int32)})
        assert masks.shape == (1, 4, 64, 64) and scores.shape == (1, 4)
        outputs.append(masks)
    assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[2])


def tiny_graph(nodes: list[onnx.NodeProto], opset: int = 18, inputs: list[onnx.ValueInfoProto] | None = None,
               initializers: tuple[onnx.TensorProto, ...] | list[onnx.TensorProto] = ()) -> onnx.ModelProto:
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_allow_list_check_flags_what_tensorrt_cannot_parse() -> None:
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    fine = tiny_graph([helper.make_node("Relu", ["x"], ["y"])])
    assert tensorrt_problems(fine) == []

    cubic = tiny_graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")], initializers=[scales])
    antialiased = tiny_graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", antialias=1)],
                             initializers=[scales])
    linear = tiny_graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")], initializers=[scales])
    unknown = tiny_graph([helper.make_node("Unique", ["x"], ["y"])])
    custom = tiny_graph([helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft")])
    axes_input = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    dynamic_axes = tiny_graph([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                              inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]), axes_input])
    constant_axes = tiny_graph([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                               inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                               initializers=[helper.make_tensor("axes", TensorProto.INT64, [1], [0])])
    too_new = tiny_graph([helper.make_node("Relu", ["x"], ["y"])], opset=23)

    assert tensorrt_problems(linear) == [] and tensorrt_problems(constant_axes) == []
    assert "mode 'cubic'" in " ".join(tensorrt_problems(cubic))
    assert "antialias" in " ".join(tensorrt_problems(antialiased))
    assert "not in the TensorRT allow-list" in " ".join(tensorrt_problems(unknown))
    assert "custom domain 'com.microsoft'" in " ".join(tensorrt_problems(custom))
    assert "input 1 must be a constant" in " ".join(tensorrt_problems(dynamic_axes))
    assert "opset 23 is outside 9..20" in " ".join(tensorrt_problems(too_new))


def test_checker_failures_are_reported_and_topological_sort_repairs_them(tmp_path: Path) -> None:
    from segzero_ros.export.onnx_export import sort_topologically

    # y = relu(relu(x)) with the nodes listed consumer first, as onnxruntime's fp16 converter leaves its casts.
    model = tiny_graph([helper.make_node("Relu", ["h"], ["y"]), helper.make_node("Relu", ["x"], ["h"])])
    path = tmp_path / "unsorted.onnx"
    onnx.save(model, str(path))
    with pytest.raises(GraphCheckError, match=r"onnx\.checker.*topologically sorted"):
        check_exported_graph(path)
    sort_topologically(model.graph)
    assert [node.output[0] for node in model.graph.node] == ["h", "y"]
    onnx.save(model, str(path))
    assert check_exported_graph(path).output_shapes == {"y": (1, 3, 8, 8)}


def test_fp16_can_be_added_to_an_fp32_export_with_progress(export_dir: Path, tmp_path: Path) -> None:
    from segzero_ros.export.onnx_export import add_fp16_graphs

    fp32_only = tmp_path / "export"
    fp32_only.mkdir()
    manifest = json.loads((export_dir / MANIFEST_FILENAME).read_text())
    del manifest["graphs"]["fp16"]
    (fp32_only / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="no fp16 SAM2 graphs"):
        load_manifest(fp32_only).graph("fp16", "encoder")
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(export_dir / name, fp32_only / name)
    messages: list[str] = []
    updated = add_fp16_graphs(fp32_only, report=messages.append)
    assert updated.precisions == ("fp32", "fp16") and load_manifest(fp32_only).precisions == ("fp32", "fp16")
    assert messages[0] == "converting encoder.onnx to fp16 (float32 inputs/outputs kept) ..."
    assert any(m == "checking decoder.fp16.onnx ..." for m in messages)
    assert sum(m.startswith("  done in ") for m in messages) == 4
    assert (fp32_only / "decoder.fp16.onnx").is_file()


def test_cli_export_reports_progress_and_writes_a_loadable_export(tmp_path: Path, tiny_sam2) -> None:
    """The real `segzero export-sam2` path end to end (fp32 only: ~15 s)."""
    from segzero_ros.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["export-sam2", "--tiny", "--out", str(tmp_path / "tiny")])
    assert code == 0, err.getvalue()
    assert out.getvalue().strip() == str(tmp_path / "tiny")
    progress = err.getvalue().splitlines()
    expected_steps = ["hashing checkpoint", "loading SAM2 configs/sam2.1/sam2.1_hiera_t.yaml",
                      "exporting image encoder (256×256 input, opset 18)", "exporting prompt encoder + mask decoder",
                      "checking fp32 graphs", "wrote ", "fp32: encoder.onnx, decoder.onnx"]
    positions = [next(i for i, line in enumerate(progress) if line.startswith(step)) for step in expected_steps]
    assert positions == sorted(positions)
    manifest = load_manifest(tmp_path / "tiny")
    assert manifest.precisions == ("fp32",) and manifest.model.checkpoint_sha256 == sha256(tiny_sam2.checkpoint)


def test_cli_keeps_an_up_to_date_export_and_rejects_bad_flags(export_dir: Path, tiny_sam2) -> None:
    from segzero_ros.cli import main

    written_at = (export_dir / MANIFEST_FILENAME).stat().st_mtime_ns
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["export-sam2", "--tiny", "--fp16", "--out", str(export_dir)])
    assert code == 0
    assert out.getvalue().strip() == str(export_dir)
    assert f"hashing checkpoint {tiny_sam2.checkpoint}" in err.getvalue()
    assert "already holds this export" in err.getvalue()
    assert (export_dir / MANIFEST_FILENAME).stat().st_mtime_ns == written_at

    with redirect_stdout(io.StringIO()), redirect_stderr(err := io.StringIO()):
        code = main(["export-sam2", "--tiny", "--image-size", "512", "--out", str(export_dir)])
    assert code == 2 and "--tiny fixes its config and image size" in err.getvalue()


def test_cli_adds_the_tracking_graphs_to_an_existing_export(export_dir: Path) -> None:
    """`--tracking` on a folder that holds the export: only the tracking graphs are written (the shared export
    then serves tests/test_tracking_onnx.py too); the encoder and decoder are untouched."""
    from segzero_ros.cli import main

    before = load_manifest(export_dir)
    encoder_sha = before.graph("fp32", "encoder").sha256
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["export-sam2", "--tiny", "--fp16", "--tracking", "--out", str(export_dir)])
    assert code == 0 and out.getvalue().strip() == str(export_dir)
    after = load_manifest(export_dir)
    assert after.tracking is not None and after.graphs == before.graphs
    assert after.graph("fp32", "encoder").sha256 == encoder_sha == sha256(export_dir / after.graph("fp32", "encoder").file)
    for spec in after.tracking.graphs.values():
        assert sha256(export_dir / spec.file) == spec.sha256
    assert after.tracking.settings["num_maskmem"] == 7 and after.tracking.settings["tracking_multimask"] is True
    assert "tracking: track_memory_attention.onnx" in err.getvalue()


def test_missing_export_folder_says_how_to_export(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"sam2_onnx\.json missing.*segzero export-sam2"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_FILENAME).write_text('{"format": "something-else"}')
    with pytest.raises(ModelLoadError, match="not a usable SAM2 export manifest"):
        load_manifest(tmp_path)
