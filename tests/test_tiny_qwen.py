"""The tiny offline Qwen2.5-VL: real classes, Qwen conventions, cached atomically, answers one fixed completion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_ros.core.answer import parse_answer
from segzero_ros.core.prompt import build_prompt
from segzero_ros.tiny import qwen_vl
from segzero_ros.tiny.qwen_vl import (
    RECIPE_MARKER,
    RECIPE_VERSION,
    TINY_COMPLETION,
    TINY_FRAME_BOX,
    TINY_FRAME_POINTS,
    TINY_QWEN_DIRNAME,
    ensure_tiny_qwen,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_processor(tiny_qwen_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_qwen_dir))  # type: ignore[no-untyped-call]


def test_fixed_completion_is_a_well_formed_seg_zero_answer() -> None:
    answer = parse_answer(TINY_COMPLETION, (840, 840))
    assert answer.from_answer_tag
    assert answer.reasoning == "tiny model: fixed answer"
    assert answer.frame_box.as_list() == [200, 180, 640, 700] == list(TINY_FRAME_BOX)
    assert [p.as_list() for p in answer.frame_points] == [[380, 400], [460, 520]]
    assert tuple(tuple(p.as_list()) for p in answer.frame_points) == TINY_FRAME_POINTS


def test_folder_is_cached_under_the_recipe_version_and_small(tiny_qwen_dir: Path, tiny_cache_root: Path) -> None:
    assert tiny_qwen_dir == tiny_cache_root / TINY_QWEN_DIRNAME
    assert f"r{RECIPE_VERSION}" in tiny_qwen_dir.name
    recipe = json.loads((tiny_qwen_dir / RECIPE_MARKER).read_text(encoding="utf-8"))
    assert recipe["recipe_version"] == RECIPE_VERSION
    assert recipe["completion"] == TINY_COMPLETION
    total_bytes = sum(f.stat().st_size for f in tiny_qwen_dir.iterdir() if f.is_file())
    assert total_bytes < 5 * 1024 * 1024
    # A second call finds the finished folder instead of building again.
    marker_mtime = (tiny_qwen_dir / RECIPE_MARKER).stat().st_mtime_ns
    assert ensure_tiny_qwen(tiny_cache_root) == tiny_qwen_dir
    assert (tiny_qwen_dir / RECIPE_MARKER).stat().st_mtime_ns == marker_mtime


def test_loads_with_the_real_qwen_classes(tiny_qwen_dir: Path, tiny_processor) -> None:
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLProcessor, Qwen2Tokenizer

    assert isinstance(tiny_processor, Qwen2_5_VLProcessor)
    assert type(tiny_processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(tiny_processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    tokenizer = tiny_processor.tokenizer
    assert isinstance(tokenizer, Qwen2Tokenizer)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_qwen_dir))
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    config = model.config
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    text = config.text_config
    assert text.vocab_size >= len(tokenizer)
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert config.vision_config.out_hidden_size == text.hidden_size
    eos = model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_special_tokens_are_single_unsplittable_ids(tiny_processor) -> None:
    tokenizer = tiny_processor.tokenizer
    for token in qwen_vl.QWEN_SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token
    assert len(set(tokenizer.convert_tokens_to_ids(list(qwen_vl.QWEN_SPECIAL_TOKENS)))) == 14


def test_tokenizer_round_trips_prompt_and_answer_text(tiny_processor) -> None:
    tokenizer = tiny_processor.tokenizer
    for text in (build_prompt("The mug, left of the laptop."), TINY_COMPLETION, "0123456789 ü ✓"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # The trained merges compress the Seg-Zero prompt well below one token per byte.
    prompt = build_prompt("the red cup")
    assert len(tokenizer(prompt)["input_ids"]) < len(prompt.encode()) / 2


def test_chat_template_renders_the_qwen2_vl_format(tiny_processor) -> None:
    user_turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    rendered = tiny_processor.apply_chat_template(user_turn, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    rendered = tiny_processor.apply_chat_template(with_system, tokenize=False, add_generation_prompt=False)
    assert rendered == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"


def test_840_frame_becomes_16_visual_tokens(tiny_processor) -> None:
    image = Image.fromarray(np.zeros((840, 840, 3), dtype=np.uint8))
    text = "<|vision_start|><|image_pad|><|vision_end|>x"
    inputs = tiny_processor(text=[text], images=[image], return_tensors="pt")
    # 840² > 112² budget → resized to 112×112 → 8×8 patches of 14 px → (8/2)² = 16 merged tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 16


def _fake_build(output_dir: Path, seed: int = 0, **recipe) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "built_by").write_text("this process", encoding="utf-8")
    (output_dir / RECIPE_MARKER).write_text("{}", encoding="utf-8")


def test_unfinished_folder_is_replaced_and_no_staging_is_left(tmp_path: Path, monkeypatch) -> None:
    # The real build runs in the session fixture; here only the caching logic around it is exercised.
    monkeypatch.setattr(qwen_vl, "build_tiny_qwen", _fake_build)
    debris = tmp_path / TINY_QWEN_DIRNAME
    debris.mkdir()
    (debris / "config.json").write_text("half-copied", encoding="utf-8")

    result = ensure_tiny_qwen(tmp_path)

    assert result == debris
    assert (result / "built_by").read_text(encoding="utf-8") == "this process"
    assert not (result / "config.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == [TINY_QWEN_DIRNAME]


def test_concurrent_builder_that_finishes_first_wins(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / TINY_QWEN_DIRNAME

    def build_while_another_process_finishes(output_dir: Path, seed: int = 0, **recipe) -> None:
        _fake_build(output_dir, seed)
        target.mkdir()  # the other process renames its finished build into place first
        (target / "built_by").write_text("other process", encoding="utf-8")
        (target / RECIPE_MARKER).write_text("{}", encoding="utf-8")

    monkeypatch.setattr(qwen_vl, "build_tiny_qwen", build_while_another_process_finishes)

    assert ensure_tiny_qwen(tmp_path) == target
    assert (target / "built_by").read_text(encoding="utf-8") == "other process"
    assert [p.name for p in tmp_path.iterdir()] == [TINY_QWEN_DIRNAME]
