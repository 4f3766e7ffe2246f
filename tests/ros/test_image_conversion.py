"""sensor_msgs/Image ⇄ numpy, exactly: every supported encoding, padded rows, both byte orders.

Needs only the sensor_msgs wheel (no DDS, no network namespace).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.ros
pytest.importorskip("sensor_msgs.msg", reason="ROS 2 wheels (sensor_msgs) are not installed")

import cv2  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from segzero_ros.ros.image_conversion import (  # noqa: E402
    ENCODINGS,
    ImageConversionError,
    array_to_image,
    compressed_to_rgb8,
    image_to_array,
    image_to_rgb8,
    mask_to_image,
)


def raw_image(encoding: str, width: int, height: int, step: int, data: bytes, bigendian: bool = False) -> Image:
    return Image(encoding=encoding, width=width, height=height, step=step, data=data,
                 is_bigendian=1 if bigendian else 0)


def random_pixels(encoding: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    layout = ENCODINGS[encoding]
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    high = 65536 if layout.dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, high, shape).astype(layout.dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("padding", [0, 1, 7])
@pytest.mark.parametrize("bigendian", [False, True])
def test_round_trip_is_exact(encoding, padding, bigendian):
    pixels = random_pixels(encoding, 5, 7)
    row_bytes = pixels[0].nbytes
    msg = array_to_image(pixels, encoding, step=row_bytes + padding, is_bigendian=bigendian)
    assert (msg.width, msg.height, msg.step, len(msg.data)) == (7, 5, row_bytes + padding, 5 * (row_bytes + padding))
    back = image_to_array(msg)
    assert back.dtype == pixels.dtype.newbyteorder("=") and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(sorted(ENCODINGS)), height=st.integers(1, 6), width=st.integers(1, 6),
       padding=st.integers(0, 9), bigendian=st.booleans(), seed=st.integers(0, 2**16))
def test_round_trip_property(encoding, height, width, padding, bigendian, seed):
    pixels = random_pixels(encoding, height, width, seed)
    msg = array_to_image(pixels, encoding, step=pixels[0].nbytes + padding, is_bigendian=bigendian)
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_padded_bgr8_rows_to_rgb_by_hand():
    # 2×2 bgr8 with two padding bytes (0xEE) after each 6-byte row.
    data = bytes([1, 2, 3, 4, 5, 6, 0xEE, 0xEE, 7, 8, 9, 10, 11, 12, 0xEE, 0xEE])
    rgb = image_to_rgb8(raw_image("bgr8", 2, 2, 8, data))
    assert rgb.tolist() == [[[3, 2, 1], [6, 5, 4]], [[9, 8, 7], [12, 11, 10]]]
    assert rgb.flags.c_contiguous and rgb.dtype == np.uint8


def test_rgba_bgra_and_mono_to_rgb_by_hand():
    assert image_to_rgb8(raw_image("rgba8", 1, 1, 4, bytes([10, 20, 30, 40]))).tolist() == [[[10, 20, 30]]]
    assert image_to_rgb8(raw_image("bgra8", 1, 1, 4, bytes([10, 20, 30, 40]))).tolist() == [[[30, 20, 10]]]
    assert image_to_rgb8(raw_image("mono8", 2, 1, 3, bytes([7, 9, 0xEE]))).tolist() == [[[7, 7, 7], [9, 9, 9]]]
    rgb = image_to_rgb8(raw_image("rgb8", 1, 2, 4, bytes([1, 2, 3, 0xEE, 4, 5, 6, 0xEE])))
    assert rgb.tolist() == [[[1, 2, 3]], [[4, 5, 6]]]


def test_sixteen_bit_byte_order_and_scaling_by_hand():
    data = bytes([0x01, 0x02, 0xAB, 0xCD])
    assert image_to_array(raw_image("16UC1", 2, 1, 4, data, bigendian=True)).tolist() == [[0x0102, 0xABCD]]
    assert image_to_array(raw_image("16UC1", 2, 1, 4, data, bigendian=False)).tolist() == [[0x0201, 0xCDAB]]
    # mono16 → rgb8 keeps the high byte, like cv_bridge.
    assert image_to_rgb8(raw_image("mono16", 2, 1, 4, data, bigendian=True)).tolist() == [[[1, 1, 1], [0xAB] * 3]]


def test_last_row_padding_may_be_left_out():
    data = bytes([1, 2, 3, 0xEE, 4, 5, 6])  # step 4, but the final row stops after its 3 pixels
    assert image_to_array(raw_image("mono8", 3, 2, 4, data)).tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(("msg", "problem"), [
    (raw_image("yuv422", 2, 1, 4, bytes(4)), "unsupported image encoding 'yuv422'; supported: rgb8, bgr8"),
    (raw_image("8UC3", 1, 1, 3, bytes(3)), "unsupported image encoding '8UC3'"),
    (raw_image("rgb8", 2, 1, 5, bytes(5)), "step 5 is shorter than one row of 2 rgb8 pixels (6 bytes)"),
    (raw_image("mono8", 2, 2, 2, bytes(3)), "data holds 3 bytes, but 2 rows of step 2 need 4"),
    (raw_image("mono8", 2, 2, 2, bytes(5)), "data holds 5 bytes, but 2 rows of step 2 need 4"),
    (raw_image("mono8", 0, 0, 0, b""), "image has no pixels (0×0)"),
])
def test_malformed_images_are_refused_with_the_reason(msg, problem):
    with pytest.raises(ImageConversionError) as caught:
        image_to_rgb8(msg)
    assert str(caught.value).startswith(problem)


def test_array_to_image_refuses_mismatched_arrays():
    with pytest.raises(ImageConversionError, match=r"rgb8 needs a H×W×3 array, got shape \(2, 2\)"):
        array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="16UC1 needs uint16 pixels, got uint8"):
        array_to_image(np.zeros((2, 2), np.uint8), "16UC1")
    with pytest.raises(ImageConversionError, match="step 3 is shorter than a row"):
        array_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8", step=3)


def test_mask_becomes_mono8_zero_or_255_with_the_header():
    mask = np.array([[True, False, False], [False, True, True]])
    header = Image().header
    header.frame_id = "cam"
    msg = mask_to_image(mask, header)
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.header.frame_id) == ("mono8", 3, 2, 3, "cam")
    assert list(msg.data) == [255, 0, 0, 0, 255, 255]
    with pytest.raises(ImageConversionError):
        mask_to_image(np.zeros((2, 2, 1), bool))


def test_png_compressed_image_decodes_exactly_and_garbage_is_refused():
    pixels = random_pixels("rgb8", 6, 9)
    png = cv2.imencode(".png", np.ascontiguousarray(pixels[:, :, ::-1]))[1].tobytes()
    np.testing.assert_array_equal(compressed_to_rgb8(CompressedImage(format="png", data=png)), pixels)
    with pytest.raises(ImageConversionError, match="cannot decode compressed image"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=b"not an image"))
    with pytest.raises(ImageConversionError, match="compressed image is empty"):
        compressed_to_rgb8(CompressedImage(format="jpeg"))
