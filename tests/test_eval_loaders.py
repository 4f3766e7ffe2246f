"""Evaluation loaders on fixtures built here: LISA's ReasonSeg layout, HF datasets (saved and parquet),
the plain folder format; plus the lazy dataset view and sharding that the runner relies on."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_ros.data import (
    DatasetFormatError,
    EvalDataset,
    detect_format,
    load_eval_dataset,
    load_hf_dataset,
    rasterize_shapes,
)
from segzero_ros.evaluation import Shard


def rectangle(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def write_reasonseg(folder: Path, name: str = "kitchen", encoding: str = "utf-8") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), 90, dtype=np.uint8)).save(folder / f"{name}.jpg")
    annotation = {
        "text": ["what can I cut bread with? café", "the knife"],
        "is_sentence": True,
        # File order is smallest first: only LISA's largest-first painting lets the small target survive.
        "shapes": [
            {"label": "target", "points": rectangle(11, 9, 12, 10), "shape_type": "polygon"},  # 4 px
            {"label": "ignore", "points": rectangle(10, 8, 14, 12), "shape_type": "polygon"},  # 25 px
            {"label": "target", "points": rectangle(5.7, 5.2, 24.9, 19.5), "shape_type": "polygon"},  # 20×15
            {"label": "flag", "points": rectangle(0, 0, 39, 29), "shape_type": "polygon"},  # deprecated: skipped
        ],
    }
    (folder / f"{name}.json").write_bytes(json.dumps(annotation, ensure_ascii=False).encode(encoding))


def test_reasonseg_polygons_painted_largest_first_with_ignore_excluded(tmp_path):
    write_reasonseg(tmp_path / "val", encoding="cp1252")
    assert detect_format(tmp_path / "val") == "reasonseg"
    dataset = load_eval_dataset(tmp_path / "val")
    assert dataset.ids == ["kitchen"]
    sample = dataset[0]
    assert sample.text == "what can I cut bread with? café"
    assert sample.image.shape == (30, 40, 3)
    # Big target: x 5..24, y 5..19 (vertices truncated) = 300 px; the ignore square (25 px) is cut out of
    # it, and the 4 px target painted last sits inside the ignore square: 300 − 25 + 4 = 279.
    assert sample.mask.sum() == 279
    assert sample.ignore is not None and sample.ignore.sum() == 21
    assert not (sample.mask & sample.ignore).any()
    assert sample.mask[9:11, 11:13].all() and not sample.mask[8, 10]
    assert sample.mask[5, 5] and not sample.mask[4, 5] and not sample.mask[5, 25]


def test_reasonseg_all_texts_gives_one_sample_per_question(tmp_path):
    write_reasonseg(tmp_path / "test")
    dataset = load_eval_dataset(tmp_path / "test", "reasonseg", reasonseg_texts="all")
    assert dataset.ids == ["kitchen#0", "kitchen#1"]
    assert dataset[1].text == "the knife"
    assert dataset[1].mask.sum() == 279


def test_rasterize_shapes_label_values():
    labels = rasterize_shapes([{"label": "target", "points": [[0, 0], [4, 0], [0, 4]]}], (6, 6))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    assert labels.sum() == 15  # right triangle with legs of 5 px, edges included: 5+4+3+2+1


def hf_rows() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((6, 8), dtype=bool) for _ in range(3)]
    masks[0][1:3, 2:6] = True  # 8 px
    masks[1][0, :] = True  # 8 px
    masks[2][:, 0] = True  # 6 px
    return images, masks


def hf_dataset() -> Any:
    import datasets

    images, masks = hf_rows()
    features = datasets.Features({
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "mask": datasets.Sequence(datasets.Sequence(datasets.Value("bool"))),
        "image_id": datasets.Value("string"),
        "ann_id": datasets.Value("string"),
        "img_height": datasets.Value("int64"),
        "img_width": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict({
        "image": [Image.fromarray(image) for image in images],
        "text": ["the cup", "the top row", "the left column"],
        "mask": [mask.tolist() for mask in masks],
        "image_id": ["img1", "img2", "img2"],
        "ann_id": ["a", "b", "b"],  # the last two collide: ids get the row number
        "img_height": [6, 6, 6],
        "img_width": [8, 8, 8],
    }, features=features)


def assert_matches_rows(dataset: EvalDataset) -> None:
    images, masks = hf_rows()
    assert dataset.ids == ["img1_a", "img2_b#1", "img2_b#2"]
    for position in range(3):
        sample = dataset[position]
        assert np.array_equal(sample.image, images[position])
        assert np.array_equal(sample.mask, masks[position])
    assert [s.text for s in dataset] == ["the cup", "the top row", "the left column"]


def test_hf_dataset_dict_saved_to_disk(tmp_path):
    import datasets

    datasets.DatasetDict({"test": hf_dataset()}).save_to_disk(str(tmp_path / "reasonseg_test"))
    assert detect_format(tmp_path / "reasonseg_test") == "hf"
    assert_matches_rows(load_eval_dataset(tmp_path / "reasonseg_test"))
    with pytest.raises(DatasetFormatError, match="no split 'val'"):
        load_eval_dataset(tmp_path / "reasonseg_test", split="val")


def test_hf_parquet_in_hub_layout(tmp_path):
    (tmp_path / "snapshot" / "data").mkdir(parents=True)
    hf_dataset().to_parquet(str(tmp_path / "snapshot" / "data" / "test-00000-of-00001.parquet"))
    assert detect_format(tmp_path / "snapshot") == "hf"
    dataset = load_hf_dataset(tmp_path / "snapshot", cache_dir=str(tmp_path / "cache"))
    assert dataset.name.endswith("[test]")
    assert_matches_rows(dataset)


def test_open_hf_dataset_split_rules_shared_by_eval_and_training(tmp_path, monkeypatch):
    import datasets

    from segzero_ros.data.hf import open_hf_dataset

    one = tmp_path / "one_split"
    datasets.DatasetDict({"test": hf_dataset()}).save_to_disk(str(one))
    assert open_hf_dataset(one).label == f"hf:{one}[test]"
    with pytest.raises(DatasetFormatError, match="no split 'train'"):
        open_hf_dataset(one, "train")  # evaluation: a named split must exist
    assert open_hf_dataset(one, "train", any_single_split=True).label == f"hf:{one}[test]"  # training

    two = tmp_path / "two_splits"
    datasets.DatasetDict({"train": hf_dataset(), "validation": hf_dataset().select([0])}).save_to_disk(str(two))
    assert open_hf_dataset(two).label == f"hf:{two}[validation]"  # PREFERRED_SPLITS order
    with pytest.raises(DatasetFormatError, match="no split 'test'"):
        open_hf_dataset(two, "test", any_single_split=True)
    assert len(open_hf_dataset(two, "validation", any_single_split=True).dataset) == 1

    with pytest.raises(DatasetFormatError, match="no such file or folder"):
        load_hf_dataset(str(tmp_path / "missing" / "folder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetFormatError, match="hf download --repo-type dataset someone/not-cached"):
        load_hf_dataset("someone/not-cached", cache_dir=str(tmp_path / "cache"))


def write_folder(root: Path, entries: list[dict[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "samples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def test_folder_format_reads_grey_palette_and_ignore_masks(tmp_path):
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(root / "images" / "a.png")
    grey = np.zeros((4, 5), dtype=np.uint8)
    grey[0:2, 0:2] = 255
    Image.fromarray(grey).save(root / "masks" / "grey.png")
    palette = Image.fromarray(np.array([[0, 1, 1, 0, 0]] * 4, dtype=np.uint8), mode="P")
    palette.putpalette([200, 200, 200, 255, 0, 0] + [0] * 762)  # index 0 is a light grey, not black
    palette.save(root / "masks" / "palette.png")
    ignore = np.zeros((4, 5), dtype=np.uint8)
    ignore[0, :] = 1
    Image.fromarray(ignore).save(root / "masks" / "ignore.png")
    write_folder(root, [
        {"image": "images/a.png", "mask": "masks/grey.png", "text": "the top left"},
        {"id": "p", "image": "images/a.png", "mask": "masks/palette.png", "text": "the stripe",
         "ignore": "masks/ignore.png"},
    ])
    assert detect_format(root) == "folder"
    dataset = load_eval_dataset(root)
    assert dataset.ids == ["grey", "p"]
    assert dataset[0].mask.sum() == 4 and dataset[0].ignore is None
    stripe = dataset[1]
    assert stripe.mask.sum() == 6  # 8 palette-index-1 pixels minus the 2 in the ignored top row
    assert stripe.ignore is not None and stripe.ignore.sum() == 5


def test_folder_format_errors_name_the_problem(tmp_path):
    write_folder(tmp_path / "bad", [{"image": "a.png", "mask": "m.png"}])
    with pytest.raises(DatasetFormatError, match=r"samples\.jsonl:1: missing or non-string text"):
        load_eval_dataset(tmp_path / "bad")

    root = tmp_path / "mismatch"
    root.mkdir()
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(root / "m.png")
    write_folder(root, [{"id": "x", "image": "a.png", "mask": "m.png", "text": "t"}])
    dataset = load_eval_dataset(root)  # ids load without decoding anything
    with pytest.raises(DatasetFormatError, match="mask is 5×5 but the image is 5×4"):
        dataset[0]

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="cannot tell the dataset format"):
        detect_format(tmp_path / "empty")


def save_portrait_photo(path: Path) -> np.ndarray:
    """A phone photo stored 4 high × 6 wide with EXIF orientation 6; returns the upright 6×4 pixels."""
    stored = np.zeros((4, 6, 3), dtype=np.uint8)
    stored[0, :] = (255, 0, 0)  # the stored top row: upright, the right-hand column
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif)
    upright = np.zeros((6, 4, 3), dtype=np.uint8)
    upright[:, 3] = (255, 0, 0)
    return upright


def test_loaders_read_phone_photos_upright_so_masks_and_polygons_line_up(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    upright = save_portrait_photo(folder / "photo.png")
    mask = np.zeros((6, 4), dtype=np.uint8)
    mask[:, 3] = 255  # drawn over the upright photo: the red column
    Image.fromarray(mask).save(folder / "mask.png")
    write_folder(folder, [{"id": "p", "image": "photo.png", "mask": "mask.png", "text": "the red stripe"}])
    sample = load_eval_dataset(folder)[0]
    assert np.array_equal(sample.image, upright)
    assert np.array_equal(sample.mask, mask > 0)

    lisa = tmp_path / "lisa"
    lisa.mkdir()
    save_portrait_photo(lisa / "photo.png")
    annotation = {"text": ["the red stripe"], "shapes": [{"label": "target", "points": rectangle(3, 0, 3, 5)}]}
    (lisa / "photo.json").write_text(json.dumps(annotation), encoding="utf-8")
    sample = load_eval_dataset(lisa, "reasonseg")[0]
    assert np.array_equal(sample.image, upright)
    assert np.array_equal(sample.mask, np.all(upright == (255, 0, 0), axis=2))


def test_unreadable_images_are_dataset_format_errors(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_text("not an image")
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(folder / "m.png")
    write_folder(folder, [{"id": "x", "image": "a.png", "mask": "m.png", "text": "t"},
                          {"id": "y", "image": "m.png", "mask": "gone.png", "text": "t"}])
    dataset = load_eval_dataset(folder)
    with pytest.raises(DatasetFormatError, match=r"cannot read image .*a\.png"):
        dataset[0]
    with pytest.raises(DatasetFormatError, match=r"cannot read image .*gone\.png"):
        dataset[1]
    lisa = tmp_path / "lisa"
    write_reasonseg(lisa)
    (lisa / "kitchen.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetFormatError, match=r"cannot read image .*kitchen\.jpg"):
        load_eval_dataset(lisa, "reasonseg")[0]


def test_dataset_views_and_strided_shards(tmp_path):
    from segzero_ros.data import generate_samples
    from segzero_ros.data.folder import write_folder_dataset

    write_folder_dataset(generate_samples(7, seed=2, size=32), tmp_path / "d")
    dataset = load_eval_dataset(tmp_path / "d")
    ids = dataset.ids
    assert Shard(0, 3).select(dataset).ids == [ids[0], ids[3], ids[6]]
    assert Shard(2, 3).select(dataset).ids == [ids[2], ids[5]]
    assert dataset.head(2).ids == ids[:2] and dataset.head(None).ids == ids
    assert dataset.position_of(ids[4]) == 4 and dataset.head(2).position_of(ids[4]) is None
    assert Shard(1, 3).select(dataset)[1].id == ids[4]


def test_shard_parsing_and_launcher_environment():
    assert Shard.parse("2/4") == Shard(2, 4)
    for text in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="I/N"):
            Shard.parse(text)
    assert Shard.from_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == Shard(3, 8)
    assert Shard.from_environment({"WORLD_SIZE": "1"}) is None
    assert Shard.from_environment({}) is None
    assert Shard(0, 1).results_name == "results.jsonl"
    assert Shard(1, 4).results_name == "results-shard-1-of-4.jsonl"
