"""`segzero eval` end to end through `segzero_ros.cli.main`: exact scores from replayed answers and the
box-fill segmenter, resuming, shards and merging, comparing runs, and the tiny real models."""

import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from segzero_ros import backends
from segzero_ros.cli import main
from segzero_ros.cli.eval import process_device
from segzero_ros.config import ReasonerConfig
from segzero_ros.reasoning.base import ReasonerOutput
from segzero_ros.reasoning.scripted import ScriptedReasoner
from segzero_ros.registry import unregister

WIDTH, HEIGHT = 168, 84
"""Frame → image factors are 0.2 (x) and 0.1 (y), so the 840-frame answers below map to exact pixels."""


def answer(x1: int, y1: int, x2: int, y2: int) -> str:
    points = f'"points_1": [{x1 + 5},{y1 + 5}], "points_2": [{x1 + 10},{y1 + 5}]'
    return f'<think>looking</think><answer>{{"bbox": [{x1},{y1},{x2},{y2}], {points}}}</answer>'


EXACT = answer(100, 200, 295, 390)  # image box x 20..59, y 20..39: exactly the 40×20 GT rectangle
SHIFTED = answer(200, 200, 395, 390)  # x 40..79, y 20..39
DISJOINT = answer(500, 500, 595, 590)  # x 100..119, y 50..59: 200 px, away from the GT
COVERING = answer(0, 0, 95, 190)  # x 0..19, y 0..19: 400 px
UNPARSEABLE = "<think>no idea</think><answer>nothing here</answer>"

# Run A's answers per sample, and (I, U) worked out by hand:
#   s0 EXACT      I 800, U 800            IoU 1
#   s1 SHIFTED    I 20·20 = 400, U 1200   IoU 1/3
#   s2 DISJOINT   I 0, U 800 + 200        IoU 0
#   s3 unparsable I 0, U |GT| = 800       IoU 0 (failure)
#   s4 COVERING   GT 10×10 = 100 px, the 200 ignored px leave 200 predicted: I 100, U 200   IoU 1/2
#   s5 unparsable, empty GT: I 0, U 0     IoU counts 0
# ΣI = 1300, ΣU = 4000 → cIoU 0.325; gIoU = (1 + 1/3 + 1/2) / 6 = 11/36.
COMMANDS = ["sample zero", "sample one", "sample two", "sample three", "sample four", "sample five"]
RUN_A = dict(zip(COMMANDS, [EXACT, SHIFTED, DISJOINT, UNPARSEABLE, COVERING, UNPARSEABLE], strict=True))
# Run B: exact boxes everywhere except s4 (same as A) and s5 (800 px on an empty GT: I 0, U 800).
# ΣI = 4·800 + 100 = 3300, ΣU = 4·800 + 200 + 800 = 4200 → cIoU 11/14; gIoU = (4 + 1/2) / 6 = 3/4.
RUN_B = {"*": EXACT, "sample four": COVERING}


@pytest.fixture
def rectangles(tmp_path):
    """Six samples in the folder format: 40×20 GT rectangles, a 10×10 one with an ignore band, an empty one."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for index, command in enumerate(COMMANDS):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(root / f"images/{index}.png")
        mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
        if index < 4:
            mask[20:40, 20:60] = True
        elif index == 4:
            mask[10:20, 10:20] = True
            ignore = np.zeros_like(mask)
            ignore[0:20, 0:10] = True
            Image.fromarray(ignore).save(root / "masks/4_ignore.png")
        Image.fromarray(mask).save(root / f"masks/{index}.png")
        entry = {"id": f"s{index}", "image": f"images/{index}.png", "mask": f"masks/{index}.png", "text": command}
        if index == 4:
            entry["ignore"] = "masks/4_ignore.png"
        entries.append(entry)
    (root / "samples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return root


def scripted_args(tmp_path: Path, data: Path, out: Path, outputs: dict[str, str], *extra: str,
                  backend: str = "scripted") -> list[str]:
    # Named by content: the run's identity holds the path, and a changed answer set is a different model.
    digest = hashlib.sha1(json.dumps(outputs, sort_keys=True).encode()).hexdigest()[:8]
    outputs_file = tmp_path / f"outputs_{digest}.json"
    outputs_file.write_text(json.dumps(outputs), encoding="utf-8")
    return ["eval", "--data", str(data), "--out", str(out), "--reasoner-backend", backend,
            "--reasoner", str(outputs_file), "--segmenter", "box", "--no-progress", *extra]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_scripted_run_scores_exactly_and_writes_the_report(tmp_path, rectangles, capsys):
    out = tmp_path / "run_a"
    assert main(scripted_args(tmp_path, rectangles, out, RUN_A, "--batch-size", "4")) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 6
    assert summary["gIoU"] == pytest.approx(11 / 36, abs=1e-12)
    assert summary["cIoU"] == pytest.approx(0.325, abs=1e-12)
    assert summary["ok"] == 4 and summary["failed"] == 2
    assert summary["failures"] == {"unparseable_output": 2}
    assert summary["complete"] is True
    latency = summary["latency_s"]
    assert latency["reason_s"]["count"] == 6  # the reasoner ran for every sample
    assert latency["encode_s"]["count"] == 4  # segmentation only after a parsed answer
    assert latency["total_s"]["p50"] <= latency["total_s"]["p90"] <= latency["total_s"]["p99"]

    records = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert [(records[f"s{i}"]["intersection"], records[f"s{i}"]["union"]) for i in range(6)] == [
        (800, 800), (400, 1200), (0, 1000), (0, 800), (100, 200), (0, 0)]
    assert records["s1"]["box"] == [40, 20, 79, 39]
    assert records["s4"]["ignored_pixels"] == 200
    assert records["s3"]["error_kind"] == "unparseable_output" and records["s3"]["mask_file"] is None
    assert (out / records["s1"]["mask_file"]).is_file()

    report = (out / "report.md").read_text()
    assert "| gIoU | 0.3056 |" in report and "| cIoU | 0.3250 |" in report
    assert "| unparseable_output | 2 |" in report
    for plot in ("iou_histogram.png", "iou_vs_size.png", "worst_overlays.png"):
        with Image.open(out / "plots" / plot) as image:
            assert image.format == "PNG" and image.width > 100
    assert "![worst samples](plots/worst_overlays.png)" in report
    # Worst first, ties broken by id: the IoU-0 samples s2, s3, s5, then s1 (1/3), s4 (1/2), s0 (1).
    worst_ids = [line.split("|")[2].strip() for line in report.splitlines() if line[:4] in {"| 1 ", "| 4 ", "| 6 "}]
    assert worst_ids == ["s2", "s1", "s0"]
    assert "gIoU 0.3056  cIoU 0.3250  samples 6  failed 2 (unparseable_output 2)" in capsys.readouterr().out


class CountingReasoner(ScriptedReasoner):
    batches: ClassVar[list[int]] = []

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        CountingReasoner.batches.append(len(images))
        return super().reason_batch(images, commands)


def counting_factory(config: ReasonerConfig) -> CountingReasoner:
    with open(config.model, encoding="utf-8") as handle:
        return CountingReasoner(json.load(handle))


@pytest.fixture
def counting_backend():
    backends.register_reasoner("counting", counting_factory)
    yield
    unregister("reasoner", "counting")


def test_rerun_skips_finished_samples_and_repairs_a_cut_off_line(tmp_path, rectangles, counting_backend):
    CountingReasoner.batches = []
    out = tmp_path / "resumed"
    args = scripted_args(tmp_path, rectangles, out, RUN_A, "--batch-size", "2", backend="counting")

    assert main([*args, "--limit", "3"]) == 0
    assert CountingReasoner.batches == [2, 1]
    assert json.loads((out / "summary.json").read_text())["count"] == 3
    with (out / "results.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "s3", "intersection": 0, "uni')  # a crash in mid-write

    CountingReasoner.batches = []
    assert main(args) == 0
    assert CountingReasoner.batches == [2, 1]  # only s3, s4, s5
    records = read_jsonl(out / "results.jsonl")
    assert [r["id"] for r in records] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 6 and summary["cIoU"] == pytest.approx(0.325)

    CountingReasoner.batches = []
    assert main(args) == 0  # nothing left: no model is even built
    assert CountingReasoner.batches == []


def test_results_of_another_model_are_not_mixed_in(tmp_path, rectangles, capsys):
    out = tmp_path / "run"
    assert main(scripted_args(tmp_path, rectangles, out, RUN_A, "--limit", "2")) == 0
    capsys.readouterr()
    assert main(scripted_args(tmp_path, rectangles, out, RUN_B, "--limit", "2")) == 2
    assert "holds results of a different evaluation (changed: reasoner)" in capsys.readouterr().err
    assert main(scripted_args(tmp_path, rectangles, out, RUN_B, "--overwrite")) == 0
    assert json.loads((out / "summary.json").read_text())["gIoU"] == pytest.approx(0.75)


def test_shards_merge_automatically_when_the_last_one_finishes(tmp_path, rectangles, capsys):
    out = tmp_path / "sharded"
    assert main(scripted_args(tmp_path, rectangles, out, RUN_A, "--shard", "1/2")) == 0
    assert not (out / "summary.json").exists()
    assert "3 samples are still running in other shards" in capsys.readouterr().err
    assert [r["id"] for r in read_jsonl(out / "results-shard-1-of-2.jsonl")] == ["s1", "s3", "s5"]

    assert main(scripted_args(tmp_path, rectangles, out, RUN_A, "--shard", "0/2")) == 0
    assert [r["id"] for r in read_jsonl(out / "results-shard-0-of-2.jsonl")] == ["s0", "s2", "s4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gIoU"] == pytest.approx(11 / 36) and summary["cIoU"] == pytest.approx(0.325)
    assert (out / "report.md").is_file()

    (out / "summary.json").unlink()
    assert main(["eval", "--merge", str(out)]) == 0
    merged = json.loads((out / "summary.json").read_text())
    assert merged["count"] == 6 and merged["cIoU"] == pytest.approx(0.325)
    assert "worst_overlays.png" in (out / "report.md").read_text()

    rectangles.rename(tmp_path / "moved")  # the dataset is gone: numbers from the records, no overlays
    assert main(["eval", "--merge", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["gIoU"] == pytest.approx(11 / 36)
    assert "overlays skipped" in (out / "report.md").read_text()
    assert not (out / "plots" / "worst_overlays.png").exists()


def test_device_follows_local_rank_only_under_a_multi_process_launcher():
    assert process_device("cpu", {"LOCAL_RANK": "1", "WORLD_SIZE": "2"}) == "cpu"
    assert process_device("auto", {"LOCAL_RANK": "0", "WORLD_SIZE": "1"}) == "auto"
    assert process_device("auto", {}) == "auto"


def test_compare_prints_a_side_by_side_table(tmp_path, rectangles, capsys):
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    assert main(scripted_args(tmp_path, rectangles, run_a, RUN_A)) == 0
    assert main(scripted_args(tmp_path, rectangles, run_b, RUN_B)) == 0
    capsys.readouterr()

    assert main(["eval", "--compare", str(run_a), str(run_b)]) == 0
    table = capsys.readouterr().out
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in table.splitlines())}
    assert rows["samples"][-3:] == ["6", "6", "+0"]
    assert rows["gIoU"][-3:] == ["0.3056", "0.7500", "+0.4444"]
    assert rows["cIoU"][-3:] == ["0.3250", "0.7857", "+0.4607"]
    assert rows["failed"][-3:] == ["2", "0", "-2"]
    assert rows["unparseable_output"][-3:] == ["2", "0", "-2"]
    assert rows["gIoU on the 6 common samples"][-3:] == ["0.3056", "0.7500", "+0.4444"]
    assert table.splitlines()[0].startswith(f"A = {run_a} (reasoner scripted:")
    # s1, s2, s3 improve; s0 (1 → 1), s4 (½ → ½) and s5 (0 → 0) do not change.
    assert "B better on 3, worse on 0, same on 3" in table

    assert main(["eval", "--compare", str(run_a)]) == 2
    assert "at least two" in capsys.readouterr().err


def test_without_data_merge_or_compare_the_command_explains_itself(capsys):
    assert main(["eval", "--out", "x"]) == 2
    assert "give --data PATH --out DIR" in capsys.readouterr().err


TINY_AVAILABLE = all(importlib.util.find_spec(m) is not None
                     for m in ("segzero_ros.tiny.qwen_vl", "segzero_ros.tiny.sam2_model"))


@pytest.mark.slow
@pytest.mark.skipif(not TINY_AVAILABLE, reason="tiny models (segzero_ros.tiny.qwen_vl / sam2_model) not built yet")
def test_tiny_models_run_the_whole_evaluation(tmp_path, capsys):
    from segzero_ros.core.geometry import Box, FrameScale, box_to_image
    from segzero_ros.data import generate_samples
    from segzero_ros.data.folder import write_folder_dataset
    from segzero_ros.tiny.qwen_vl import TINY_FRAME_BOX

    write_folder_dataset(generate_samples(6, seed=0, size=64), tmp_path / "synthetic")
    out = tmp_path / "tiny"
    code = main(["eval", "--data", str(tmp_path / "synthetic"), "--out", str(out), "--tiny",
                 "--max-new-tokens", "96", "--batch-size", "3", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 6 and summary["failed"] == 0, summary["failures"]
    assert 0.0 <= summary["gIoU"] <= 1.0 and 0.0 <= summary["cIoU"] <= 1.0
    assert summary["latency_s"]["encode_s"]["count"] == 6
    expected_box = box_to_image(Box(*TINY_FRAME_BOX), FrameScale.for_image((64, 64)))
    for record in read_jsonl(out / "results.jsonl"):
        assert record["box"] == expected_box.as_list()
        assert record["completion_tokens"] > 0
        assert record["union"] == record["mask_pixels"] + record["gt_pixels"] - record["intersection"]
    assert (out / "report.md").is_file() and (out / "plots" / "worst_overlays.png").is_file()


def object_list(*boxes: tuple[int, int, int, int]) -> str:
    items = [{"bbox_2d": list(box), "point_2d": [box[0] + 5, box[1] + 5]} for box in boxes]
    return f"<think>looking</think><answer>{json.dumps(items)}</answer>"


RECT_A, RECT_B = (100, 200, 295, 390), (500, 500, 695, 690)  # image x 20..59 y 20..39; x 100..139 y 50..69


def test_vision_reasoner_runs_score_union_masks_and_not_found(tmp_path, capsys):
    """Multi-object and no-target samples in the folder format (mask lists, []), answered in the
    vision_reasoner format. By hand (each rectangle 40×20 = 800 px):
      m0 both found      I 1600 U 1600  IoU 1
      m1 one of two      I 800  U 1600  IoU 1/2
      m2 none, says none I 0    U 0     IoU 1 (correct not_found)
      m3 none, points    I 0    U 800   IoU 0
      m4 one, says none  I 0    U 800   IoU 0 (not_found with a target: a failure)
    gIoU = 2.5/5 = 0.5, cIoU = 2400/4800 = 0.5; not-found accuracy 1/2, one not_found with a target."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)).save(root / "images/scene.png")
    first = np.zeros((HEIGHT, WIDTH), dtype=bool)
    first[20:40, 20:60] = True
    second = np.zeros((HEIGHT, WIDTH), dtype=bool)
    second[50:70, 100:140] = True
    Image.fromarray(first).save(root / "masks/a.png")
    Image.fromarray(second).save(root / "masks/b.png")
    both, none = ["masks/a.png", "masks/b.png"], []
    samples = [("m0", "both rectangles", both), ("m1", "both again", both), ("m2", "a circle", none),
               ("m3", "a star", none), ("m4", "the first rectangle", "masks/a.png")]
    (root / "samples.jsonl").write_text("".join(
        json.dumps({"id": i, "image": "images/scene.png", "mask": m, "text": t}) + "\n" for i, t, m in samples))
    outputs = {"both rectangles": object_list(RECT_A, RECT_B), "both again": object_list(RECT_A),
               "a circle": object_list(), "a star": object_list(RECT_A), "the first rectangle": object_list()}
    out = tmp_path / "run"
    assert main(scripted_args(tmp_path, root, out, outputs, "--answer-format", "vision_reasoner")) == 0

    records = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert [(records[i]["intersection"], records[i]["union"], records[i]["iou"]) for i in ("m0", "m1", "m2", "m3", "m4")
            ] == [(1600, 1600, 1.0), (800, 1600, 0.5), (0, 0, 1.0), (0, 800, 0.0), (0, 800, 0.0)]
    assert records["m0"]["gt_objects"] == 2 and len(records["m0"]["objects"]) == 2
    assert records["m2"]["error_kind"] == "not_found" and records["m2"]["no_target_correct"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gIoU"] == pytest.approx(0.5) and summary["cIoU"] == pytest.approx(0.5)
    assert summary["not_found"] == {"no_target_samples": 2, "correct": 1, "accuracy": 0.5,
                                    "said_not_found_with_target": 1}
    assert summary["failures"] == {"not_found": 2}
    printed = capsys.readouterr().out
    assert "not-found accuracy 0.5000 (1/2 samples without a target answered not_found)" in printed


@pytest.mark.slow
@pytest.mark.parametrize("reasoner, segmenter", [("sam3_concept", "sam3"), ("transformers", "edgetam")])
def test_tiny_evaluation_with_the_transformers_sam_backends(tmp_path, capsys, tiny_cache_root, reasoner, segmenter):
    """`segzero eval --tiny --reasoner.backend … --segmenter.backend …`: every sample answered and segmented by
    the chosen backends (threshold 0: the random concept detector's instances all count)."""
    from segzero_ros.data import generate_samples
    from segzero_ros.data.folder import write_folder_dataset

    write_folder_dataset(generate_samples(3, seed=0, size=64), tmp_path / "synthetic")
    out = tmp_path / "run"
    extra = ["--reasoner.score_threshold", "0"] if reasoner == "sam3_concept" else ["--max-new-tokens", "96"]
    code = main(["eval", "--data", str(tmp_path / "synthetic"), "--out", str(out), "--tiny", "--no-progress",
                 "--reasoner.backend", reasoner, "--segmenter.backend", segmenter, *extra])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 3 and summary["failed"] == 0, summary["failures"]
    records = list(read_jsonl(out / "results.jsonl"))
    assert all(record["mask_pixels"] > 0 and record["segmenter"].startswith(f"{segmenter}:") for record in records)
