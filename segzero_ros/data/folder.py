"""The plain folder format, for evaluating on your own images.

Layout (paths in the manifest are relative to the folder; absolute paths also work)::

    my_data/
      samples.jsonl        one JSON object per line:
                           {"id": "mug-1", "image": "images/kitchen.jpg", "mask": "masks/mug-1.png",
                            "text": "the mug I can drink from"}
      images/…             any format PIL reads; EXIF orientation is applied (upright, as viewers show it)
      masks/…              PNG, same size as the upright image; nonzero (or palette index > 0) is foreground

"id" is optional (default: the mask file's stem); an optional "ignore" mask path marks pixels left out of
scoring. One image may appear on several lines, each with its own mask and text.

Several objects per command ("all the red cups"): "mask" is a list of mask paths, one per object; the
union is scored. A command matching nothing in the image (a "not in view" sample): ``"mask": []`` (then
"id" is required).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segzero_ros.data.dataset import (
    DatasetFormatError,
    EvalDataset,
    EvalSample,
    mask_to_bool,
    safe_filename,
)
from segzero_ros.files import write_atomically
from segzero_ros.images import ImageReadError, load_rgb, open_upright

MANIFEST_NAME = "samples.jsonl"


class MaskedSample(Protocol):
    """Anything with an id, an RGB image, a bool mask and a text: EvalSample, SyntheticSample, …"""

    @property
    def id(self) -> str: ...

    @property
    def image(self) -> np.ndarray: ...

    @property
    def mask(self) -> np.ndarray: ...

    @property
    def text(self) -> str: ...


def write_folder_dataset(samples: Iterable[MaskedSample], root: Path) -> Path:
    """Write samples in the folder format (lossless PNG images and masks); returns the manifest path.

    An existing manifest is replaced, so the folder always describes exactly the samples written.
    """
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise ValueError(f"duplicate sample id {sample.id!r}")
        seen.add(sample.id)
        stem = safe_filename(sample.id)
        image_path = f"images/{stem}.png"
        Image.fromarray(np.asarray(sample.image, dtype=np.uint8)).save(root / image_path)
        instances = getattr(sample, "instances", None)
        mask_entry: str | list[str]
        if instances is None:
            mask_entry = f"masks/{stem}.png"
            Image.fromarray(np.asarray(sample.mask, dtype=bool)).save(root / mask_entry)
        else:
            mask_entry = [f"masks/{stem}-{number}.png" for number in range(1, len(instances) + 1)]
            for relative, instance in zip(mask_entry, instances, strict=True):
                Image.fromarray(np.asarray(instance, dtype=bool)).save(root / relative)
        entries.append({"id": sample.id, "image": image_path, "mask": mask_entry, "text": sample.text})
    manifest = root / MANIFEST_NAME
    write_atomically(manifest, "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries))
    return manifest


def is_folder_dataset(path: Path) -> bool:
    return (path.is_dir() and (path / MANIFEST_NAME).is_file()) or (path.is_file() and path.name.endswith(".jsonl"))


def load_folder_dataset(path: Path) -> EvalDataset:
    """Read the manifest now (ids, paths, texts); images and masks are decoded per sample.

    Every file is read upright (EXIF orientation applied; masks keep their mode). Viewers, annotation tools
    and cv2.imread show a phone photo upright, so masks drawn over it are upright too; a mask without EXIF is
    read as stored, and one drawn on a non-square photo's unrotated pixels fails the size check loudly.
    """
    path = Path(path)
    manifest = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest.is_file():
        raise DatasetFormatError(f"{path}: no {MANIFEST_NAME} manifest (see `segzero eval --help` for the layout)")
    root = manifest.parent
    entries = [_read_entry(root, manifest, number, line)
               for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1)
               if line.strip()]

    def load(index: int) -> EvalSample:
        entry = entries[index]
        try:
            image = load_rgb(entry["image"])
            ignore = mask_to_bool(open_upright(entry["ignore"])) if entry.get("ignore") else None
            instances: tuple[np.ndarray, ...] | None = None
            if isinstance(entry["mask"], list):
                instances = tuple(mask_to_bool(open_upright(path)) for path in entry["mask"])
            else:
                mask = mask_to_bool(open_upright(entry["mask"]))
        except ImageReadError as exc:
            raise DatasetFormatError(str(exc)) from exc
        if instances is not None:
            mask = np.zeros(image.shape[:2], dtype=bool)
            for instance in instances:
                if instance.shape != mask.shape:
                    break  # EvalSample names the instance that does not fit
                mask |= instance
        if ignore is not None:
            mask = mask & ~ignore
            instances = None if instances is None else tuple(instance & ~ignore for instance in instances)
        return EvalSample(id=entry["id"], image=image, mask=mask, text=entry["text"], ignore=ignore,
                          instances=instances)

    return EvalDataset(f"folder:{root}", [entry["id"] for entry in entries], load)


def _read_entry(root: Path, manifest: Path, number: int, line: str) -> dict[str, Any]:
    where = f"{manifest}:{number}"
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise DatasetFormatError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object")
    missing = [key for key in ("image", "text") if not isinstance(entry.get(key), str)]
    masks = entry.get("mask")
    listed = isinstance(masks, list) and all(isinstance(item, str) for item in masks)
    if not isinstance(masks, str) and not listed:
        missing.append("mask")
    if missing:
        raise DatasetFormatError(f"{where}: missing or non-string {', '.join(missing)} (mask: a path or a list "
                                 "of paths)")
    if listed and entry.get("id") is None:
        raise DatasetFormatError(f"{where}: a sample with a list of masks needs an \"id\"")
    resolved: dict[str, Any] = {"text": entry["text"]}
    for key in ("image", "ignore"):
        if entry.get(key):
            resolved[key] = root / entry[key]
    resolved["mask"] = [root / item for item in (masks or [])] if listed else root / str(masks)
    resolved["id"] = str(entry["id"]) if entry.get("id") is not None else Path(str(masks)).stem
    return resolved
