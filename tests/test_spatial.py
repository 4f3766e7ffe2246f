"""3D from depth (segzero_ros.core.spatial) on hand-built scenes whose answers are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segzero_ros.core.spatial import (
    CameraIntrinsics,
    DepthError,
    StampedRing,
    locate,
    resize_mask,
)

K = CameraIntrinsics(fx=500.0, fy=500.0, cx=319.5, cy=239.5)
H, W = 480, 640
ROWS, COLS = slice(100, 200), slice(200, 350)  # a 150 × 100 pixel rectangle
MM = 1e-3


def rectangle_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[ROWS, COLS] = True
    return mask


def plane(z_m: float, dtype=np.uint16) -> np.ndarray:
    """A fronto-parallel wall at z_m everywhere (mm for uint16, m for float)."""
    return np.full((H, W), round(z_m * 1000) if dtype == np.uint16 else z_m, dtype=dtype)


def test_fronto_parallel_plane_centroid_and_extent_by_hand():
    found = locate(rectangle_mask(), plane(1.5), K)
    # Pixel centres u = 200…349, v = 100…199 at z = 1.5 m: x = (u − 319.5)·1.5/500, y = (v − 239.5)·1.5/500.
    assert found.centroid == pytest.approx(((274.5 - 319.5) * 0.003, (149.5 - 239.5) * 0.003, 1.5), abs=MM)
    assert found.size == pytest.approx((149 * 0.003, 99 * 0.003, 0.0), abs=MM)
    assert (found.n_points, found.mask_pixels, found.valid_fraction) == (15_000, 15_000, 1.0)
    assert found.points.dtype == np.float32 and found.points.shape == (15_000, 3)


def test_float_metres_and_uint16_millimetres_agree():
    as_uint16 = locate(rectangle_mask(), plane(0.8), K)
    as_float = locate(rectangle_mask(), plane(0.8, np.float32), K)
    assert as_uint16.centroid == pytest.approx(as_float.centroid, abs=1e-6)
    scaled = locate(rectangle_mask(), plane(0.8) // 10, K, depth_scale=0.01)  # a sensor in centimetres
    assert scaled.centroid == pytest.approx(as_float.centroid, abs=MM)


def test_tilted_plane():
    cols = np.arange(W, dtype=np.float64)
    z = np.broadcast_to(1.0 + 0.002 * (cols - 200), (H, W)).astype(np.float32)  # 1.0 m … 1.298 m over the mask
    found = locate(rectangle_mask(), z, K)
    u, v = np.meshgrid(np.arange(200, 350), np.arange(100, 200))
    depth = 1.0 + 0.002 * (u - 200)
    x, y = (u - 319.5) * depth / 500, (v - 239.5) * depth / 500
    assert found.n_points == 15_000  # a slanted surface is not an outlier
    assert found.centroid == pytest.approx((x.mean(), y.mean(), depth.mean()), abs=MM)
    assert found.size == pytest.approx((x.max() - x.min(), y.max() - y.min(), 0.298), abs=MM)


def test_a_mask_spilling_ten_percent_onto_the_far_background_is_ignored():
    depth = plane(3.0)
    depth[ROWS, COLS] = 1000  # the object at 1 m in front of a wall at 3 m
    mask = rectangle_mask()
    mask[ROWS, 350:365] = True  # 15 more columns: 1,500 background pixels (10 %)
    clean = locate(rectangle_mask(), depth, K)
    spilled = locate(mask, depth, K)
    assert spilled.n_points == 15_000 and spilled.mask_pixels == 16_500
    assert spilled.centroid == pytest.approx(clean.centroid, abs=MM)
    assert spilled.size == pytest.approx(clean.size, abs=MM)


def test_flying_pixels_between_object_and_background_are_dropped():
    depth = plane(3.0)
    depth[ROWS, COLS] = 1000
    depth[ROWS, 349] = np.linspace(1100, 2900, 100).astype(np.uint16)  # an edge smeared towards the wall
    found = locate(rectangle_mask(), depth, K)
    assert found.n_points == 14_900
    assert found.size[2] == pytest.approx(0.0, abs=MM)


def test_five_percent_holes_and_invalid_floats():
    rng = np.random.default_rng(3)
    depth = plane(1.2, np.float32)
    holes = rng.random((H, W)) < 0.05
    depth[holes & rectangle_mask()] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0], size=int(
        (holes & rectangle_mask()).sum()))
    found = locate(rectangle_mask(), depth, K)
    expected = 15_000 - int((holes & rectangle_mask()).sum())
    assert found.n_points == expected
    assert found.valid_fraction == pytest.approx(expected / 15_000)
    assert found.centroid[2] == pytest.approx(1.2, abs=MM)
    assert np.isfinite(found.points).all()


def test_uint16_extremes():
    nearest = locate(rectangle_mask(), np.full((H, W), 1, np.uint16), K)  # 1 mm
    assert nearest.centroid[2] == pytest.approx(0.001, abs=1e-6)
    farthest = locate(rectangle_mask(), np.full((H, W), 65535, np.uint16), K)  # 65.535 m
    assert farthest.centroid[2] == pytest.approx(65.535, abs=MM)
    depth = plane(1.0)
    depth[150, 200:210] = 65535  # a few saturated readings on the object
    assert locate(rectangle_mask(), depth, K).n_points == 14_990


@pytest.mark.parametrize(("mask", "depth", "reason"), [
    (np.zeros((H, W), bool), plane(1.0), "the mask is empty"),
    (rectangle_mask(), np.zeros((H, W), np.uint16), "only 0 of the mask's 15000 pixels have a depth reading"),
    (rectangle_mask(), np.full((H, W), np.nan, np.float32), "only 0 of the mask's 15000 pixels"),
    (rectangle_mask(), np.zeros((240, 320), np.uint16), "differ in size"),
    (rectangle_mask(), np.zeros((H, W), np.int32), "depth must be uint16"),
    (rectangle_mask()[None], plane(1.0), "must be 2-D"),
])
def test_unusable_inputs_raise_depth_error_with_the_reason(mask, depth, reason):
    with pytest.raises(DepthError, match=reason):
        locate(mask, depth, K)


def test_too_few_points_is_configurable():
    mask = np.zeros((H, W), bool)
    mask[10, 10:15] = True
    with pytest.raises(DepthError, match="at least 20 needed"):
        locate(mask, plane(1.0), K)
    assert locate(mask, plane(1.0), K, min_points=5).n_points == 5


def test_intrinsics_are_checked_and_read_from_k():
    assert CameraIntrinsics.from_k([500, 0, 319.5, 0, 510, 239.5, 0, 0, 1]) == CameraIntrinsics(500, 510, 319.5, 239.5)
    for bad in ([0, 0, 0, 0, 0, 0, 0, 0, 0], [500, 0, math.nan, 0, 500, 1, 0, 0, 1], [-1, 0, 1, 0, 1, 1, 0, 0, 1]):
        with pytest.raises(DepthError):
            CameraIntrinsics.from_k(bad)
    with pytest.raises(DepthError, match="9 values"):
        CameraIntrinsics.from_k([1, 2, 3])
    assert issubclass(DepthError, ValueError)


def test_scaled_intrinsics_place_the_same_point():
    half = K.scaled(0.5, 0.5)
    full = locate(rectangle_mask(), plane(2.0), K)
    small_mask = resize_mask(rectangle_mask(), (H // 2, W // 2))
    small = locate(small_mask, np.full((H // 2, W // 2), 2000, np.uint16), half)
    assert small.centroid == pytest.approx(full.centroid, abs=0.003)  # within one half-resolution pixel


def test_resize_mask_nearest_and_aspect_check():
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True
    doubled = resize_mask(mask, (8, 12))
    assert doubled[2:4, 4:6].all() and doubled.sum() == 4
    assert resize_mask(mask, (4, 6)) is mask
    with pytest.raises(DepthError, match="aspect ratio"):
        resize_mask(mask, (4, 4))


def test_oriented_box_of_a_rotated_slab():
    rng = np.random.default_rng(0)
    local = rng.uniform([-0.2, -0.05, -0.01], [0.2, 0.05, 0.01], size=(20_000, 3))
    angle = math.radians(30)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    points = (local @ rotation.T + [0.1, 0.2, 1.0]).astype(np.float32)
    from segzero_ros.core.spatial import Object3D

    obj = Object3D(centroid=(0.1, 0.2, 1.0), size=(0, 0, 0), points=points, mask_pixels=len(points), valid_fraction=1)
    box = obj.oriented_box()
    assert box.size == pytest.approx((0.4, 0.1, 0.02), abs=0.005)
    assert box.center == pytest.approx((0.1, 0.2, 1.0), abs=0.005)
    assert abs(np.dot(box.axes[0], rotation[:, 0])) == pytest.approx(1.0, abs=1e-3)
    x, y, z, w = box.quaternion()
    q_rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    assert np.allclose(q_rotation, np.asarray(box.axes).T, atol=1e-6)
    assert len(obj.cloud(max_points=1000)) <= 1000


def test_stamped_ring_pairs_the_nearest_stamp_within_the_skew():
    ring = StampedRing(capacity=3)
    for stamp in (1.00, 1.03, 1.07, 1.10):
        ring.add(stamp, f"depth@{stamp}")
    assert ring.nearest(1.06, 0.02) == ("depth@1.07", pytest.approx(0.01))
    assert ring.nearest(1.00, 0.02) is None  # 1.00 fell out of the ring; 1.03 is 0.03 away
    assert ring.nearest(1.2, 0.05) is None


masks = hnp.arrays(np.bool_, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24))


@settings(max_examples=300, deadline=None)
@given(mask=masks, data=st.data())
def test_any_arrays_give_an_object_or_a_depth_error(mask, data):
    dtype = data.draw(st.sampled_from([np.uint16, np.float32, np.float64]))
    same = data.draw(st.booleans())
    shape = mask.shape if same else data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24))
    depth = data.draw(hnp.arrays(dtype, shape))
    fx = data.draw(st.floats(1.0, 2000.0))
    try:
        found = locate(mask, depth, CameraIntrinsics(fx, fx, 10.0, 10.0), min_points=1)
    except DepthError:
        return
    assert found.n_points >= 1 and np.isfinite(found.points).all()
    assert all(math.isfinite(v) for v in (*found.centroid, *found.size))
