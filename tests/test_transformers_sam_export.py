"""The image path of transformers' SAM3 tracker and EdgeTAM exported as SAM2's two graphs (tiny random models
built offline): each graph on onnxruntime against the transformers model it came from on identical inputs
(the encoder against `get_image_embeddings`, the decoder against the model called with `input_boxes` +
`input_points`, any number of points), then the onnxruntime segmenter against the torch segmenter end to end,
and the CLI."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from segzero_ros.backends import build_segmenter
from segzero_ros.config import OnnxRuntimeSegmenterConfig
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.segmentation.manifest import MANIFEST_FILENAME, load_manifest
from segzero_ros.tiny import tiny_segmenter_config
from tests.test_tracking import BOX, POINTS, moving_disc

pytestmark = pytest.mark.slow

BACKENDS = ["sam3", "edgetam"]


@pytest.fixture(scope="module", params=BACKENDS)
def exported(request, tiny_cache_root, tmp_path_factory):
    """(segmenter config, export folder) per backend, exported once through the CLI."""
    from segzero_ros.cli import main

    out = tmp_path_factory.mktemp(f"{request.param}-onnx")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["export-sam2", "--backend", request.param, "--tiny", "--out", str(out)])
    assert code == 0, err.getvalue()
    return tiny_segmenter_config(request.param, tiny_cache_root), out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_the_manifest_records_the_family_its_weights_and_its_normalisation(exported):
    from segzero_ros.export.onnx_export import weights_sha256
    from segzero_ros.segmentation.transformers_sam import load_sam

    config, out = exported
    manifest = load_manifest(out)
    processor = load_sam(config).processor.image_processor
    assert manifest.model.config == f"transformers:{config.backend}"
    assert manifest.model.checkpoint_sha256 == weights_sha256(str(config.model)) != ""
    assert manifest.model.image_size == processor.size["height"]
    assert manifest.preprocessing["mean"] == pytest.approx(list(processor.image_mean))
    assert manifest.preprocessing["std"] == pytest.approx(list(processor.image_std))
    assert "transformers" in manifest.versions and manifest.precisions == ("fp32",)


def test_each_graph_equals_the_transformers_model_on_identical_inputs(exported):
    import torch

    from segzero_ros.segmentation.transformers_sam import load_sam

    config, out = exported
    manifest = load_manifest(out)
    size = manifest.model.image_size
    oracle = load_sam(config)
    processor = oracle.processor.image_processor
    image = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255.0).round()
    mean = torch.tensor(processor.image_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).reshape(1, 3, 1, 1)
    with torch.inference_mode():
        expected = oracle.model.get_image_embeddings(((image / 255.0) - mean) / std)
    encoder = _session(out / manifest.graph("fp32", "encoder").file)
    features = encoder.run(None, {"image": image.numpy()})
    for got, want in zip(features, (expected[-1], expected[0], expected[1]), strict=True):
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)

    decoder = _session(out / manifest.graph("fp32", "decoder").file)
    box = [20.0, 30.0, 150.0, 120.0]
    for points in ([], [[60.0, 70.0]], [[60.0, 70.0], [100.0, 90.0], [40.0, 100.0]]):
        coords = np.array([[box[:2], box[2:], *points]], dtype=np.float32)
        labels = np.array([[2, 3] + [1] * len(points)], dtype=np.int32)
        masks, scores = decoder.run(None, {"image_embed": features[0], "high_res_feats_0": features[1],
                                           "high_res_feats_1": features[2], "point_coords": coords,
                                           "point_labels": labels})
        prompt: dict = {"input_boxes": torch.tensor([[box]])}
        if points:
            prompt |= {"input_points": torch.tensor([[points]]), "input_labels": torch.ones(1, 1, len(points),
                                                                                           dtype=torch.long)}
        with torch.inference_mode():
            want = oracle.model(image_embeddings=[torch.from_numpy(f) for f in (features[1], features[2],
                                                                                  features[0])],
                                multimask_output=True, **prompt)
        np.testing.assert_allclose(masks[:, 1:], want.pred_masks[:, 0].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(scores[:, 1:], want.iou_scores[:, 0].numpy(), atol=1e-5, rtol=0)
        assert masks.shape[1] == 4 and np.isfinite(masks[:, 0]).all()


def test_the_onnxruntime_segmenter_on_the_export_matches_the_torch_segmenter(exported):
    """Same masks up to the resize: the processor resizes uint8 with antialiasing, the graph backends resize the
    float image (as for SAM2), so a few boundary pixels may differ; scores agree closely."""
    config, out = exported
    torch_segmenter = build_segmenter(config)
    onnx_segmenter = build_segmenter(OnnxRuntimeSegmenterConfig(onnx_dir=str(out), device="cpu"))
    image = moving_disc(1)[0]
    try:
        torch_segmenter.set_image(image)
        onnx_segmenter.set_image(image)
        for prompt in (ObjectPrompt(BOX, POINTS), ObjectPrompt(BOX),
                       ObjectPrompt(Box(90, 10, 150, 70), (Point(120, 40), Point(130, 50)))):
            want, got = torch_segmenter.segment(prompt), onnx_segmenter.segment(prompt)
            assert got.mask.shape == want.mask.shape == image.shape[:2]
            assert _iou(got.mask, want.mask) >= 0.98
            assert got.score == pytest.approx(want.score, abs=0.02)
    finally:
        torch_segmenter.close()
        onnx_segmenter.close()


def test_the_cli_keeps_an_up_to_date_export_and_refuses_sam2_flags(exported):
    from segzero_ros.cli import main

    config, out = exported
    written_at = (out / MANIFEST_FILENAME).stat().st_mtime_ns
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["export-sam2", "--backend", config.backend, "--model", str(config.model), "--out", str(out)])
    assert code == 0 and "already holds this export" in err.getvalue()
    assert (out / MANIFEST_FILENAME).stat().st_mtime_ns == written_at

    with redirect_stdout(io.StringIO()), redirect_stderr(err := io.StringIO()):
        code = main(["export-sam2", "--backend", config.backend, "--tiny", "--tracking", "--out", str(out)])
    assert code == 2 and "are for SAM2" in err.getvalue()
