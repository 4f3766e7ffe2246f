import numpy as np
import pytest

from segzero_ros.core.geometry import Box, Point
from segzero_ros.visualize import BOX_COLOR, MASK_COLOR, POINT_COLOR, mask_to_mono8, overlay_image


def test_mask_pixels_are_blended_and_others_untouched():
    image = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:50] = True
    out = overlay_image(image, mask, alpha=0.5)
    expected = [round(100 * 0.5 + c * 0.5) for c in MASK_COLOR]  # e.g. (100+255)/2 = 177.5 → 178
    assert out[15, 40].tolist() == expected
    assert (out[~mask] == 100).all()
    assert (image == 100).all()  # input not modified


def test_box_and_points_are_drawn():
    image = np.zeros((100, 100, 3), np.uint8)
    out = overlay_image(image, None, Box(10, 10, 80, 80), [Point(50, 50)])
    assert out[10, 40].tolist() == list(BOX_COLOR)
    assert out[50, 50].tolist() == list(POINT_COLOR)
    assert out[30, 30].tolist() == [0, 0, 0]


def test_mask_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="does not match"):
        overlay_image(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), bool))


def test_mono8_is_0_or_255():
    mask = np.array([[True, False]])
    assert mask_to_mono8(mask).tolist() == [[255, 0]]
    assert mask_to_mono8(mask).dtype == np.uint8
