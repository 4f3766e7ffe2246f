"""The target in 3D: a 2D mask + an aligned depth image + pinhole intrinsics → points, centroid, extent.

Pure numpy. Coordinates are the camera's optical frame (REP 103): x right, y down, z forward, metres.

Depth (REP 118): `uint16` is 16UC1 in millimetres (`depth_scale` 0.001 m per unit), 0 = no reading;
floating point is 32FC1 in metres (`depth_scale` 1.0), NaN, ±inf, 0, negatives and values beyond
MAX_DEPTH_M = no reading.

Outlier rule (real masks spill over object borders onto the background; depth has holes and "flying pixels"
between a foreground edge and what lies behind it):

1. the dominant surface is the median depth of the mask's valid pixels (spill is a minority by construction:
   SAM2's mask is mostly object);
2. depth inliers lie within ``max(DEPTH_MAD_FACTOR × 1.4826 × MAD, DEPTH_BAND_FLOOR_M + DEPTH_BAND_RELATIVE × z)``
   of it (MAD = median absolute deviation; 1.4826 × MAD estimates σ for Gaussian noise; the floor keeps a flat
   surface with MAD ≈ 0 from losing its sensor noise);
3. the same rule in x and y (the floor without the depth-relative part) drops lateral stragglers;
   medians and MADs are estimated on an even stride of at most ROBUST_SAMPLE points;
4. centroid = mean of the inliers, size = max − min per axis (pixel centres back-projected: a fronto-parallel
   rectangle of N pixels at depth z spans (N − 1)·z/f).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MAD_TO_SIGMA = 1.4826
DEPTH_MAD_FACTOR = 3.0
"""Inliers lie within 3 σ (robustly estimated) of the dominant surface."""
DEPTH_BAND_FLOOR_M = 0.01
"""Never narrower than ±1 cm: RGB-D sensors are noisy by a few mm even on a flat surface."""
DEPTH_BAND_RELATIVE = 0.01
"""…plus 1 % of the depth: stereo and ToF noise grows with distance."""
LATERAL_MAD_FACTOR = 3.0
MAX_DEPTH_M = 1000.0
"""Float readings beyond this are garbage, not depth (no RGB-D sensor reaches a kilometre): no reading."""
ROBUST_SAMPLE = 8192
"""Medians and MADs are estimated on an even stride of at most this many points: a fraction of a millimetre
away from the exact ones on real objects, and 6× cheaper on 50,000."""
DEFAULT_MIN_POINTS = 20
"""Fewer inliers than this are no object worth a planner's trust: DepthError."""
DEFAULT_MAX_CLOUD_POINTS = 20_000
"""`Object3D.cloud()` keeps at most this many points (evenly strided) for publishing."""


class DepthError(ValueError):
    """The mask cannot be placed in 3D; the message says why (shown to planners as depth_error)."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (sensor_msgs/CameraInfo's K; the depth image must be rectified)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise DepthError(f"camera intrinsics must be finite numbers, got fx={self.fx}, fy={self.fy}, "
                             f"cx={self.cx}, cy={self.cy}")
        if self.fx <= 0 or self.fy <= 0:
            raise DepthError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy} "
                             "(an uncalibrated camera publishes K = 0)")

    @classmethod
    def from_k(cls, k: Sequence[float]) -> CameraIntrinsics:
        """From a row-major 3×3 K, as sensor_msgs/CameraInfo.k carries it."""
        values = [float(v) for v in k]
        if len(values) != 9:
            raise DepthError(f"K must have 9 values (row-major 3×3), got {len(values)}")
        return cls(fx=values[0], fy=values[4], cx=values[2], cy=values[5])

    def scaled(self, sx: float, sy: float) -> CameraIntrinsics:
        """The intrinsics of the same camera imaged at sx × the width and sy × the height."""
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)


@dataclass(frozen=True)
class OrientedBox:
    """Principal-axis box of the inliers: `axes` rows are unit vectors (largest spread first)."""

    center: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]
    size: tuple[float, float, float]

    def quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of the rotation whose columns are the axes (right-handed)."""
        return _quaternion(np.asarray(self.axes, dtype=np.float64).T)


@dataclass(frozen=True)
class Object3D:
    centroid: tuple[float, float, float]
    """Mean of the inlier points (m, optical frame)."""
    size: tuple[float, float, float]
    """Axis-aligned extent of the inliers: (dx, dy, dz) in metres."""
    points: np.ndarray = field(repr=False)
    """N×3 float32 inlier points."""
    mask_pixels: int
    valid_fraction: float
    """Share of the mask's pixels that had a depth reading."""

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    def cloud(self, max_points: int = DEFAULT_MAX_CLOUD_POINTS) -> np.ndarray:
        """The inliers, evenly strided down to at most `max_points` (for big objects on the wire)."""
        if self.n_points <= max_points:
            return self.points
        step = math.ceil(self.n_points / max_points)
        return self.points[::step]

    def oriented_box(self) -> OrientedBox:
        """PCA box: centre, axes and extent along the inliers' principal directions. The axes come from the
        covariance of an even stride of at most ROBUST_SAMPLE points (as the outlier rule's estimates); the
        extent covers every point. ~1 ms for 50,000 points, so every tracked frame can afford it."""
        points = self.points
        step = max(1, math.ceil(len(points) / ROBUST_SAMPLE))
        sample = points[::step].astype(np.float64)
        mean = sample.mean(axis=0)
        centred = sample - mean
        _, vectors = np.linalg.eigh(centred.T @ centred / max(1, len(sample) - 1))
        axes = vectors[:, ::-1].T  # largest variance first
        if np.linalg.det(axes) < 0:
            axes[2] = -axes[2]
        columns = [np.ascontiguousarray(points[:, index]) for index in range(3)]
        low, high = np.empty(3), np.empty(3)
        for index, axis in enumerate(axes.astype(np.float32)):  # per axis on contiguous float32 vectors: reducing
            along = columns[0] * axis[0]                        # an N×3 array's columns is ~30× slower
            along += columns[1] * axis[1]
            along += columns[2] * axis[2]
            low[index], high[index] = float(along.min()), float(along.max())
        low, high = low - mean @ axes.T, high - mean @ axes.T
        center = mean + ((low + high) / 2) @ axes
        return OrientedBox(
            center=_triple(center),
            axes=tuple(_triple(axis) for axis in axes),
            size=_triple(high - low),
        )


def metres(depth: np.ndarray, depth_scale: float | None = None) -> np.ndarray:
    """Depth in metres as float32, NaN where there is no reading."""
    if depth.dtype == np.uint16:
        scale = 0.001 if depth_scale is None else depth_scale
        z: np.ndarray = depth.astype(np.float32) * np.float32(scale)
        z[depth == 0] = np.nan
        return z
    if np.issubdtype(depth.dtype, np.floating):
        scale = 1.0 if depth_scale is None else depth_scale
        with np.errstate(over="ignore", invalid="ignore"):  # absurd values become inf here, then "no reading"
            metric: np.ndarray = depth.astype(np.float32) * np.float32(scale)
            metric[~np.isfinite(metric) | (metric <= 0) | (metric > MAX_DEPTH_M)] = np.nan
        return metric
    raise DepthError(f"depth must be uint16 (16UC1, mm) or float (32FC1, m), got {depth.dtype}")


def locate(mask: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics, depth_scale: float | None = None,
           *, min_points: int = DEFAULT_MIN_POINTS) -> Object3D:
    """The masked object's 3D points, centroid and extent (see the module docstring for the rule)."""
    if not isinstance(mask, np.ndarray) or not isinstance(depth, np.ndarray):
        raise DepthError("mask and depth must be numpy arrays")
    if mask.ndim != 2 or depth.ndim != 2:
        raise DepthError(f"mask and depth must be 2-D, got shapes {mask.shape} and {depth.shape}")
    if mask.shape != depth.shape:
        raise DepthError(f"mask {mask.shape[1]}×{mask.shape[0]} and depth {depth.shape[1]}×{depth.shape[0]} "
                         "differ in size: the depth image must be registered to the colour camera")
    if depth_scale is not None and not (math.isfinite(depth_scale) and depth_scale > 0):
        raise DepthError(f"depth_scale must be a positive number, got {depth_scale}")
    index = np.flatnonzero(mask)
    mask_pixels = index.size
    if index.size == 0:
        raise DepthError("the mask is empty")
    z = metres(depth.ravel()[index], depth_scale)
    valid = ~np.isnan(z)
    valid_count = int(np.count_nonzero(valid))
    if valid_count < min_points:
        raise DepthError(f"only {valid_count} of the mask's {index.size} pixels have a depth reading "
                         f"(at least {min_points} needed)")
    index, z = index[valid], z[valid]
    surface = _median(z)
    keep = _within(z, surface, DEPTH_MAD_FACTOR, DEPTH_BAND_FLOOR_M + DEPTH_BAND_RELATIVE * surface)
    rows, cols = np.divmod(index[keep], mask.shape[1])
    z = z[keep]
    x = (cols.astype(np.float32) - np.float32(intrinsics.cx)) * z * np.float32(1.0 / intrinsics.fx)
    y = (rows.astype(np.float32) - np.float32(intrinsics.cy)) * z * np.float32(1.0 / intrinsics.fy)
    lateral = (_within(x, _median(x), LATERAL_MAD_FACTOR, DEPTH_BAND_FLOOR_M)
               & _within(y, _median(y), LATERAL_MAD_FACTOR, DEPTH_BAND_FLOOR_M))
    axes = (x[lateral], y[lateral], z[lateral])
    if axes[0].size < min_points:
        raise DepthError(f"only {axes[0].size} points remain on the dominant surface (at least {min_points} "
                         "needed)")
    # Per axis on contiguous vectors: reductions over an N×3 array's columns are several times slower.
    centroid = tuple(float(np.mean(a, dtype=np.float64)) for a in axes)
    size = tuple(float(a.max()) - float(a.min()) for a in axes)
    return Object3D(
        centroid=(centroid[0], centroid[1], centroid[2]),
        size=(size[0], size[1], size[2]),
        points=np.stack(axes, axis=1),
        mask_pixels=int(mask_pixels),
        valid_fraction=valid_count / float(mask_pixels),
    )


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to `shape` (H, W) of a depth image with the same aspect ratio;
    DepthError otherwise (a different field of view cannot be fixed by resizing)."""
    height, width = mask.shape
    target_h, target_w = shape
    if target_h <= 0 or target_w <= 0:
        raise DepthError(f"depth image is empty ({target_w}×{target_h})")
    if abs(width * target_h - height * target_w) > max(width, height, target_w, target_h):
        raise DepthError(f"depth {target_w}×{target_h} and colour {width}×{height} differ in aspect ratio: "
                         "publish depth registered to the colour camera")
    if (target_h, target_w) == (height, width):
        return mask
    rows = np.minimum(((np.arange(target_h) + 0.5) * height / target_h).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(target_w) + 0.5) * width / target_w).astype(np.intp), width - 1)
    return np.ascontiguousarray(mask[rows[:, None], cols[None, :]])


@dataclass
class StampedRing:
    """The last few items by stamp (seconds), for pairing depth with colour by the nearest stamp."""

    capacity: int = 30
    _items: list[tuple[float, object]] = field(default_factory=list)

    def add(self, stamp: float, item: object) -> None:
        self._items.append((stamp, item))
        if len(self._items) > self.capacity:
            del self._items[0]

    def nearest(self, stamp: float, max_skew_s: float) -> tuple[object, float] | None:
        """(item, |Δt|) of the item stamped nearest to `stamp`, if within max_skew_s."""
        best: tuple[object, float] | None = None
        for item_stamp, item in self._items:
            skew = abs(item_stamp - stamp)
            if skew <= max_skew_s and (best is None or skew < best[1]):
                best = (item, skew)
        return best

    def clear(self) -> None:
        self._items.clear()


def _median(values: np.ndarray) -> float:
    """The median, estimated on an even stride of at most ROBUST_SAMPLE values (exact below that)."""
    step = max(1, values.size // ROBUST_SAMPLE)
    return float(np.median(values[::step]))


def _within(values: np.ndarray, centre: float, factor: float, floor: float) -> np.ndarray:
    deviation = np.abs(values - np.float32(centre))
    band = max(factor * MAD_TO_SIGMA * _median(deviation), floor)
    return deviation <= band  # type: ignore[no-any-return]


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def _quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    m = rotation
    trace = float(m[0, 0] + m[1, 1] + m[2, 2])
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        return ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    index = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
    i, j, k = index, (index + 1) % 3, (index + 2) % 3
    s = 2.0 * math.sqrt(max(1e-12, 1.0 + m[i, i] - m[j, j] - m[k, k]))
    quaternion = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
    quaternion[i] = 0.25 * s
    quaternion[j] = (m[j, i] + m[i, j]) / s
    quaternion[k] = (m[k, i] + m[i, k]) / s
    return float(quaternion[0]), float(quaternion[1]), float(quaternion[2]), float(quaternion[3])
