"""image_transport's compressedDepth (PNG) decoded as the plugin's subscriber does: 16UC1 exactly, 32FC1 through
its quantised inverse depth (error bounded by the quantisation step), no-reading pixels, and clear refusals."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from segzero_ros.image_messages import ImageConversionError, compress_depth, compressed_depth_to_array


def message(fmt: str, data: bytes) -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


def test_16uc1_round_trips_exactly_and_drops_readings_beyond_the_maximum():
    depth = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 3
    fmt, data = compress_depth(depth, depth_max=8.0)
    assert fmt == "16UC1; compressedDepth png"
    decoded = compressed_depth_to_array(message(fmt, data))
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, np.where(depth > 8000, 0, depth))


def test_32fc1_decodes_the_quantised_inverse_depth_within_one_step():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 4.0, size=(40, 50)).astype(np.float32)
    depth[0, :5] = np.nan
    depth[1, :5] = 20.0  # beyond depth_max: no reading
    fmt, data = compress_depth(depth, depth_max=10.0, depth_quantization=100.0)
    assert fmt == "32FC1; compressedDepth png"
    decoded = compressed_depth_to_array(message(fmt, data))
    assert decoded.dtype == np.float32 and decoded.shape == depth.shape
    assert np.isnan(decoded[:2, :5]).all()
    valid = np.isfinite(depth) & (depth < 10.0)
    # v = A/z + B truncated: the decoded z = A/(v - B) lies in [z, A/(A/z - 1)]; step ≈ z²/A (A = 100·101)
    a = 100.0 * 101.0
    error = decoded[valid] - depth[valid]
    assert (error >= -1e-5).all() and (error <= depth[valid] ** 2 / a * 1.01 + 1e-5).all()


def test_older_format_strings_and_refusals():
    fmt, data = compress_depth(np.full((4, 4), 1000, dtype=np.uint16))
    assert compressed_depth_to_array(message("16UC1; compressedDepth", data))[0, 0] == 1000  # pre-png-suffix
    with pytest.raises(ImageConversionError, match="RVL is not supported"):
        compressed_depth_to_array(message("16UC1; compressedDepth rvl", data))
    with pytest.raises(ImageConversionError, match="not image_transport's compressedDepth"):
        compressed_depth_to_array(message("rgb8; jpeg compressed bgr8", data))
    with pytest.raises(ImageConversionError, match="only 16UC1 and 32FC1"):
        compressed_depth_to_array(message("mono8; compressedDepth png", data))
    with pytest.raises(ImageConversionError, match="no PNG after its header"):
        compressed_depth_to_array(message(fmt, data[:12]))
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_depth_to_array(message(fmt, data[:12] + b"not a png at all"))
