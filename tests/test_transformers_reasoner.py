"""TransformersReasoner on the tiny real Qwen2.5-VL: reference prompt, batching, scaling, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segzero_ros.config import DEFAULT_REASONER_MODEL, ReasonerConfig, TransformersReasonerConfig
from segzero_ros.core.geometry import Box, Point
from segzero_ros.core.prompt import build_prompt
from segzero_ros.errors import ModelLoadError
from segzero_ros.reasoning.base import Reasoner
from segzero_ros.reasoning.chat import prepare_processor_for_generation, render_chat_text, user_turn
from segzero_ros.reasoning.transformers_backend import TransformersReasoner, prepare_batch
from segzero_ros.tiny.qwen_vl import TINY_COMPLETION, TINY_FRAME_BOX, TINY_FRAME_POINTS, TINY_THINK

pytestmark = pytest.mark.slow

VISUAL_TOKENS = 16  # tiny processor: 840×840 → 112×112 → 8×8 patches → 16 merged tokens


@pytest.fixture(scope="module")
def reasoner(tiny_qwen_dir: Path):
    loaded = TransformersReasoner.from_config(ReasonerConfig(model=str(tiny_qwen_dir)))
    yield loaded
    loaded.close()


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_is_a_reasoner_named_after_its_model(reasoner: TransformersReasoner, tiny_qwen_dir: Path) -> None:
    assert isinstance(reasoner, Reasoner)
    assert reasoner.name == str(tiny_qwen_dir)


def test_one_batch_answers_each_image_in_its_own_pixels(reasoner: TransformersReasoner) -> None:
    landscape, portrait = _noise(480, 640, 1), _noise(517, 333, 2)
    outputs = reasoner.reason_batch([landscape, portrait], ["The red cup.", "person waving at the camera"])

    assert len(outputs) == 2
    for output in outputs:
        assert output.raw_output == TINY_COMPLETION
        assert output.error is None
        assert output.reasoning == TINY_THINK
    # The tiny model always answers box (200,180,640,700), points (380,400) and (460,520) in the 840 frame.
    assert TINY_FRAME_BOX == (200, 180, 640, 700)
    assert TINY_FRAME_POINTS == ((380, 400), (460, 520))
    # 640×480: x × 640/840, y × 480/840, rounded: 200→152.38, 180→102.86, 640→487.62, 700→400.0;
    # 380→289.52, 400→228.57; 460→350.48, 520→297.14.
    assert outputs[0].objects is not None and len(outputs[0].objects) == 1
    first = outputs[0].objects[0]
    assert first.box == Box(152, 103, 488, 400)
    assert first.points == (Point(290, 229), Point(350, 297))
    # 333×517: x × 333/840, y × 517/840: 200→79.29, 180→110.79, 640→253.71, 700→430.83;
    # 380→150.64, 400→246.19; 460→182.36, 520→320.05.
    assert outputs[1].objects is not None
    second = outputs[1].objects[0]
    assert second is not None
    assert second.box == Box(79, 111, 254, 431)
    assert second.points == (Point(151, 246), Point(182, 320))


def test_token_counts_and_timings_are_recorded(reasoner: TransformersReasoner) -> None:
    commands = ["cup", "the tallest of the three plants standing on the windowsill"]
    outputs = reasoner.reason_batch([_noise(480, 640, 3), _noise(200, 200, 4)], commands)
    tokenizer = reasoner.processor.tokenizer
    for output, command in zip(outputs, commands, strict=True):
        prompt = render_chat_text(reasoner.processor, command).replace(
            "<|image_pad|>", "<|image_pad|>" * VISUAL_TOKENS
        )
        # Padding is not counted: each row counts its own prompt.
        assert output.prompt_tokens == len(tokenizer(prompt)["input_ids"]) > 0
        # Every generated token up to and including <|im_end|>.
        assert output.completion_tokens == len(tokenizer(TINY_COMPLETION + "<|im_end|>")["input_ids"]) > 0
        assert output.preprocess_s > 0
        assert output.generate_s > 0
    assert outputs[0].prompt_tokens < outputs[1].prompt_tokens


def test_prompt_is_the_reference_chat_text_byte_exact(reasoner: TransformersReasoner, tiny_qwen_dir: Path) -> None:
    from transformers import AutoProcessor

    command = "The Mug on the left..."
    assert build_prompt(command).startswith("Please find 'the mug on the left' with bbox and points.Compare")
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        + build_prompt(command)
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    saved_processor = AutoProcessor.from_pretrained(str(tiny_qwen_dir))  # type: ignore[no-untyped-call]
    hand_built = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(command)}]}]
    assert user_turn(command) == hand_built
    assert saved_processor.apply_chat_template(hand_built, tokenize=False, add_generation_prompt=True) == expected
    assert render_chat_text(reasoner.processor, command) == expected

    # What the model actually receives: that text, with the image placeholder expanded, left-padded.
    inputs = prepare_batch(
        reasoner.processor, [_noise(50, 70, 5), _noise(50, 70, 6)], [command, "a much longer command"]
    )
    row = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
    decoded = reasoner.processor.tokenizer.decode(row)
    assert decoded == expected.replace("<|image_pad|>", "<|image_pad|>" * VISUAL_TOKENS)
    assert inputs["attention_mask"][0, 0] == 0  # the shorter row is padded on the left
    assert inputs["attention_mask"][0, -1] == 1


def test_generation_batches_are_left_padded_whatever_the_checkpoint_says(tiny_qwen_dir: Path) -> None:
    """Right padding (common in checkpoints) would put pad tokens between a prompt and its answer."""
    from transformers import AutoProcessor

    def right_padded() -> object:
        processor = AutoProcessor.from_pretrained(str(tiny_qwen_dir))  # type: ignore[no-untyped-call]
        processor.tokenizer.padding_side = "right"
        return processor

    images, commands = [_noise(50, 70, 5), _noise(50, 70, 6)], ["cup", "a much longer command"]
    with pytest.raises(ValueError, match="left-padding processor"):
        prepare_batch(right_padded(), images, commands)
    inputs = prepare_batch(prepare_processor_for_generation(right_padded()), images, commands)
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][0, -1] == 1
    assert TransformersReasoner(None, right_padded(), ReasonerConfig()).processor.tokenizer.padding_side == "left"


def test_single_reason_matches_its_batched_answer(reasoner: TransformersReasoner) -> None:
    image = _noise(480, 640, 7)
    single = reasoner.reason(image, "the dog")
    batched = reasoner.reason_batch([_noise(30, 900, 8), image], ["a cat", "the dog"])[1]
    assert single.objects == batched.objects
    assert single.prompt_tokens == batched.prompt_tokens


def test_truncated_generation_is_a_parse_failure_not_an_exception(tiny_qwen_dir: Path) -> None:
    short = TransformersReasoner.from_config(TransformersReasonerConfig(model=str(tiny_qwen_dir), max_new_tokens=5))
    try:
        output = short.reason(_noise(480, 640, 9), "cup")
    finally:
        short.close()
    assert output.objects is None
    assert not output.ok
    assert output.error is not None and "unparseable" in output.error
    assert output.completion_tokens == 5
    assert TINY_COMPLETION.startswith(output.raw_output)
    assert output.raw_output != TINY_COMPLETION


def test_bad_inputs_are_rejected(reasoner: TransformersReasoner) -> None:
    assert reasoner.reason_batch([], []) == []
    with pytest.raises(ValueError, match="commands"):
        reasoner.reason_batch([_noise(10, 10, 0)], ["a", "b"])
    with pytest.raises(ValueError, match="uint8"):
        reasoner.reason(np.zeros((10, 10, 3), dtype=np.float32), "a")
    with pytest.raises(ValueError, match="RGB"):
        reasoner.reason(np.zeros((10, 10), dtype=np.uint8), "a")


def _assert_helpful(error: ModelLoadError, model: str) -> None:
    message = str(error)
    assert f"'{model}'" in message
    assert "local" in message
    assert "`hf download Ricky06662/Seg-Zero-7B --local-dir DIR`" in message
    assert "--tiny" in message
    assert "reasoner.model" in message


def test_missing_local_folder_raises_model_load_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "Seg-Zero-7B")
    with pytest.raises(ModelLoadError) as caught:
        TransformersReasoner.from_config(ReasonerConfig(model=missing))
    _assert_helpful(caught.value, missing)
    assert "no such local folder" in str(caught.value)


def test_folder_that_is_not_a_model_raises_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    for model in (str(tmp_path), str(tmp_path / "notes.txt")):
        with pytest.raises(ModelLoadError) as caught:
            TransformersReasoner.from_config(ReasonerConfig(model=model))
        _assert_helpful(caught.value, model)


def test_uncached_hub_id_offline_raises_model_load_error(monkeypatch) -> None:
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if isinstance(try_to_load_from_cache(DEFAULT_REASONER_MODEL, "config.json"), str):
        pytest.skip("the real Seg-Zero-7B is in this machine's cache; loading it is not what this test is about")
    with pytest.raises(ModelLoadError) as caught:
        TransformersReasoner.from_config(ReasonerConfig(model=DEFAULT_REASONER_MODEL))
    _assert_helpful(caught.value, DEFAULT_REASONER_MODEL)
    assert "HF_HUB_OFFLINE" in str(caught.value)
    assert caught.value.__cause__ is not None


def test_backend_registry_builds_it_and_close_releases_it(tiny_qwen_dir: Path) -> None:
    from segzero_ros.backends import build_reasoner

    built = build_reasoner(ReasonerConfig(backend="transformers", model=str(tiny_qwen_dir)))
    assert isinstance(built, TransformersReasoner)
    assert built.reason(_noise(64, 64, 10), "cup").ok
    built.close()
    built.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        built.reason(_noise(64, 64, 10), "cup")


def test_vision_reasoner_format_sends_its_prompt_and_reads_lists(tiny_qwen_dir: Path) -> None:
    from segzero_ros.core.prompt import build_vision_reasoner_prompt

    config = TransformersReasonerConfig(model=str(tiny_qwen_dir), device="cpu", max_new_tokens=96,
                                        answer_format="vision_reasoner")
    listing = TransformersReasoner.from_config(config)
    try:
        command = 'All the "red" cups?'
        inputs = prepare_batch(listing.processor, [_noise(50, 70, 5)], [command], "vision_reasoner")
        decoded = listing.processor.tokenizer.decode(inputs["input_ids"][0].tolist())
        assert build_vision_reasoner_prompt(command) in decoded and "all the \"red\" cups" in decoded
        output = listing.reason(_noise(480, 640, 3), command)
    finally:
        listing.close()
    # The tiny model was trained on Seg-Zero's prompt only; whatever it makes of the unfamiliar one holds no
    # VisionReasoner list: an explicit parse error, never "not in view".
    assert output.raw_output and "bbox_2d" not in output.raw_output
    assert output.objects is None and output.error is not None and "unparseable" in output.error
    assert output.prompt_tokens > 0


def test_streaming_hands_over_the_text_as_generated_and_a_cancel_stops_it(reasoner: TransformersReasoner) -> None:
    from segzero_ros.core.progress import Progress
    from segzero_ros.errors import CanceledError

    image = _noise(480, 640, 3)
    chunks: list[str] = []
    streamed = reasoner.reason_stream(image, "the cup", Progress(on_text=chunks.append))
    assert len(chunks) > 5 and "".join(chunks) == streamed.raw_output == TINY_COMPLETION
    assert streamed.objects == reasoner.reason(image, "the cup").objects

    seen: list[str] = []
    progress = Progress(on_text=lambda chunk: (seen.append(chunk), len(seen) == 2 and progress.cancel.set()))
    with pytest.raises(CanceledError, match="canceled after"):
        reasoner.reason_stream(image, "the cup", progress)
    # The stopping criterion ends generation at the next token: far fewer chunks than a full answer.
    assert 2 <= len(seen) < len(chunks)
