"""What MoveIt's planning scene should hold for the commanded objects, as commands succeed and tracking moves,
loses or drops them: pure state, no ROS (the node turns each `SceneChange` into a moveit_msgs/CollisionObject).

One collision object per object of a command's answer, id `segzero/<command_id>/<index>`: ADD with its box
when it is first placed in 3D (on the command's frame, or the first tracked frame that has depth for it), MOVE
(pose only: MoveIt keeps the shape it was added with) on every later tracked frame that places it, REMOVE when
the track stops or is lost, a new command replaces it, or the node deactivates. The box is the oriented box of
the object's visible points, grown by `padding_m` on every side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from segzero_ros.core.spatial import OrientedBox

ID_PREFIX = "segzero"


class SceneOperation(Enum):
    """moveit_msgs/CollisionObject's operations this node uses."""

    ADD = "add"
    MOVE = "move"
    REMOVE = "remove"


@dataclass(frozen=True)
class SceneBox:
    """A box collision object's pose and dimensions (metres, the depth camera's frame)."""

    center: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    """(x, y, z, w) of the box's axes."""
    size: tuple[float, float, float]

    @classmethod
    def around(cls, box: OrientedBox, padding_m: float) -> SceneBox:
        """`box` grown by padding_m on every side."""
        size = (box.size[0] + 2 * padding_m, box.size[1] + 2 * padding_m, box.size[2] + 2 * padding_m)
        return cls(box.center, box.quaternion(), size)


@dataclass(frozen=True)
class SceneChange:
    """One collision-object message to publish: REMOVE carries no box; MOVE's size is the ADDed one's."""

    operation: SceneOperation
    object_id: str
    frame_id: str
    box: SceneBox | None = None


def object_id(command_id: str, index: int) -> str:
    return f"{ID_PREFIX}/{command_id}/{index}"


@dataclass
class _Placed:
    frame_id: str
    size: tuple[float, float, float]


class PlanningScene:
    """The collision objects this node has put into the planning scene (not thread-safe: one caller at a time)."""

    def __init__(self, padding_m: float = 0.01) -> None:
        self.padding_m = padding_m
        self._command_id = ""
        self._placed: dict[str, _Placed] = {}

    @property
    def object_ids(self) -> tuple[str, ...]:
        """Ids currently in the scene (ADDed and not yet REMOVEd), in order."""
        return tuple(self._placed)

    @property
    def command_id(self) -> str:
        return self._command_id

    def command(self, command_id: str, boxes: Sequence[OrientedBox | None], frame_id: str) -> list[SceneChange]:
        """A command succeeded with these objects (None: not placed in 3D on its frame): the previous command's
        objects go, each placed object of this one is ADDed."""
        changes = self.clear()
        self._command_id = command_id
        return changes + self.place(command_id, boxes, frame_id)

    def place(self, command_id: str, boxes: Sequence[OrientedBox | None], frame_id: str) -> list[SceneChange]:
        """A frame placed the objects of `command_id` (None: absent or no depth on this frame, left as they
        were): ADD for objects not yet in the scene, MOVE for the others. A stale command's frames (the
        track of a replaced command finishing its last frame) change nothing."""
        if command_id != self._command_id:
            return []
        changes = []
        for index, box in enumerate(boxes):
            if box is None:
                continue
            name = object_id(command_id, index)
            scene_box = SceneBox.around(box, self.padding_m)
            placed = self._placed.get(name)
            if placed is None or placed.frame_id != frame_id:
                self._placed[name] = _Placed(frame_id, scene_box.size)
                changes.append(SceneChange(SceneOperation.ADD, name, frame_id, scene_box))
            else:
                moved = SceneBox(scene_box.center, scene_box.orientation, placed.size)
                changes.append(SceneChange(SceneOperation.MOVE, name, frame_id, moved))
        return changes

    def clear(self, command_id: str | None = None) -> list[SceneChange]:
        """REMOVE every object (of `command_id` only, when given: a stop or loss of that track)."""
        if command_id is not None and command_id != self._command_id:
            return []
        changes = [SceneChange(SceneOperation.REMOVE, name, placed.frame_id) for name, placed in self._placed.items()]
        self._placed.clear()
        return changes
