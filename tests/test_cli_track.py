"""`segzero track`: reason on the first frame, track the answer through a folder of frames with the chosen
backend's tracker; the written masks equal the pipeline's first mask and the tracker run directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segzero_ros.cli import main
from tests.test_tracking import moving_disc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disc")
    for index, frame in enumerate(moving_disc(6)):
        Image.fromarray(frame).save(folder / f"{index:03d}.png")
    return folder


@pytest.mark.parametrize("segmenter", ["sam2", "edgetam"])
def test_track_writes_what_the_pipeline_and_the_tracker_give(video_folder, tmp_path, tiny_cache_root, segmenter):
    import cv2

    from segzero_ros.backends import build_pipeline, build_tracker
    from segzero_ros.tiny import tiny_pipeline_config

    out = tmp_path / "out"
    assert main(["track", "--tiny", "--segmenter", segmenter, "--source", str(video_folder), "--command",
                 "the red disc", "--out", str(out), "--no-progress"]) == 0
    written = [np.asarray(Image.open(out / "masks" / f"{index:05d}.png")) > 0 for index in range(6)]
    summary = json.loads((out / "track.json").read_text())
    assert [record["frame"] for record in summary["frames"]] == list(range(6))
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()

    frames = moving_disc(6)
    config = tiny_pipeline_config(tiny_cache_root, segmenter=segmenter)
    pipeline = build_pipeline(config)
    result = pipeline.run(frames[0], "the red disc")
    pipeline.close()
    assert summary["result"]["box"] == result.box.as_list()
    tracker = build_tracker(config.segmenter)
    try:
        expected = [tracker.start_objects(frames[0], [o.prompt for o in result.objects])[0].mask,
                    *(tracker.track(frame).mask for frame in frames[1:])]
    finally:
        tracker.close()
    for got, want in zip(written, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_missing_source_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["track", "--tiny", "--source", str(tmp_path / "nope"), "--command", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
