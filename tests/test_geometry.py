import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from segzero_ros.core.geometry import (
    Box,
    FrameScale,
    ObjectPrompt,
    Point,
    box_to_frame,
    box_to_image,
    clamp_point,
    mask_box,
    normalize_box,
    point_to_image,
    resize_to_reasoning_frame,
)


def test_scale_matches_reference_arithmetic():
    scale = FrameScale.for_image((1280, 720))
    assert scale.x_factor == pytest.approx(1280 / 840)
    # 420 * 1280/840 = 640 exactly; 100 * 720/840 = 85.714... → 86.
    assert point_to_image(Point(420, 100), scale) == Point(640, 86)
    # Python rounds half to even, as the reference does: 21 * 20/840 = 0.5 → 0, 63 * 20/840 = 1.5 → 2.
    tiny = FrameScale.for_image((20, 20))
    assert tiny.x_to_image(21) == 0
    assert tiny.x_to_image(63) == 2


def test_box_corners_are_ordered_and_clamped():
    assert normalize_box(Box(700, 500, -5, 20), (640, 480)) == Box(0, 20, 639, 479)


def test_points_are_clamped_onto_pixels():
    assert clamp_point(Point(640, -1), (640, 480)) == Point(639, 0)
    assert clamp_point(Point(3, 4), (640, 480)) == Point(3, 4)


def test_invalid_image_size_is_rejected():
    with pytest.raises(ValueError):
        FrameScale.for_image((0, 480))


@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    x=st.integers(0, 840),
    y=st.integers(0, 840),
)
def test_frame_round_trip_is_within_half_a_frame_pixel(width, height, x, y):
    scale = FrameScale.for_image((width, height))
    image_box = box_to_image(Box(x, y, x, y), scale)
    back = box_to_frame(image_box, scale)
    # Rounding in the image frame loses at most half an image pixel = 840/(2W) frame pixels.
    assert abs(back.x1 - x) <= 840 / (2 * width) + 0.5
    assert abs(back.y1 - y) <= 840 / (2 * height) + 0.5


@pytest.mark.parametrize("size", [(333, 517), (1, 1), (1920, 1080), (841, 839)])
def test_resize_squashes_to_840_without_keeping_aspect(size):
    image = Image.new("RGB", size, (10, 20, 30))
    resized = resize_to_reasoning_frame(image)
    assert resized.size == (840, 840)
    assert resized.getpixel((420, 420)) == (10, 20, 30)


def test_resize_converts_to_rgb():
    assert resize_to_reasoning_frame(Image.new("L", (10, 10), 7)).mode == "RGB"


def test_an_object_prompt_is_a_box_and_its_points_whatever_sequence_they_came_in():
    from_list = ObjectPrompt(Box(1, 2, 3, 4), [Point(2, 3)])  # type: ignore[arg-type]
    assert from_list == ObjectPrompt(Box(1, 2, 3, 4), (Point(2, 3),)) and hash(from_list)
    assert ObjectPrompt(Box(0, 0, 1, 1)).points == ()


def test_mask_box_by_hand_and_the_empty_mask():
    mask = np.zeros((5, 7), dtype=bool)
    assert mask_box(mask) is None
    mask[1, 2] = mask[3, 5] = True
    assert mask_box(mask) == Box(2, 1, 5, 3)  # corners inclusive
    mask[:] = False
    mask[4, 6] = True
    assert mask_box(mask.astype(np.uint8) * 255) == Box(6, 4, 6, 4)
