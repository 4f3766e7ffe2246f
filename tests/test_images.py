"""segzero_ros.images: files come back upright (EXIF orientation applied), RGB, writable; bad files fail clearly."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_ros.errors import SegZeroError
from segzero_ros.images import ImageReadError, load_rgb, open_upright

ORIENTATION_TAG = 0x0112

# Six distinct colours, stored as 2 rows × 3 columns:  A B C
#                                                      D E F
A, B, C = (255, 0, 0), (0, 255, 0), (0, 0, 255)
D, E, F = (255, 255, 0), (255, 0, 255), (0, 255, 255)
STORED = np.array([[A, B, C], [D, E, F]], dtype=np.uint8)

# What a viewer shows for each EXIF orientation, written out by hand.
UPRIGHT = {
    1: [[A, B, C], [D, E, F]],  # as stored
    2: [[C, B, A], [F, E, D]],  # mirrored left-right
    3: [[F, E, D], [C, B, A]],  # rotated 180°
    6: [[D, A], [E, B], [F, C]],  # rotated 90° clockwise (a phone held upright, home button down)
    8: [[C, F], [B, E], [A, D]],  # rotated 90° counter-clockwise
}


def save_with_orientation(pixels: np.ndarray, path: Path, orientation: int, **options: object) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **options)
    return path


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_png_with_orientation_tag_comes_back_upright_pixel_exact(tmp_path, orientation):
    path = save_with_orientation(STORED, tmp_path / "photo.png", orientation)
    assert Image.open(path).getexif()[ORIENTATION_TAG] == orientation  # the tag really is in the file
    image = load_rgb(path)
    assert image.dtype == np.uint8
    assert np.array_equal(image, np.array(UPRIGHT[orientation], dtype=np.uint8))


def test_jpeg_portrait_photo_comes_back_upright(tmp_path):
    # JPEG is lossy: 8×8-pixel colour cells (one JPEG block each, no chroma subsampling) keep centres near exact.
    cells = np.repeat(np.repeat(STORED, 8, axis=0), 8, axis=1)  # stored 16 high × 24 wide
    path = save_with_orientation(cells, tmp_path / "phone.jpg", 6, quality=100, subsampling=0)
    image = load_rgb(path)
    assert image.shape == (24, 16, 3)  # upright: 24 high × 16 wide
    centres = image[4::8, 4::8].astype(int)
    assert np.abs(centres - np.array(UPRIGHT[6])).max() <= 8


def test_result_is_rgb_and_writable_for_grey_and_rgba_files(tmp_path):
    grey = np.array([[0, 100, 200]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 1] = (10, 20, 30, 0)  # fully transparent: the colour is kept, the alpha dropped
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    grey_rgb = load_rgb(tmp_path / "grey.png")
    assert grey_rgb.tolist() == [[[0, 0, 0], [100, 100, 100], [200, 200, 200]]]
    assert load_rgb(tmp_path / "rgba.png").tolist() == [[[0, 0, 0], [10, 20, 30]]]
    assert grey_rgb.flags.writeable  # torch warns about read-only arrays


def test_open_upright_keeps_a_palette_masks_indices(tmp_path):
    mask = Image.fromarray(np.array([[0, 1, 2], [0, 0, 1]], dtype=np.uint8), mode="P")
    mask.putpalette([9, 9, 9, 255, 0, 0, 0, 255, 0] + [0] * 759)
    path = tmp_path / "mask.png"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    mask.save(path, exif=exif)
    upright = open_upright(path)
    assert upright.mode == "P"
    assert np.asarray(upright).tolist() == [[0, 0], [0, 1], [1, 2]]


def test_unreadable_files_raise_image_read_error_naming_the_file(tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 37).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for path in (not_an_image, truncated, tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(ImageReadError, match=re.escape(f"cannot read image {path}")):
            load_rgb(path)
    assert issubclass(ImageReadError, SegZeroError)  # the CLI prints these as one line, exit code 2
