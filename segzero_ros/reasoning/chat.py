"""The chat turn Seg-Zero (or VisionReasoner) sends, in one place for inference (the transformers backend, the
served backend, the tiny model build) and training (TRL's prompts, the prompt-length check). No transformers
import: it works on any processor object with `apply_chat_template` and a tokenizer. The family's chat template
(the checkpoint's own) decides the system turn; the frame its image is resized to comes from the reasoner's
AnswerFrame (`segzero_ros.core.families`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from segzero_ros.core.families import ModelFamily
from segzero_ros.core.formats import SEG_ZERO, answer_format
from segzero_ros.core.geometry import REASONING_FRAME_SIZE, resize_to_reasoning_frame


def user_turn(command: str, format: str = SEG_ZERO) -> list[dict[str, Any]]:
    """The single user turn the reference sends: the image first, then the prompt text of the answer format.

    No system message: the checkpoint's chat template adds its family's default, if any (Qwen2.5-VL:
    "You are a helpful assistant."; Qwen3-VL: none).
    """
    text = answer_format(format).build_prompt(command)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def trl_prompt(command: str, format: str = SEG_ZERO) -> list[dict[str, Any]]:
    """The same turn as TRL's conversational datasets take it: text only, TRL puts the row's image in front
    (``prepare_multimodal_messages``), which gives :func:`user_turn` exactly."""
    return [{"role": "user", "content": answer_format(format).build_prompt(command)}]


def render_chat_text(processor: Any, command: str, format: str = SEG_ZERO) -> str:
    """Chat-formatted text (with the image placeholder and the assistant turn opened) for one command."""
    text = processor.apply_chat_template(user_turn(command, format), tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text


def prepare_processor_for_generation(processor: Any) -> Any:
    """Make the processor pad on the left, the one side batched generation works with; returns it.

    `generate` appends every row's new tokens after the last position of the padded batch, so padding
    must sit before each prompt: right padding would put pad tokens between a shorter prompt and its
    answer. A checkpoint's tokenizer may pad on the right (a common training default), so every loader of
    a processor that generates (the reasoner, the tiny model build, GRPO training) calls this once.
    """
    processor.tokenizer.padding_side = "left"
    return processor


def chat_with_image(image_part: dict[str, Any], command: str, format: str, model_family: ModelFamily
                    ) -> list[dict[str, Any]]:
    """The whole conversation as a server renders it with the family's template: the family's default system
    turn written out (a server may not add it), then the user turn with `image_part` first."""
    text = answer_format(format).build_prompt(command)
    system = [{"role": "system", "content": model_family.system_prompt}] if model_family.system_prompt else []
    return [*system, {"role": "user", "content": [image_part, {"type": "text", "text": text}]}]


def rgb_array_to_frame(image: np.ndarray, frame_size: int = REASONING_FRAME_SIZE) -> Any:
    """H×W×3 uint8 RGB → the square PIL image the reasoner sees (Seg-Zero: 840×840, bilinear, squashed)."""
    from PIL import Image

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"reasoner needs an H×W×3 uint8 RGB array, got shape {shape} dtype {dtype}")
    return resize_to_reasoning_frame(Image.fromarray(image, mode="RGB"), frame_size)
