"""Synthetic referring-segmentation data: coloured shapes on noisy or gradient backgrounds.

Each sample is an RGB image, the exact bool mask of one target shape and an expression that picks out that
shape and no other ("the blue circle", "the largest red square", "the green triangle on the left"). The
scenes are built so the expression is unambiguous, and :func:`resolve_expression` checks that claim.

Deterministic: sample ``i`` of seed ``s`` depends only on (s, i), so ``generate_samples(3, s)`` is a prefix
of ``generate_samples(100, s)`` and a training set can be extended without changing its first samples.
Shapes never overlap (their circumscribed circles keep a gap), so every mask is the whole shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segzero_ros.core.geometry import Box

if TYPE_CHECKING:
    from segzero_ros.data.dataset import EvalDataset

SHAPE_KINDS = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 225),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 190),
    "orange": (250, 140, 30),
}
EXPRESSION_MODES = ("unique", "largest", "smallest", "left", "right")
SIZE_RANGE = (0.07, 0.16)
"""Shape size (radius, half side, circumradius) as a fraction of the image's shorter side."""
SIZE_RATIO = 1.3
"""For "largest"/"smallest", the target's size differs from every same-looking shape by at least this factor."""
PLACEMENT_GAP = 3
"""Pixels kept between circumscribed circles of two shapes, and between a shape and the border."""


@dataclass(frozen=True)
class Shape:
    kind: str
    """"circle", "square" or "triangle" (equilateral, pointing up)."""
    color: str
    """A key of COLORS."""
    center: tuple[int, int]
    """(x, y) in pixels."""
    size: int
    """Radius (circle), half side (square) or circumradius (triangle), in pixels."""

    @property
    def reach(self) -> float:
        """Radius of the circumscribed circle: what placement keeps apart."""
        return self.size * math.sqrt(2) if self.kind == "square" else float(self.size)

    def draw(self, canvas: np.ndarray, value: int | tuple[int, int, int]) -> None:
        """Fill the shape into canvas (H×W or H×W×3) with value; edges included, no anti-aliasing."""
        import cv2

        x, y = self.center
        if self.kind == "circle":
            cv2.circle(canvas, (x, y), self.size, value, thickness=-1, lineType=cv2.LINE_8)
        elif self.kind == "square":
            cv2.rectangle(canvas, (x - self.size, y - self.size), (x + self.size, y + self.size), value, thickness=-1)
        elif self.kind == "triangle":
            cv2.fillPoly(canvas, [self.triangle_vertices()], value, lineType=cv2.LINE_8)
        else:
            raise ValueError(f"unknown shape kind {self.kind!r}")

    def triangle_vertices(self) -> np.ndarray:
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        x, y = self.center
        vertices = np.stack([x + self.size * np.cos(angles), y + self.size * np.sin(angles)], axis=1)
        return np.round(vertices).astype(np.int32)

    def mask(self, width: int, height: int) -> np.ndarray:
        canvas = np.zeros((height, width), dtype=np.uint8)
        self.draw(canvas, 1)
        return canvas.astype(bool)


@dataclass(frozen=True)
class SyntheticSample:
    id: str
    image: np.ndarray
    """RGB H×W×3 uint8."""
    mask: np.ndarray
    """bool H×W: the target shape's pixels."""
    text: str
    """Referring expression that matches the target and nothing else."""
    shapes: tuple[Shape, ...]
    target: int
    """Index of the target in `shapes`."""

    @property
    def box(self) -> Box:
        """Tight GT box from the mask's extreme pixels (corners inclusive), as Seg-Zero's data defines it."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        return Box(int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def generate_samples(n: int, seed: int = 0, size: int | tuple[int, int] = 256, start: int = 0) -> list[SyntheticSample]:
    """Samples start … start+n−1 of this seed; `size` is a side or (width, height)."""
    return list(iter_samples(n, seed, size, start))


def iter_samples(n: int, seed: int = 0, size: int | tuple[int, int] = 256, start: int = 0) -> Iterator[SyntheticSample]:
    """Like generate_samples, one at a time (for datasets too large to hold in memory)."""
    for index in range(start, start + n):
        yield generate_sample(seed, index, size)


def generate_sample(seed: int, index: int, size: int | tuple[int, int] = 256) -> SyntheticSample:
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < 32:
        raise ValueError(f"images must be at least 32×32, got {width}×{height}")
    rng = np.random.default_rng([seed, index])
    for _ in range(100):
        scene = _compose_scene(rng, width, height)
        if scene is not None:
            shapes, target, text = scene
            break
    else:  # pragma: no cover - placement succeeds within a few tries at any size >= 32
        raise RuntimeError(f"could not place shapes for sample {index} of seed {seed}")
    image = _background(rng, width, height)
    for shape in shapes:
        shape.draw(image, COLORS[shape.color])
    return SyntheticSample(
        id=f"synthetic-{seed}-{index:05d}",
        image=image,
        mask=shapes[target].mask(width, height),
        text=text,
        shapes=tuple(shapes),
        target=target,
    )


@dataclass(frozen=True)
class ObjectListSample:
    """A command naming every shape of one colour: one, several, or none at all ("not in view")."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    """bool H×W: the union of the targets (all False when there is none)."""
    instances: tuple[np.ndarray, ...]
    """Each target's mask, left to right; empty when no shape has the colour."""
    text: str
    shapes: tuple[Shape, ...]
    targets: tuple[int, ...]


MAX_LIST_TARGETS = 3


def generate_object_list_samples(n: int, seed: int = 0, size: int | tuple[int, int] = 256, start: int = 0
                                 ) -> list[ObjectListSample]:
    """Samples start … start+n−1 of "all the <colour> shapes" scenes: 0 to MAX_LIST_TARGETS targets (a quarter
    of the scenes have none), plus distractors of other colours. Deterministic per (seed, index)."""
    return [generate_object_list_sample(seed, index, size) for index in range(start, start + n)]


def generate_object_list_sample(seed: int, index: int, size: int | tuple[int, int] = 256) -> ObjectListSample:
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < 32:
        raise ValueError(f"images must be at least 32×32, got {width}×{height}")
    rng = np.random.default_rng([seed, index, 1])  # a stream of its own: not the single-target samples'
    short_side = min(width, height)
    low, high = (max(3, round(f * short_side)) for f in SIZE_RANGE)
    color = str(rng.choice(list(COLORS)))
    wanted = 0 if rng.random() < 0.25 else int(rng.integers(1, MAX_LIST_TARGETS + 1))
    placed: list[Shape] = []
    for count in range(wanted + int(rng.integers(1, 4))):
        shape_color = color if count < wanted else str(rng.choice([c for c in COLORS if c != color]))
        shape = _place(rng, Shape(str(rng.choice(SHAPE_KINDS)), shape_color, (0, 0), int(rng.integers(low, high + 1))),
                       placed, width=width, height=height, x_region=(0.0, float(width)))
        if shape is not None:  # a crowded scene simply gets fewer shapes
            placed.append(shape)
    shapes = sorted(placed, key=lambda s: s.center)
    text = f"all the {color} shapes"
    targets = resolve_object_list(shapes, text)
    image = _background(rng, width, height)
    for shape in shapes:
        shape.draw(image, COLORS[shape.color])
    instances = tuple(shapes[i].mask(width, height) for i in targets)
    union = np.zeros((height, width), dtype=bool)
    for instance in instances:
        union |= instance
    return ObjectListSample(id=f"synthetic-objects-{seed}-{index:05d}", image=image, mask=union,
                            instances=instances, text=text, shapes=tuple(shapes), targets=targets)


def resolve_object_list(shapes: Sequence[Shape], text: str) -> tuple[int, ...]:
    """Indices of every shape "all the <colour> shapes" names, left to right (none for an absent colour)."""
    match = re.fullmatch(rf"all the ({'|'.join(COLORS)}) shapes", text.strip().lower())
    if match is None:
        raise ValueError(f"not an object-list expression: {text!r}")
    return tuple(i for i, s in enumerate(shapes) if s.color == match.group(1))


def resolve_expression(shapes: Sequence[Shape], text: str) -> int | None:
    """Index of the one shape the expression describes, or None when it fits none or several."""
    colors = "|".join(COLORS)
    kinds = "|".join(SHAPE_KINDS)
    patterns = (
        (rf"the (largest|smallest) ({colors}) ({kinds})", "extreme"),
        (rf"the ({colors}) ({kinds}) on the (left|right)", "side"),
        (rf"the ({colors}) ({kinds})", "color_kind"),
        (rf"the ({colors}) shape", "color"),
        (rf"the ({kinds})", "kind"),
    )
    for pattern, form in patterns:
        match = re.fullmatch(pattern, text.strip().lower())
        if match is None:
            continue
        groups = match.groups()
        if form == "extreme":
            return _unique_extreme(shapes, groups[1], groups[2], lambda s: s.size, groups[0] == "largest")
        if form == "side":
            return _unique_extreme(shapes, groups[0], groups[1], lambda s: s.center[0], groups[2] == "right")
        candidates = [
            i for i, s in enumerate(shapes)
            if (form == "kind" or s.color == groups[0]) and (form == "color" or s.kind == groups[-1])
        ]
        return candidates[0] if len(candidates) == 1 else None
    return None


def _unique_extreme(shapes: Sequence[Shape], color: str, kind: str, key: Callable[[Shape], float],
                    highest: bool) -> int | None:
    candidates = [i for i, s in enumerate(shapes) if s.color == color and s.kind == kind]
    if not candidates:
        return None
    values = [key(shapes[i]) for i in candidates]
    best = max(values) if highest else min(values)
    winners = [i for i, value in zip(candidates, values, strict=True) if value == best]
    return winners[0] if len(winners) == 1 else None


def _compose_scene(rng: np.random.Generator, width: int, height: int) -> tuple[list[Shape], int, str] | None:
    """Target, its look-alikes (for largest/smallest/left/right) and distractors, placed without overlap."""
    short_side = min(width, height)
    low, high = (max(3, round(f * short_side)) for f in SIZE_RANGE)
    mode = str(rng.choice(EXPRESSION_MODES))
    kind = str(rng.choice(SHAPE_KINDS))
    color = str(rng.choice(list(COLORS)))

    if mode == "largest":
        target_size = int(rng.integers(math.ceil(low * SIZE_RATIO), high + 1))
        twin_sizes = [int(rng.integers(low, math.floor(target_size / SIZE_RATIO) + 1))
                      for _ in range(int(rng.integers(1, 3)))]
    elif mode == "smallest":
        target_size = int(rng.integers(low, math.floor(high / SIZE_RATIO) + 1))
        twin_sizes = [int(rng.integers(math.ceil(target_size * SIZE_RATIO), high + 1))
                      for _ in range(int(rng.integers(1, 3)))]
    else:
        target_size = int(rng.integers(low, high + 1))
        twin_sizes = [int(rng.integers(low, high + 1))] if mode in ("left", "right") else []

    placed: list[Shape] = []
    half = width / 2
    target_region = (0.0, half) if mode == "left" else (half, float(width)) if mode == "right" else (0.0, float(width))
    target = _place(rng, Shape(kind, color, (0, 0), target_size), placed, width=width, height=height,
                    x_region=target_region)
    if target is None:
        return None
    placed.append(target)
    twin_region = (half, float(width)) if mode == "left" else (0.0, half) if mode == "right" else (0.0, float(width))
    for twin_size in twin_sizes:
        twin = _place(rng, Shape(kind, color, (0, 0), twin_size), placed, width=width, height=height,
                      x_region=twin_region)
        if twin is None:
            return None
        placed.append(twin)
    for _ in range(int(rng.integers(1, 4))):
        other_kind, other_color = kind, color
        while (other_kind, other_color) == (kind, color):
            other_kind = str(rng.choice(SHAPE_KINDS))
            other_color = str(rng.choice(list(COLORS)))
        distractor = _place(rng, Shape(other_kind, other_color, (0, 0), int(rng.integers(low, high + 1))),
                            placed, width=width, height=height, x_region=(0.0, float(width)))
        if distractor is not None:  # a crowded scene simply gets fewer distractors
            placed.append(distractor)

    order = [int(i) for i in rng.permutation(len(placed))]
    shapes = [placed[i] for i in order]
    target_index = order.index(0)
    text = _expression(rng, shapes, target_index, mode)
    if resolve_expression(shapes, text) != target_index:
        return None
    return shapes, target_index, text


def _expression(rng: np.random.Generator, shapes: Sequence[Shape], target: int, mode: str) -> str:
    shape = shapes[target]
    if mode in ("largest", "smallest"):
        return f"the {mode} {shape.color} {shape.kind}"
    if mode in ("left", "right"):
        return f"the {shape.color} {shape.kind} on the {mode}"
    options = [f"the {shape.color} {shape.kind}"]
    if sum(s.kind == shape.kind for s in shapes) == 1:
        options.append(f"the {shape.kind}")
    if sum(s.color == shape.color for s in shapes) == 1:
        options.append(f"the {shape.color} shape")
    return str(options[int(rng.integers(len(options)))])


def _place(rng: np.random.Generator, shape: Shape, placed: Sequence[Shape], *, width: int, height: int,
           x_region: tuple[float, float], attempts: int = 200) -> Shape | None:
    """The shape at a random centre inside the image and x_region, clear of every placed shape."""
    margin = math.ceil(shape.reach) + PLACEMENT_GAP
    x_low, x_high = max(margin, math.ceil(x_region[0] + margin / 2)), min(width - 1 - margin, int(x_region[1] - 1))
    y_low, y_high = margin, height - 1 - margin
    if x_low > x_high or y_low > y_high:
        return None
    for _ in range(attempts):
        center = (int(rng.integers(x_low, x_high + 1)), int(rng.integers(y_low, y_high + 1)))
        if all(math.dist(center, other.center) >= shape.reach + other.reach + PLACEMENT_GAP for other in placed):
            return Shape(shape.kind, shape.color, center, shape.size)
    return None


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted linear gradient or a flat colour with Gaussian noise, so shapes are never on a blank canvas."""
    first = rng.uniform(70, 190, size=3)
    if rng.random() < 0.5:
        second = rng.uniform(70, 190, size=3)
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        image = first[None, None, :] * (1 - ramp[:, :, None]) + second[None, None, :] * ramp[:, :, None]
        noise_sigma = 4.0
    else:
        image = np.broadcast_to(first, (height, width, 3)).astype(np.float64)
        noise_sigma = float(rng.uniform(6, 18))
    image = image + rng.normal(0.0, noise_sigma, size=(height, width, 3))
    return np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))


SYNTHETIC_SOURCE = re.compile(r"synthetic(?::(\d+))?(?::(\d+))?(?::(\d+))?")
"""``synthetic[:COUNT[:SEED[:SIZE]]]``, e.g. ``synthetic:64:0:256``: a dataset source that is generated."""


def parse_synthetic_source(source: str) -> tuple[int, int, int] | None:
    """``synthetic[:COUNT[:SEED[:SIZE]]]`` → (count, seed, size); None for any other source."""
    match = SYNTHETIC_SOURCE.fullmatch(source.strip())
    if match is None:
        return None
    count, seed, size = match.groups()
    return int(count or 64), int(seed or 0), int(size or 256)


def synthetic_eval_dataset(count: int, seed: int = 0, size: int = 256) -> EvalDataset:
    """The synthetic scenes as an evaluation dataset (validation during training, demos); generated on demand."""
    from segzero_ros.data.dataset import EvalDataset, EvalSample

    def load(index: int) -> EvalSample:
        sample = generate_sample(seed, index, size)
        return EvalSample(id=sample.id, image=sample.image, mask=sample.mask, text=sample.text)

    ids = [f"synthetic-{seed}-{index:05d}" for index in range(count)]
    return EvalDataset(f"synthetic:{count}:{seed}:{size}", ids, load)
