"""The synthetic shapes generator: deterministic by (seed, index), exact masks, unambiguous expressions."""

import numpy as np
import pytest

from segzero_ros.core.geometry import Box
from segzero_ros.data import (
    COLORS,
    Shape,
    generate_sample,
    generate_samples,
    load_eval_dataset,
    resolve_expression,
)
from segzero_ros.data.folder import write_folder_dataset


def test_same_seed_same_samples_and_a_longer_run_extends_a_shorter_one():
    first = generate_samples(3, seed=7, size=64)
    again = generate_samples(5, seed=7, size=64)
    for a, b in zip(first, again[:3], strict=True):
        assert a.id == b.id and a.text == b.text and a.shapes == b.shapes
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    other_seed = generate_samples(3, seed=8, size=64)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first, other_seed, strict=True))
    assert [s.id for s in again] == [f"synthetic-7-{i:05d}" for i in range(5)]
    assert generate_samples(2, seed=7, size=64, start=3)[1].text == again[4].text


def test_image_and_mask_shapes_follow_width_then_height():
    sample = generate_sample(seed=1, index=0, size=(96, 48))
    assert sample.image.shape == (48, 96, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (48, 96) and sample.mask.dtype == bool
    with pytest.raises(ValueError, match="at least 32"):
        generate_sample(seed=1, index=0, size=16)


def test_mask_is_exactly_the_target_shape_in_its_colour():
    for sample in generate_samples(20, seed=3, size=80):
        target = sample.shapes[sample.target]
        # Shapes never overlap, so every masked pixel shows the target's colour and the count is the shape's.
        assert np.all(sample.image[sample.mask] == COLORS[target.color])
        assert sample.mask.sum() == target.mask(80, 80).sum() > 0
        if target.kind == "square":
            assert sample.mask.sum() == (2 * target.size + 1) ** 2
            x, y = target.center
            assert sample.box == Box(x - target.size, y - target.size, x + target.size, y + target.size)


def test_every_expression_picks_out_its_target_and_all_forms_occur():
    samples = generate_samples(150, seed=11, size=64)
    assert all(resolve_expression(s.shapes, s.text) == s.target for s in samples)
    texts = [s.text for s in samples]
    for word in ("largest", "smallest", "on the left", "on the right", "shape"):
        assert any(word in text for text in texts), word
    assert {s.shapes[s.target].kind for s in samples} == {"circle", "square", "triangle"}


def test_resolve_expression_on_a_hand_built_scene():
    shapes = [
        Shape("circle", "red", (10, 10), 5),
        Shape("circle", "red", (40, 10), 8),
        Shape("square", "blue", (25, 40), 6),
    ]
    assert resolve_expression(shapes, "the largest red circle") == 1
    assert resolve_expression(shapes, "the smallest red circle") == 0
    assert resolve_expression(shapes, "the red circle on the left") == 0
    assert resolve_expression(shapes, "the red circle on the right") == 1
    assert resolve_expression(shapes, "the blue square") == 2
    assert resolve_expression(shapes, "the square") == 2
    assert resolve_expression(shapes, "the blue shape") == 2
    assert resolve_expression(shapes, "the red circle") is None  # two of them
    assert resolve_expression(shapes, "the green triangle") is None
    assert resolve_expression(shapes, "something else") is None


def test_folder_round_trip_is_lossless(tmp_path):
    samples = generate_samples(3, seed=5, size=48)
    manifest = write_folder_dataset(samples, tmp_path / "synthetic")
    assert manifest.name == "samples.jsonl"
    loaded = load_eval_dataset(tmp_path / "synthetic")
    assert loaded.ids == [s.id for s in samples]
    for original, read in zip(samples, loaded, strict=True):
        assert read.text == original.text
        assert np.array_equal(read.image, original.image)
        assert np.array_equal(read.mask, original.mask)
