"""Reading image files the way people see them: decoded, upright, RGB.

Phone cameras store a portrait photo as landscape pixels plus an EXIF Orientation tag; viewers, annotation
tools (LabelMe) and cv2.imread rotate it upright, so masks, polygons and commands ("the cup on the left")
refer to the upright picture. Every file read here therefore has its EXIF orientation applied, so the CLI
and the dataset loaders see the same image the person did.

numpy and PIL only (PIL imported on use, so importing this module stays cheap).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segzero_ros.errors import SegZeroError

if TYPE_CHECKING:
    from PIL import Image


class ImageReadError(SegZeroError):
    """A file is missing, not an image PIL can decode, or truncated; the message names the file."""


def open_upright(path: Path | str) -> Image.Image:
    """The decoded image with its EXIF orientation applied, in its own mode (a palette mask stays "P").

    The result is detached from the file, which is closed on return.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            # Decodes the pixels and returns a new image (rotated when tagged), so closing the file is safe.
            return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError) as exc:  # PIL reports some malformed files as SyntaxError
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def load_rgb(path: Path | str) -> np.ndarray:
    """H×W×3 uint8 RGB, upright (EXIF orientation applied), as a writable array of its own.

    Writable because arrays viewing PIL memory are read-only, which torch warns about downstream.
    Raises ImageReadError when the file cannot be read.
    """
    image = open_upright(path)
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))
