"""core.planning_scene: which collision objects MoveIt should hold, by hand-computed cases."""

from __future__ import annotations

import pytest

from segzero_ros.core.planning_scene import PlanningScene, SceneBox, SceneOperation, object_id
from segzero_ros.core.spatial import OrientedBox

IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
ADD, MOVE, REMOVE = SceneOperation.ADD, SceneOperation.MOVE, SceneOperation.REMOVE


def box(x: float, size: tuple[float, float, float] = (0.10, 0.04, 0.02)) -> OrientedBox:
    return OrientedBox(center=(x, 0.0, 0.5), axes=IDENTITY, size=size)


def test_padding_grows_every_side_and_identity_axes_give_the_identity_quaternion():
    scene_box = SceneBox.around(box(0.1), padding_m=0.01)
    assert scene_box.size == pytest.approx((0.12, 0.06, 0.04))
    assert scene_box.center == (0.1, 0.0, 0.5)
    assert scene_box.orientation == pytest.approx((0.0, 0.0, 0.0, 1.0))


def test_a_quarter_turn_about_z_is_the_quaternion_of_45_degrees_half_angle():
    turned = OrientedBox(center=(0, 0, 1), axes=((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), size=(1, 1, 1))
    half = 0.5 ** 0.5  # rotation of 90° about z: (0, 0, sin 45°, cos 45°)
    assert SceneBox.around(turned, 0.0).orientation == pytest.approx((0.0, 0.0, half, half))


def test_a_command_adds_its_placed_objects_then_tracking_moves_them_keeping_their_size():
    scene = PlanningScene(padding_m=0.0)
    changes = scene.command("c1", [box(0.1), None], "camera")
    assert [(c.operation, c.object_id) for c in changes] == [(ADD, "segzero/c1/0")]
    assert object_id("c1", 1) == "segzero/c1/1"

    moved = scene.place("c1", [box(0.12, size=(0.2, 0.2, 0.2)), box(0.3)], "camera")
    assert [(c.operation, c.object_id) for c in moved] == [(MOVE, "segzero/c1/0"), (ADD, "segzero/c1/1")]
    assert moved[0].box is not None and moved[0].box.center == (0.12, 0.0, 0.5)
    assert moved[0].box.size == pytest.approx((0.10, 0.04, 0.02))  # MOVE is pose only: the ADDed size stays
    assert scene.object_ids == ("segzero/c1/0", "segzero/c1/1")


def test_a_new_command_removes_the_old_objects_and_stale_frames_change_nothing():
    scene = PlanningScene()
    scene.command("c1", [box(0.1), box(0.2)], "camera")
    changes = scene.command("c2", [box(0.3)], "camera")
    assert [(c.operation, c.object_id) for c in changes] == [
        (REMOVE, "segzero/c1/0"), (REMOVE, "segzero/c1/1"), (ADD, "segzero/c2/0")]
    assert all(c.box is None for c in changes if c.operation is REMOVE)
    assert scene.place("c1", [box(0.1)], "camera") == []   # the old track's last frame
    assert scene.clear("c1") == []                          # its stop: not the current command's objects
    assert scene.object_ids == ("segzero/c2/0",)


def test_stop_loss_or_deactivation_removes_everything_once():
    scene = PlanningScene()
    scene.command("c1", [box(0.1)], "camera")
    assert [(c.operation, c.object_id, c.frame_id) for c in scene.clear("c1")] == [(REMOVE, "segzero/c1/0", "camera")]
    assert scene.clear() == [] and scene.object_ids == ()
    assert [c.operation for c in scene.place("c1", [box(0.1)], "camera")] == [ADD]  # placed again after a loss


def test_a_new_depth_frame_id_re_adds_the_object_in_that_frame():
    scene = PlanningScene()
    scene.command("c1", [box(0.1)], "camera")
    changes = scene.place("c1", [box(0.1)], "other_camera")
    assert [(c.operation, c.frame_id) for c in changes] == [(ADD, "other_camera")]
