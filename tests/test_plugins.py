"""A backend added from OUTSIDE the package, the way an installed plug-in adds one: a module and an entry point
in the `segzero_ros.backends` group on PYTHONPATH, no file of segzero_ros edited. Its own option must appear
as a ROS parameter of the node, as a `segzero infer` flag, and it must build as a segmenter and a tracker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from segzero_ros.backends import register_segmenter
from segzero_ros.config import SegmenterConfig
from segzero_ros.options import option
from segzero_ros.segmentation.base import SegmentOutput
from segzero_ros.tracking.base import TrackedMask


@dataclass(frozen=True)
class InsetConfig(SegmenterConfig):
    backend: str = option("inset", "Segmenter backend.")
    inset: int = option(0, "Pixels the box mask is shrunk by on each side.", minimum=0, maximum=100)


def _box_mask(shape, box, inset):
    mask = np.zeros(shape, dtype=bool)
    mask[box.y1 + inset:box.y2 + 1 - inset, box.x1 + inset:box.x2 + 1 - inset] = True
    return mask


class InsetSegmenter:
    name = "inset"

    def __init__(self, config):
        self.inset, self.shape = config.inset, None

    def set_image(self, image):
        self.shape = image.shape[:2]

    def segment(self, prompt):
        return SegmentOutput(_box_mask(self.shape, prompt.box, self.inset), 1.0)

    def close(self):
        pass


class InsetTracker:
    """Follows nothing: the started box on every frame (enough to show the registration reaches trackers)."""

    name = "inset-tracker"

    def __init__(self, config, **options):
        self.inset, self.boxes, self.frames = config.inset, [], 0

    def start_objects(self, image, prompts):
        self.boxes, self.frames = [prompt.box for prompt in prompts], 0
        return self.track_objects(image, advance=False)

    def track_objects(self, image, advance=True):
        self.frames += int(advance)
        return [TrackedMask(_box_mask(image.shape[:2], box, self.inset), 1.0, True, self.frames) for box in self.boxes]

    def start(self, image, prompt):
        return self.start_objects(image, [prompt])[0]

    def track(self, image):
        return self.track_objects(image)[0]

    def reset(self):
        self.boxes = []

    def close(self):
        pass


def register():
    register_segmenter(None, InsetSegmenter, config=InsetConfig, tracker=InsetTracker)


def broken():
    raise RuntimeError("this plug-in is broken")
'''

CHECKS = '''
import json
import numpy as np
from segzero_ros.backends import build_segmenter, build_tracker
from segzero_ros.config import SegmenterConfig
from segzero_ros.core.geometry import Box, ObjectPrompt
from segzero_ros.ros.params import parameters_by_name, settings_from_parameters

parameter = parameters_by_name()["segmenter.inset"]
settings = settings_from_parameters({"segmenter.backend": "inset", "segmenter.inset": 2})
segmenter = build_segmenter(SegmenterConfig(backend="inset"))
tracker = build_tracker(settings.pipeline.segmenter)
tracked = tracker.start(np.zeros((20, 20, 3), np.uint8), ObjectPrompt(Box(2, 2, 11, 11)))
print(json.dumps({"description": parameter.description, "readers": list(parameter.readers),
                  "config": type(settings.pipeline.segmenter).__name__, "inset": settings.pipeline.segmenter.inset,
                  "segmenter": segmenter.name, "tracker": tracker.name, "tracked_pixels": int(tracked.mask.sum())}))
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    (root / "segzero_inset_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = root / "segzero_inset_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segzero-inset-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[segzero_ros.backends]\ninset = segzero_inset_plugin:register\n"
                                           "broken = segzero_inset_plugin:broken\n",
                                           encoding="utf-8")
    return root


def _run(plugin_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
                          check=False)


def test_a_plugin_backend_is_a_node_parameter_a_segmenter_and_a_tracker(plugin_path):
    completed = _run(plugin_path, "-c", CHECKS)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found["description"] == "Pixels the box mask is shrunk by on each side. Read by the inset backend."
    assert found["readers"] == ["inset"]
    assert (found["config"], found["inset"]) == ("InsetConfig", 2)
    assert (found["segmenter"], found["tracker"]) == ("inset", "inset-tracker")
    assert found["tracked_pixels"] == 6 * 6  # the 10×10 box shrunk by 2 on each side
    # A broken plug-in is named in a warning and skipped; the others still register.
    assert "plug-in 'broken' (segzero_inset_plugin:broken) failed to register: RuntimeError" in completed.stderr


def test_a_plugin_option_is_a_cli_flag_and_reaches_the_segmenter(plugin_path, tmp_path):
    helped = _run(plugin_path, "-m", "segzero_ros.cli", "infer", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--segmenter.inset INT" in helped.stdout and "inset" in helped.stdout.split("--segmenter.backend")[1]

    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(image)
    answers = tmp_path / "answers.json"  # the box (10..29, 20..39) in the 840 frame's pixels of a 120×100 image
    answers.write_text(json.dumps({"*": "<think>t</think><answer>{\"bbox\": [70, 168, 203, 327], "
                                        "\"points_1\": [140, 250], \"points_2\": [150, 260]}</answer>"}))
    completed = _run(plugin_path, "-m", "segzero_ros.cli", "infer", "--image", str(image), "--command", "the box",
                     "--reasoner-backend", "scripted", "--reasoner", str(answers), "--segmenter", "inset",
                     "--segmenter.inset", "3", "--out", str(tmp_path / "out"))
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout[completed.stdout.index("{"):])
    x1, y1, x2, y2 = result["box"]
    assert result["mask_pixels"] == (x2 - x1 + 1 - 6) * (y2 - y1 + 1 - 6)
    assert result["segmenter"] == "inset"
