"""Training data: mask samples → refCOCOg_2k_840 schema → TRL's conversational VLM rows."""

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from segzero_ros.core.prompt import build_prompt
from segzero_ros.data.dataset import DatasetFormatError
from segzero_ros.data.folder import write_folder_dataset
from segzero_ros.data.synthetic import generate_samples
from segzero_ros.training.datasets import (
    MADE_COLUMNS,
    load_segzero_dataset,
    load_training_dataset,
    parse_synthetic_source,
    save_segzero_dataset,
    segzero_dataset_from_masks,
    segzero_record,
    to_trl_dataset,
)
from segzero_ros.training.targets import solution_for_mask


@dataclass
class Sample:
    id: str
    image: np.ndarray
    mask: np.ndarray
    text: str


def rectangle_sample(sample_id="rect", width=200, height=100):
    image = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), bool)
    mask[20:60, 50:150] = True  # x 50..149, y 20..59
    image[mask] = (200, 30, 30)
    return Sample(sample_id, image, mask, "The red box.")


def test_record_has_the_schema_with_frame_targets_and_original_size():
    record = segzero_record(rectangle_sample())
    assert tuple(record) == MADE_COLUMNS and record["solution_extent"] == 840
    # x factor 840/200 = 4.2, y factor 840/100 = 8.4 (hand-computed in test_targets).
    assert record["solution"] == "<box>(210,168),(626,496)</box><points>(" + record["solution"].split("<points>(")[1]
    assert record["solution"].startswith("<box>(210,168),(626,496)</box>")
    assert (record["img_width"], record["img_height"]) == (200, 100)
    assert record["image"].size == (840, 840) and record["image"].mode == "RGB"
    assert record["problem"] == "The red box."  # kept as given; the prompt normalises it
    # The squashed image still shows the box where the solution says (INTER_AREA keeps the flat red inside).
    frame = np.asarray(record["image"])
    assert tuple(frame[330, 420]) == (200, 30, 30) and tuple(frame[100, 100]) == (0, 0, 0)


def test_bilinear_resampling_is_available_and_unknown_modes_are_rejected():
    assert segzero_record(rectangle_sample(), resample="bilinear")["image"].size == (840, 840)
    with pytest.raises(ValueError, match="resampling"):
        segzero_record(rectangle_sample(), resample="nearest")
    sample = rectangle_sample()
    sample.mask = sample.mask[:50]
    with pytest.raises(DatasetFormatError, match="mask is 200×50 but the image is 200×100"):
        segzero_record(sample)


def test_conversion_skips_empty_masks(tmp_path):
    empty = Sample("empty", np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool), "nothing")
    dataset = segzero_dataset_from_masks([rectangle_sample("a"), empty, rectangle_sample("b")], cache_dir=tmp_path)
    assert dataset["id"] == ["a", "b"]
    assert dataset.column_names == list(MADE_COLUMNS)
    with pytest.raises(DatasetFormatError, match="no usable samples"):
        segzero_dataset_from_masks([empty], cache_dir=tmp_path)


def test_synthetic_source_matches_the_generator_and_the_target_rules(tmp_path):
    assert parse_synthetic_source("synthetic:5:3:96") == (5, 3, 96)
    assert parse_synthetic_source("synthetic") == (64, 0, 256)
    assert parse_synthetic_source("/data/synthetic") is None
    dataset = load_training_dataset("synthetic:3:1:96", cache_dir=tmp_path)
    samples = generate_samples(3, 1, 96)
    assert dataset["id"] == [s.id for s in samples]
    assert dataset["problem"] == [s.text for s in samples]
    assert dataset["solution"] == [solution_for_mask(s.mask) for s in samples]
    assert dataset["img_width"] == [96, 96, 96]


def test_folder_format_is_converted_on_the_way_in(tmp_path):
    samples = generate_samples(3, 2, (120, 80))
    write_folder_dataset(samples, tmp_path / "folder")
    dataset = load_training_dataset(tmp_path / "folder", cache_dir=tmp_path / "cache", max_samples=2)
    assert dataset["id"] == [s.id for s in samples[:2]]
    assert dataset["solution"] == [solution_for_mask(s.mask) for s in samples[:2]]
    assert (dataset[0]["img_width"], dataset[0]["img_height"]) == (120, 80)


def test_hf_mask_dataset_is_detected_and_converted(tmp_path):
    import datasets

    samples = generate_samples(2, 4, 64)
    table = datasets.Dataset.from_dict({
        "image": [Image.fromarray(s.image) for s in samples],
        "mask": [s.mask.astype(np.uint8).tolist() for s in samples],
        "text": [s.text for s in samples],
        "image_id": [s.id for s in samples],
    })
    table.save_to_disk(str(tmp_path / "masks_hf"))
    dataset = load_training_dataset(tmp_path / "masks_hf", cache_dir=tmp_path / "cache")
    assert dataset["solution"] == [solution_for_mask(s.mask) for s in samples]
    assert dataset["problem"] == [s.text for s in samples]


def test_schema_round_trips_through_save_to_disk_and_parquet(tmp_path):
    original = segzero_dataset_from_masks([rectangle_sample("a"), rectangle_sample("b", 300, 150)], cache_dir=tmp_path)
    saved = save_segzero_dataset(original, tmp_path / "saved")
    assert (saved / "dataset_dict.json").is_file()  # DatasetDict({"train": …}), like the reference script
    loaded = load_segzero_dataset(saved)
    assert loaded["solution"] == original["solution"] and loaded["img_width"] == [200, 300]
    original.to_parquet(str(tmp_path / "train-00000-of-00001.parquet"))
    from_parquet = load_training_dataset(tmp_path / "train-00000-of-00001.parquet")
    assert from_parquet["id"] == ["a", "b"]
    assert load_training_dataset(saved, max_samples=1)["id"] == ["a"]


def test_unusable_sources_fail_with_a_clear_message(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetFormatError, match="hf download --repo-type dataset"):
        load_training_dataset("someone/not-cached-anywhere")
    with pytest.raises(DatasetFormatError, match="no such file or folder"):
        load_training_dataset(str(tmp_path / "missing" / "folder"))
    datasets.Dataset.from_dict({"problem": ["x"], "answer": ["y"]}).save_to_disk(str(tmp_path / "wrong"))
    with pytest.raises(DatasetFormatError, match="missing column"):
        load_training_dataset(tmp_path / "wrong")


def test_trl_rows_carry_the_node_prompt_an_840_frame_and_the_solution(tmp_path):
    import datasets

    schema = segzero_dataset_from_masks([rectangle_sample("a")], cache_dir=tmp_path)
    # A schema row whose image was not pre-squashed still reaches the trainer as 840×840.
    odd = datasets.Dataset.from_dict(
        {"id": ["b"], "problem": ["Left cup."], "solution": [schema[0]["solution"]],
         "image": [Image.new("RGB", (100, 50), (9, 9, 9))], "img_height": [50], "img_width": [100],
         "solution_extent": [840]},
        features=schema.features,
    )
    rows = to_trl_dataset(datasets.concatenate_datasets([schema, odd]))
    first, second = rows[0], rows[1]
    assert first["prompt"] == [{"role": "user", "content": build_prompt("The red box.")}]
    assert second["prompt"][0]["content"].startswith("Please find 'left cup' with bbox and points.")
    assert first["image"].size == second["image"].size == (840, 840)
    assert second["image"].getpixel((420, 420)) == (9, 9, 9)
    assert first["solution"] == schema[0]["solution"]
    assert len(rows) == 2


def test_cli_make_dataset_writes_the_schema_and_cleans_up(tmp_path, capsys):
    from segzero_ros.cli import main

    out = tmp_path / "made"
    assert main(["train", "make-dataset", "--source", "synthetic:3:0:64", "--out", str(out)]) == 0
    made = load_segzero_dataset(out)
    assert made["id"] == [s.id for s in generate_samples(3, 0, 64)]
    assert made.column_names == list(MADE_COLUMNS)
    assert "wrote 3 samples" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made"]  # the staging rows are gone
    assert main(["train", "make-dataset", "--source", "synthetic:3", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


@dataclass
class MultiSample:
    id: str
    image: np.ndarray
    mask: np.ndarray
    text: str
    instances: tuple


def two_rectangles(sample_id="two", width=200, height=100):
    image = np.zeros((height, width, 3), np.uint8)
    left, right = np.zeros((height, width), bool), np.zeros((height, width), bool)
    left[20:60, 10:50] = True    # x 10..49, y 20..59
    right[30:51, 120:181] = True  # x 120..180, y 30..50
    return MultiSample(sample_id, image, left | right, "both boxes", (left, right))


def test_vision_reasoner_rows_hold_one_box_and_point_per_object():
    import json

    from segzero_ros.training.targets import frame_targets

    sample = two_rectangles()
    row = segzero_record(sample, answer_format="vision_reasoner")
    objects = json.loads(row["solution"])
    # x × 840/200 = 4.2, y × 840/100 = 8.4, int(v·f + 0.5): left box (10,20,49,59) → (42,168,206,496).
    assert objects[0]["bbox_2d"] == [42, 168, 206, 496]
    for entry, instance in zip(objects, sample.instances, strict=True):
        targets = frame_targets(instance)
        assert entry == {"bbox_2d": targets.box.as_list(), "point_2d": targets.points[0].as_list()}
    empty = MultiSample("none", sample.image, np.zeros_like(sample.mask), "a circle", ())
    assert segzero_record(empty, answer_format="vision_reasoner")["solution"] == "[]"
    # A plain one-mask sample is a list of one object.
    single = json.loads(segzero_record(rectangle_sample(), answer_format="vision_reasoner")["solution"])
    assert len(single) == 1


def test_seg_zero_conversion_skips_multi_object_and_empty_samples_vision_reasoner_keeps_them(tmp_path, caplog):
    samples = [two_rectangles("two"), rectangle_sample("one"),
               MultiSample("none", rectangle_sample().image, np.zeros((100, 200), bool), "a circle", ())]
    seg_zero = segzero_dataset_from_masks(samples, cache_dir=tmp_path / "a")
    assert seg_zero["id"] == ["one"]
    assert "use answer_format=vision_reasoner" in caplog.text
    listed = segzero_dataset_from_masks(samples, cache_dir=tmp_path / "b", answer_format="vision_reasoner")
    assert listed["id"] == ["two", "one", "none"]
    assert listed["solution"][2] == "[]"


def test_vision_reasoner_synthetic_source_and_folder_round_trip(tmp_path):
    import json

    from segzero_ros.core.prompt import build_vision_reasoner_prompt
    from segzero_ros.data.folder import load_folder_dataset
    from segzero_ros.data.synthetic import generate_object_list_samples, resolve_object_list

    dataset = load_training_dataset("synthetic:12:4:96", answer_format="vision_reasoner", cache_dir=tmp_path / "c")
    expected = generate_object_list_samples(12, 4, 96)
    assert [len(json.loads(s)) for s in dataset["solution"]] == [len(s.targets) for s in expected]
    assert {len(s.targets) for s in expected} >= {0, 3}  # the set has empty and multi-object samples
    for sample in expected:
        assert resolve_object_list(sample.shapes, sample.text) == sample.targets
        assert sample.mask.sum() == sum(int(m.sum()) for m in sample.instances)  # shapes never overlap
    rows = to_trl_dataset(dataset, "vision_reasoner")
    assert rows[0]["prompt"] == [{"role": "user", "content": build_vision_reasoner_prompt(expected[0].text)}]

    write_folder_dataset(expected, tmp_path / "folder")
    reread = load_folder_dataset(tmp_path / "folder")
    for original, loaded in zip(expected, reread, strict=True):
        assert loaded.instances is not None and len(loaded.instances) == len(original.instances)
        for a, b in zip(loaded.instances, original.instances, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(loaded.mask, original.mask)
        assert loaded.has_target == bool(original.targets)
