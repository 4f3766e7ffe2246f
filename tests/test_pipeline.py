"""The pipeline's orchestration and error boundary, with the model stages replaced by deterministic ones
(replayed outputs, box-fill masks) so each expectation can be computed by hand."""

import json

import numpy as np
import pytest

from segzero_ros.backends import build_pipeline, build_reasoner, build_segmenter
from segzero_ros.config import PipelineConfig, ReasonerConfig, SegmenterConfig
from segzero_ros.core.geometry import Box, Point
from segzero_ros.core.result import ErrorKind
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.scripted import ScriptedReasoner
from segzero_ros.segmentation.box import BoxSegmenter

ANSWER = '<think>left mug</think><answer>{"bbox": [84,84,420,630], "points_1": [200,300], "points_2": [250,400]}</answer>'


def image(width=1680, height=1260):
    return np.zeros((height, width, 3), dtype=np.uint8)


def test_successful_run_scales_box_and_fills_mask():
    pipeline = SegZeroPipeline(ScriptedReasoner({"*": ANSWER}), BoxSegmenter())
    result = pipeline.run(image(), "the mug")
    assert result.ok, result.error
    # x factor 1680/840 = 2, y factor 1260/840 = 1.5.
    assert result.box == Box(168, 126, 840, 945)
    assert result.points == (Point(400, 450), Point(500, 600))
    assert result.mask is not None and result.mask.shape == (1260, 1680)
    assert result.mask.sum() == (840 - 168 + 1) * (945 - 126 + 1)
    assert result.reasoning == "left mug"
    assert result.raw_output == ANSWER
    assert result.reasoner_name == "scripted" and result.segmenter_name == "box"
    assert result.timings.total_s >= result.timings.encode_s >= 0


def test_unparseable_output_is_an_error_result_not_an_exception():
    pipeline = SegZeroPipeline(ScriptedReasoner({"*": "<think>no idea</think><answer>none</answer>"}), BoxSegmenter())
    result = pipeline.run(image(), "the mug")
    assert not result.ok
    assert result.error_kind is ErrorKind.UNPARSEABLE_OUTPUT
    assert "unparseable" in (result.error or "")
    assert result.mask is None and result.reasoning == "no idea"


class ExplodingSegmenter(BoxSegmenter):
    def segment(self, prompt):
        raise MemoryError("simulated out of memory")


class ExplodingReasoner(ScriptedReasoner):
    def reason_batch(self, images, commands):
        raise RuntimeError("CUDA error: device-side assert")


def test_backend_failures_become_error_results_and_the_pipeline_recovers():
    failing = SegZeroPipeline(ScriptedReasoner({"*": ANSWER}), ExplodingSegmenter())
    result = failing.run(image(), "the mug")
    assert result.error_kind is ErrorKind.SEGMENTER_FAILED
    assert "MemoryError: simulated out of memory" in (result.error or "")
    assert result.box is not None  # the reasoning still reaches the caller

    reasoner_down = SegZeroPipeline(ExplodingReasoner({"*": ANSWER}), BoxSegmenter())
    results = reasoner_down.run_batch([image(), image()], ["a", "b"])
    assert [r.error_kind for r in results] == [ErrorKind.REASONER_FAILED] * 2


@pytest.mark.parametrize(
    ("bad_image", "command", "reason"),
    [
        (np.zeros((10, 10), np.uint8), "cup", "H×W×3"),
        (np.zeros((10, 10, 3), np.float32), "cup", "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "cup", "empty"),
        (np.zeros((10, 10, 3), np.uint8), "   ", "command is empty"),
    ],
)
def test_invalid_inputs_are_reported_without_running_models(bad_image, command, reason):
    pipeline = SegZeroPipeline(ExplodingReasoner({"*": ANSWER}), BoxSegmenter())
    result = pipeline.run(bad_image, command)
    assert result.error_kind is ErrorKind.INVALID_INPUT
    assert reason in (result.error or "")


def test_batch_keeps_order_and_mixes_valid_and_invalid():
    outputs = {"cup": ANSWER, "nothing": "I don't know"}
    pipeline = SegZeroPipeline(ScriptedReasoner(outputs), BoxSegmenter())
    results = pipeline.run_batch([image(840, 840), np.zeros((4, 4), np.uint8), image(420, 420)],
                                 ["cup", "cup", "nothing"])
    assert [r.command for r in results] == ["cup", "cup", "nothing"]
    assert results[0].ok and results[0].box == Box(84, 84, 420, 630)
    assert results[1].error_kind is ErrorKind.INVALID_INPUT
    assert results[2].error_kind is ErrorKind.UNPARSEABLE_OUTPUT


def test_result_to_dict_is_json_serialisable():
    result = SegZeroPipeline(ScriptedReasoner({"*": ANSWER}), BoxSegmenter()).run(image(), "the mug")
    decoded = json.loads(json.dumps(result.to_dict()))
    assert decoded["box"] == [168, 126, 840, 945]
    assert decoded["ok"] is True and decoded["error_kind"] is None


def test_backends_are_chosen_by_config(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"*": ANSWER}))
    config = PipelineConfig(ReasonerConfig(backend="scripted", model=str(outputs)), SegmenterConfig(backend="box"))
    pipeline = build_pipeline(config)
    assert isinstance(pipeline.reasoner, ScriptedReasoner)
    assert pipeline.run(image(), "mug").ok
    with pytest.raises(ValueError, match="unknown reasoner backend 'nope'"):
        build_reasoner(ReasonerConfig(backend="nope"))
    with pytest.raises(ValueError, match=r"available: .*box"):
        build_segmenter(SegmenterConfig(backend="nope"))


def test_close_releases_the_segmenter_even_when_the_reasoner_fails_to_close():
    class BrokenCloseReasoner(ScriptedReasoner):
        def close(self) -> None:
            raise RuntimeError("driver error while freeing the reasoner")

    class CountingSegmenter(BoxSegmenter):
        closed = 0

        def close(self) -> None:
            CountingSegmenter.closed += 1
            super().close()

    pipeline = SegZeroPipeline(BrokenCloseReasoner({"*": ANSWER}), CountingSegmenter())
    with pytest.raises(RuntimeError, match="driver error"):
        pipeline.close()
    assert CountingSegmenter.closed == 1
