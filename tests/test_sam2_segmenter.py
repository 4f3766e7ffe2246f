"""The sam2 (PyTorch) segmenter on the tiny offline SAM2: real architecture and code path, random weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from segzero_ros.config import Sam2SegmenterConfig
from segzero_ros.core.geometry import Box, ObjectPrompt, Point
from segzero_ros.errors import ModelLoadError
from segzero_ros.segmentation.base import Segmenter
from segzero_ros.segmentation.sam2_backend import Sam2Segmenter, prompt_arrays, sam2_feature_sizes

pytestmark = pytest.mark.slow

IMAGE_WIDTH, IMAGE_HEIGHT = 333, 517  # odd on both sides, and not square: catches any W/H swap
BOX = Box(40, 60, 290, 470)
POINTS = [Point(120, 200), Point(210, 380)]


@pytest.fixture(scope="module")
def odd_image() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def segmenter(tiny_sam2):
    loaded = Sam2Segmenter.from_config(tiny_sam2.segmenter_config())
    yield loaded
    loaded.close()


def test_prompt_arrays_are_segzero_prompt_in_image_pixels() -> None:
    coords, labels, box = prompt_arrays(ObjectPrompt(BOX, POINTS))
    assert coords.dtype == np.float32 and labels.dtype == np.int32 and box.dtype == np.float32
    np.testing.assert_array_equal(coords, [[120.0, 200.0], [210.0, 380.0]])
    np.testing.assert_array_equal(labels, [1, 1])
    np.testing.assert_array_equal(box, [40.0, 60.0, 290.0, 470.0])
    no_coords, no_labels, _ = prompt_arrays(ObjectPrompt(BOX))
    assert no_coords.shape == (0, 2) and no_labels.shape == (0,)


def test_feature_sizes_match_sam2_defaults_at_1024_and_scale_down() -> None:
    assert sam2_feature_sizes(1024) == [(256, 256), (128, 128), (64, 64)]  # SAM2ImagePredictor's constants
    assert sam2_feature_sizes(256) == [(64, 64), (32, 32), (16, 16)]


def test_tiny_sam2_is_cached_and_reused(tiny_sam2, tiny_cache_root: Path) -> None:
    import torch

    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2

    assert tiny_sam2.checkpoint.is_file()
    assert tiny_cache_root in tiny_sam2.checkpoint.parents
    assert tiny_sam2.config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    written_at = tiny_sam2.checkpoint.stat().st_mtime_ns
    assert ensure_tiny_sam2(tiny_cache_root) == tiny_sam2
    assert tiny_sam2.checkpoint.stat().st_mtime_ns == written_at  # not rebuilt
    checkpoint = torch.load(tiny_sam2.checkpoint, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model"}
    assert "image_encoder.trunk.patch_embed.proj.weight" in checkpoint["model"]


def test_tiny_sam2_build_is_seeded(tiny_sam2, tmp_path: Path) -> None:
    """A fresh build in another cache root reproduces the cached weights bit for bit, leaving no staging folder."""
    import torch

    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2

    fresh = ensure_tiny_sam2(tmp_path)
    try:
        assert fresh.checkpoint != tiny_sam2.checkpoint
        assert [entry.name for entry in tmp_path.iterdir()] == [fresh.checkpoint.parent.name]
        rebuilt = torch.load(fresh.checkpoint, map_location="cpu", weights_only=True)["model"]
        cached = torch.load(tiny_sam2.checkpoint, map_location="cpu", weights_only=True)["model"]
        assert rebuilt.keys() == cached.keys()
        assert all(torch.equal(rebuilt[key], cached[key]) for key in cached)
    finally:
        shutil.rmtree(fresh.checkpoint.parent)  # ~150 MB; pytest keeps old tmp folders around


def test_segment_gives_full_resolution_bool_mask(segmenter: Sam2Segmenter, odd_image: np.ndarray, tiny_sam2) -> None:
    assert segmenter.name == str(tiny_sam2.checkpoint)
    assert segmenter.image_size == 256
    segmenter.set_image(odd_image)
    output = segmenter.segment(ObjectPrompt(BOX, POINTS))
    assert output.mask.dtype == np.bool_
    assert output.mask.shape == (IMAGE_HEIGHT, IMAGE_WIDTH)
    assert np.isfinite(output.score)
    assert 0.0 <= output.score <= 1.0  # hiera configs squash the IoU prediction with a sigmoid


def test_chosen_mask_is_best_of_direct_sam2_predictor(segmenter: Sam2Segmenter, odd_image: np.ndarray,
                                                      tiny_sam2) -> None:
    """Same checkpoint through SAM2ImagePredictor called the way Seg-Zero's scripts call it."""
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2(tiny_sam2.config, str(tiny_sam2.checkpoint), device="cpu",
                       hydra_overrides_extra=["++model.image_size=256"])
    predictor = SAM2ImagePredictor(model)
    predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]  # 256 px input: strides 4, 8, 16
    with torch.inference_mode():
        predictor.set_image(odd_image)
        masks, scores, _ = predictor.predict(point_coords=[[120, 200], [210, 380]], point_labels=[1, 1],
                                             box=[40, 60, 290, 470])
    assert masks.shape == (3, IMAGE_HEIGHT, IMAGE_WIDTH)
    best = int(np.argmax(scores))
    others = [index for index in range(3) if index != best]
    assert any((masks[index] != masks[best]).any() for index in others), "choice would not matter"

    segmenter.set_image(odd_image)
    output = segmenter.segment(ObjectPrompt(BOX, POINTS))
    np.testing.assert_array_equal(output.mask, masks[best] > 0)
    assert output.score == pytest.approx(float(scores[best]), rel=1e-6)


def test_segment_is_deterministic(segmenter: Sam2Segmenter, odd_image: np.ndarray) -> None:
    segmenter.set_image(odd_image)
    first = segmenter.segment(ObjectPrompt(BOX, POINTS))
    second = segmenter.segment(ObjectPrompt(BOX, POINTS))
    segmenter.set_image(odd_image.copy())
    third = segmenter.segment(ObjectPrompt(BOX, POINTS))
    for again in (second, third):
        np.testing.assert_array_equal(again.mask, first.mask)
        assert again.score == first.score


def test_set_image_rejects_non_rgb(segmenter: Sam2Segmenter) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.set_image(np.zeros((20, 30), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.set_image(np.zeros((20, 30, 3), dtype=np.float32))


def test_registry_builds_it_and_segment_needs_an_image_first(tiny_sam2, odd_image: np.ndarray) -> None:
    from segzero_ros.backends import build_segmenter

    built = build_segmenter(tiny_sam2.segmenter_config())
    assert isinstance(built, Sam2Segmenter) and isinstance(built, Segmenter)
    with pytest.raises(RuntimeError, match="before set_image"):
        built.segment(ObjectPrompt(BOX, POINTS))
    built.close()
    with pytest.raises(RuntimeError, match="closed"):
        built.set_image(odd_image)


def test_missing_checkpoint_names_file_and_fixes(tmp_path: Path, tiny_sam2) -> None:
    missing = tmp_path / "sam2_hiera_large.pt"
    config = Sam2SegmenterConfig(config=tiny_sam2.config, checkpoint=str(missing), device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        Sam2Segmenter.from_config(config)
    message = str(caught.value)
    assert str(missing) in message
    for fix in ("--sam2 CONFIG.yaml:CHECKPOINT.pt", "segmenter.config", "segmenter.checkpoint", "--tiny"):
        assert fix in message


def test_default_hub_model_offline_without_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # a machine's real cache must not leak in
    with pytest.raises(ModelLoadError) as caught:
        Sam2Segmenter.from_config(Sam2SegmenterConfig(device="cpu"))
    message = str(caught.value)
    for expected in ("facebook/sam2-hiera-large", "sam2_hiera_large.pt", "HF_HUB_OFFLINE=1", "--sam2", "--tiny"):
        assert expected in message


def test_unknown_hub_id_lists_known_ones() -> None:
    with pytest.raises(ModelLoadError, match=r"facebook/sam2\.1-hiera-large") as caught:
        Sam2Segmenter.from_config(Sam2SegmenterConfig(model="someone/not-a-sam2", device="cpu"))
    assert "someone/not-a-sam2" in str(caught.value)


def test_config_that_does_not_fit_checkpoint_is_a_load_error(tiny_sam2) -> None:
    config = Sam2SegmenterConfig(config="configs/sam2.1/sam2.1_hiera_s.yaml", checkpoint=str(tiny_sam2.checkpoint),
                             image_size=256, device="cpu")
    with pytest.raises(ModelLoadError, match=r"sam2\.1_hiera_s\.yaml"):
        Sam2Segmenter.from_config(config)


def test_unshipped_config_and_bad_image_size_are_load_errors(tiny_sam2) -> None:
    unshipped = Sam2SegmenterConfig(config="configs/sam3/huge.yaml", checkpoint=str(tiny_sam2.checkpoint), device="cpu")
    with pytest.raises(ModelLoadError, match=r"configs/sam2\.1/sam2\.1_hiera_t\.yaml"):
        Sam2Segmenter.from_config(unshipped)
    with pytest.raises(ModelLoadError, match="multiple of 32"):
        Sam2Segmenter.from_config(Sam2SegmenterConfig(checkpoint=str(tiny_sam2.checkpoint), config=tiny_sam2.config,
                                                  image_size=250, device="cpu"))
