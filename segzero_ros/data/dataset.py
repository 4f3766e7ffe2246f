"""The one sample type every evaluation loader produces, and a lazy, indexable collection of them.

Benchmarks hold hundreds of full-resolution images and masks; loading them all up front would cost
gigabytes and minutes before the first prediction. An :class:`EvalDataset` therefore knows its sample ids
cheaply (a resumed run needs only those to decide what is left) and decodes one sample when asked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segzero_ros.errors import SegZeroError


class DatasetFormatError(SegZeroError):
    """A dataset is missing, malformed or in a layout the loaders do not recognise; the message says which."""


@dataclass(frozen=True)
class EvalSample:
    id: str
    """Unique within its dataset; results and resumption are keyed by it."""
    image: np.ndarray
    """RGB H×W×3 uint8 at the original resolution."""
    mask: np.ndarray
    """Ground-truth foreground, bool H×W, same size as the image."""
    text: str
    """The referring expression or command, as the dataset gives it."""
    ignore: np.ndarray | None = None
    """bool H×W pixels excluded from scoring (ReasonSeg "ignore" polygons), or None."""
    instances: tuple[np.ndarray, ...] | None = None
    """The GT objects one by one (bool H×W each) when the dataset has several per command; `mask` is then
    their union. None: the sample's one object is `mask` (or no object at all when `mask` is empty)."""

    @property
    def objects(self) -> tuple[np.ndarray, ...]:
        """Each GT object's mask; empty for a sample whose command matches nothing in the image."""
        if self.instances is not None:
            return self.instances
        return (self.mask,) if self.mask.any() else ()

    @property
    def has_target(self) -> bool:
        return bool(self.mask.any())

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise DatasetFormatError(
                f"sample {self.id!r}: image must be H×W×3 uint8, got {self.image.shape} {self.image.dtype}"
            )
        named = [("mask", self.mask), ("ignore", self.ignore)]
        named += [(f"instance {i}", instance) for i, instance in enumerate(self.instances or ())]
        for name, array in named:
            if array is None:
                continue
            if array.dtype != np.bool_:
                raise DatasetFormatError(f"sample {self.id!r}: {name} must be bool, got {array.dtype}")
            if array.shape != self.image.shape[:2]:
                raise DatasetFormatError(
                    f"sample {self.id!r}: {name} is {array.shape[1]}×{array.shape[0]} but the image is "
                    f"{self.image.shape[1]}×{self.image.shape[0]}"
                )


class EvalDataset:
    """Sample ids known up front, samples decoded on demand; `subset` keeps the laziness."""

    def __init__(self, name: str, ids: Sequence[str], load: Callable[[int], EvalSample],
                 indices: Sequence[int] | None = None) -> None:
        self.name = name
        self._all_ids = list(ids)
        self._load = load
        self._indices = list(range(len(self._all_ids))) if indices is None else list(indices)
        self._positions: dict[str, int] | None = None
        duplicates = _duplicates(self._all_ids)
        if duplicates:
            raise DatasetFormatError(f"{name}: duplicate sample ids {duplicates[:5]}")

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def ids(self) -> list[str]:
        return [self._all_ids[i] for i in self._indices]

    def __getitem__(self, position: int) -> EvalSample:
        index = self._indices[position]
        sample = self._load(index)
        if sample.id != self._all_ids[index]:
            raise DatasetFormatError(f"{self.name}: loader returned {sample.id!r} for id {self._all_ids[index]!r}")
        return sample

    def __iter__(self) -> Iterator[EvalSample]:
        for position in range(len(self)):
            yield self[position]

    def subset(self, positions: Sequence[int]) -> EvalDataset:
        """The samples at these positions (of this view), still lazy."""
        return EvalDataset(self.name, self._all_ids, self._load, [self._indices[p] for p in positions])

    def head(self, limit: int | None) -> EvalDataset:
        return self if limit is None or limit >= len(self) else self.subset(range(max(0, limit)))

    def select_ids(self, wanted: set[str]) -> EvalDataset:
        return self.subset([p for p, sample_id in enumerate(self.ids) if sample_id in wanted])

    def position_of(self, sample_id: str) -> int | None:
        if self._positions is None:
            self._positions = {self._all_ids[index]: position for position, index in enumerate(self._indices)}
        return self._positions.get(sample_id)


def _duplicates(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for sample_id in ids:
        if sample_id in seen:
            repeated.append(sample_id)
        seen.add(sample_id)
    return repeated


def safe_filename(sample_id: str) -> str:
    """A file name for a sample id: readable, and distinct even when sanitising makes two ids alike."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._")[:80] or "sample"
    if readable == sample_id:
        return readable
    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}"


def image_to_rgb_array(image: Any) -> np.ndarray:
    """PIL image or array → RGB H×W×3 uint8 (grey expanded, alpha dropped)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        # A writable copy: arrays viewing PIL memory are read-only, which torch warns about downstream.
        return np.array(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DatasetFormatError(f"cannot read an RGB image from an array of shape {array.shape}")
    if array.dtype != np.uint8:
        raise DatasetFormatError(f"image arrays must be uint8, got {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def mask_to_bool(mask: Any) -> np.ndarray:
    """Mask as stored (nested lists, array, PIL image of any mode) → bool H×W; nonzero is foreground.

    A palette ("P") PNG is read by palette index, so index 0 is background whatever its colour; a colour
    mask counts a pixel as foreground when any of its RGB channels is nonzero.
    """
    from PIL import Image

    if isinstance(mask, Image.Image):
        mask = np.asarray(mask) if mask.mode in ("1", "L", "P", "I", "I;16", "F") else np.asarray(mask.convert("RGB"))
    array = np.asarray(mask)
    if array.ndim == 3:
        return np.asarray(array[:, :, :3].any(axis=2), dtype=bool)
    if array.ndim != 2:
        raise DatasetFormatError(f"a mask must be 2-D, got shape {array.shape}")
    return array.astype(bool)
