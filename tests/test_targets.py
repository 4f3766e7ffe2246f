"""GT box and points from masks, checked against hand-computed cases and a brute-force oracle."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segzero_ros.core.geometry import Box, Point, mask_box
from segzero_ros.core.solution import parse_solution
from segzero_ros.training.targets import (
    EmptyMaskError,
    MaskTargets,
    frame_targets,
    mask_targets,
    representative_points,
    scale_to_frame,
    solution_for_mask,
)


def points(mask):
    first, second = representative_points(mask)
    return first.as_list(), second.as_list()


def test_rectangle():
    # 7×3 rectangle, x 1..7, y 2..4. Distance to background is 2 along the middle row for x 2..6 (rows 1 and 5
    # are background), 1 elsewhere: point 1 is the first of the tie, (2, 3). Distances from it to the 21 pixels
    # sort as 0, 1×4, √2×4, 2, √5×2, …: the median (11th) is √5. Farther than that: x ≥ 5 in the middle row
    # (DT 2, 2, 1) and x ≥ 5 in rows 2 and 4 (DT 1); the first DT-2 pixel in row-major order is (5, 3).
    mask = np.zeros((8, 10), bool)
    mask[2:5, 1:8] = True
    assert mask_box(mask) == Box(1, 2, 7, 4)
    assert points(mask) == ([2, 3], [5, 3])


def test_l_shape():
    # Vertical bar x 1..3, y 1..6 plus a foot x 4..6, y 4..6. The DT maximum 2 first occurs at (2, 2). Squared
    # distances from it to the 27 pixels have median 9 (the 14th), and among the 13 pixels farther than 3 only
    # (3,5), (4,5), (5,5) have DT 2 (the others touch background): row-major first is (3, 5).
    mask = np.zeros((8, 8), bool)
    mask[1:7, 1:4] = True
    mask[4:7, 4:7] = True
    assert mask_box(mask) == Box(1, 1, 6, 6)
    assert points(mask) == ([2, 2], [3, 5])


def test_two_blobs_put_one_point_in_each():
    # A 3×3 blob (x,y 1..3) and a 5×5 blob (x 6..10, y 2..6). Point 1 is the big blob's centre (8, 4), DT 3.
    # Of the 34 distances from it, the 17th and 18th are both √5 (still inside the big blob), so everything in
    # the small blob is "far"; its centre (2, 2) has DT 2, more than any far pixel of the big blob (DT 1).
    mask = np.zeros((9, 12), bool)
    mask[1:4, 1:4] = True
    mask[2:7, 6:11] = True
    assert mask_box(mask) == Box(1, 1, 10, 6)
    assert points(mask) == ([8, 4], [2, 2])


def test_ties_resolve_in_row_major_order():
    # 4×4 square x,y 2..5: the four inner pixels tie at DT 2, so point 1 is the first, (3, 3). The median
    # distance from it is √2; every farther pixel is on the border (DT 1), the first of them is (5, 2).
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    assert points(mask) == ([3, 3], [5, 2])


def test_single_pixel_falls_back_to_the_window_around_the_centroid():
    # One distance (0) and a median of 0: nothing is farther, so point 2 comes from the centroid window.
    mask = np.zeros((8, 10), bool)
    mask[3, 4] = True
    assert mask_box(mask) == Box(4, 3, 4, 3)
    assert points(mask) == ([4, 3], [4, 3])


def test_plus_sign_falls_back_too():
    # Centre DT √2 (nearest background diagonal), arms DT 1; distances 1,1,0,1,1 have median 1, none above it.
    mask = np.zeros((10, 10), bool)
    mask[5, 4:7] = True
    mask[4:7, 5] = True
    assert points(mask) == ([5, 5], [5, 5])


def test_mask_touching_the_border_does_not_treat_outside_as_background():
    # 5×5 block in the top-left corner of a 10×10 image: (0,0) is 5 px from the nearest background pixel.
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    first, _ = representative_points(mask)
    assert first == Point(0, 0)


def test_full_image_mask_points_at_the_middle():
    mask = np.ones((5, 5), bool)
    first, second = representative_points(mask)
    assert first == Point(2, 2)
    assert mask[second.y, second.x]


def test_empty_mask_is_an_error():
    with pytest.raises(EmptyMaskError):
        mask_targets(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="2-D"):
        mask_targets(np.zeros((4, 4, 3), bool))


def test_frame_mapping_rounds_half_up_like_the_reference():
    # 560 px wide → factor 1.5: x=3 → 4.5 → 5 (Python's round would give 4). 1680 px: the last pixel → 840.
    assert scale_to_frame(3, 840 / 560) == 5
    assert scale_to_frame(1679, 840 / 1680) == 840
    targets = MaskTargets(Box(3, 10, 559, 99), (Point(3, 10), Point(100, 50)))
    mapped = targets.to_frame((560, 100))
    # y factor 8.4: 10 → 84, 99 → 831.6 + 0.5 → 832, 50 → 420.
    assert mapped.box == Box(5, 84, 839, 832)
    assert mapped.points == (Point(5, 84), Point(150, 420))


def test_solution_string_round_trips_through_the_reward_parser():
    mask = np.zeros((100, 200), bool)
    mask[20:60, 50:150] = True  # x 50..149, y 20..59
    solution = solution_for_mask(mask)
    box, (p1, p2) = parse_solution(solution)
    # x factor 4.2, y factor 8.4: 50 → 210, 149 → 625.8 + .5 → 626, 20 → 168, 59 → 495.6 + .5 → 496.
    assert box == Box(210, 168, 626, 496)
    assert frame_targets(mask).points == (p1, p2)
    assert box.contains(p1) and box.contains(p2)


# --- brute-force oracle -------------------------------------------------------------------------------------


def brute_force_points(mask):
    """The reference algorithm written the slow, obvious way (O(pixels²) distance transform)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    by, bx = np.nonzero(~mask)
    dt = np.zeros(mask.shape)
    for y, x in zip(ys, xs, strict=True):
        dt[y, x] = np.sqrt(((by - y) ** 2 + (bx - x) ** 2).min())
    y1, x1 = np.unravel_index(int(np.argmax(dt)), dt.shape)
    distances = np.sqrt((ys - y1) ** 2 + (xs - x1) ** 2)
    far = distances > np.median(distances)
    if far.any():
        k = int(np.argmax(dt[ys[far], xs[far]]))
        y2, x2 = ys[far][k], xs[far][k]
    else:
        cy, cx = int(np.mean(ys)), int(np.mean(xs))
        top, left = max(0, cy - 10), max(0, cx - 10)
        window = dt[top:min(height, cy + 10), left:min(width, cx + 10)]
        wy, wx = np.unravel_index(int(np.argmax(window)), window.shape)
        y2, x2 = wy + top, wx + left
        if not mask[y2, x2]:
            k = int(np.argmin((xs - x2) ** 2 + (ys - y2) ** 2))
            y2, x2 = ys[k], xs[k]
    return [int(x1), int(y1)], [int(x2), int(y2)]


@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 14), st.integers(1, 14))))
def test_matches_brute_force_on_random_masks(mask):
    if not mask.any():
        with pytest.raises(EmptyMaskError):
            representative_points(mask)
        return
    if mask.all():
        return  # no background: a documented deviation, see test_full_image_mask_points_at_the_middle
    assert points(mask) == brute_force_points(mask)


def test_matches_brute_force_on_larger_blobs():
    import cv2

    rng = np.random.default_rng(7)
    for _ in range(6):
        canvas = np.zeros((40, 50), np.uint8)
        for _ in range(2):
            center = (int(rng.integers(0, 50)), int(rng.integers(0, 40)))
            axes = (int(rng.integers(2, 15)), int(rng.integers(2, 15)))
            cv2.ellipse(canvas, center, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        mask = canvas.astype(bool)
        assert points(mask) == brute_force_points(mask)
