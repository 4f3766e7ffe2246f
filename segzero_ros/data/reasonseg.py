"""ReasonSeg in LISA's original layout: ``<split>/<name>.jpg`` next to a LabelMe-style ``<name>.json``.

The JSON holds ``text`` (a list of questions), ``is_sentence`` and ``shapes``: polygons labelled "target"
or "ignore" ("flag" shapes are deprecated annotations and skipped). The mask follows LISA's rasterisation:
each polygon is filled (cv2.fillPoly, edges included, vertices truncated to int) and drawn, largest area
first, so a smaller polygon painted later wins where they overlap. Pixels that end up "ignore" are not
foreground, and LISA's evaluation leaves them out of scoring entirely; ``EvalSample.ignore`` carries them
so the runner can do the same. (The Hugging Face conversions counted them as foreground.)

LISA's validation uses only each image's first question; ``texts="all"`` gives one sample per question.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.data.dataset import DatasetFormatError, EvalDataset, EvalSample
from segzero_ros.images import ImageReadError, load_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
TARGET_VALUE = 1
IGNORE_VALUE = 255


def is_reasonseg_folder(path: Path) -> bool:
    """A folder with at least one LabelMe JSON that has an image beside it."""
    if not path.is_dir():
        return False
    return any(_image_for(json_path) is not None for json_path in sorted(path.glob("*.json"))[:20])


def load_reasonseg(path: Path, texts: str = "first") -> EvalDataset:
    """One sample per annotated image (``texts="first"``, LISA's protocol) or per question (``"all"``)."""
    if texts not in ("first", "all"):
        raise ValueError(f"texts must be 'first' or 'all', got {texts!r}")
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: not a folder")
    entries: list[tuple[str, Path, Path, int]] = []
    for json_path in sorted(path.glob("*.json")):
        image_path = _image_for(json_path)
        if image_path is None:
            continue
        questions = read_annotation(json_path).get("text") or []
        if isinstance(questions, str):
            questions = [questions]
        if not questions:
            raise DatasetFormatError(f"{json_path}: no question in 'text'")
        if texts == "first":
            entries.append((json_path.stem, image_path, json_path, 0))
        else:
            entries.extend((f"{json_path.stem}#{k}", image_path, json_path, k) for k in range(len(questions)))
    if not entries:
        raise DatasetFormatError(f"{path}: no LabelMe JSON with a matching image (expected NAME.jpg + NAME.json)")

    def load(index: int) -> EvalSample:
        sample_id, image_path, json_path, text_index = entries[index]
        try:
            # Upright (EXIF applied), as cv2.imread in LISA and LabelMe both show it: the polygons match that.
            image = load_rgb(image_path)
        except ImageReadError as exc:
            raise DatasetFormatError(str(exc)) from exc
        annotation = read_annotation(json_path)
        labels = rasterize_shapes(annotation.get("shapes") or [], image.shape[:2], where=str(json_path))
        questions = annotation["text"] if isinstance(annotation["text"], list) else [annotation["text"]]
        return EvalSample(
            id=sample_id,
            image=image,
            mask=labels == TARGET_VALUE,
            text=str(questions[text_index]),
            ignore=labels == IGNORE_VALUE,
        )

    return EvalDataset(f"reasonseg:{path}", [entry[0] for entry in entries], load)


def read_annotation(json_path: Path) -> dict[str, Any]:
    """LabelMe JSON; a few ReasonSeg files are cp1252, which LISA also falls back to."""
    raw = json_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    try:
        annotation = json.loads(text)
    except ValueError as exc:
        raise DatasetFormatError(f"{json_path}: not JSON: {exc}") from exc
    if not isinstance(annotation, dict) or "shapes" not in annotation:
        raise DatasetFormatError(f"{json_path}: not a LabelMe annotation (no 'shapes')")
    return annotation


def rasterize_shapes(shapes: Sequence[dict[str, Any]], size_hw: tuple[int, int], where: str = "") -> np.ndarray:
    """uint8 label map: 0 background, 1 target, 255 ignore, painted largest polygon first."""
    import cv2

    height, width = size_hw
    polygons: list[tuple[int, np.ndarray, int]] = []
    for shape in shapes:
        label = str(shape.get("label", ""))
        if label.lower() == "flag":
            continue
        try:
            points = np.asarray(shape["points"], dtype=np.float64).astype(np.int32).reshape(-1, 2)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{where}: shape {label!r} has unusable points: {exc}") from exc
        if points.shape[0] == 0:
            continue
        value = IGNORE_VALUE if "ignore" in label.lower() else TARGET_VALUE
        polygons.append((_painted_area(points, height, width), points, value))
    labels = np.zeros((height, width), dtype=np.uint8)
    # Stable sort on area, largest first: equal areas keep file order, as numpy's argsort would not promise.
    for _, points, value in sorted(polygons, key=lambda item: -item[0]):
        cv2.polylines(labels, [points], True, value, 1)
        cv2.fillPoly(labels, [points], value)
    return labels


def _painted_area(points: np.ndarray, height: int, width: int) -> int:
    import cv2

    scratch = np.zeros((height, width), dtype=np.uint8)
    cv2.polylines(scratch, [points], True, 1, 1)
    cv2.fillPoly(scratch, [points], 1)
    return int(scratch.sum())


def _image_for(json_path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = json_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None
