"""Tiny Qwen2.5-VL and Qwen3-VL reasoners built offline: the real tokenizer, processor and model classes of each
family, ~0.2 M parameters.

Weights from random init never produce the Seg-Zero answer format, so the build briefly trains the model
(teacher forcing on the real processor's chat-formatted inputs) to answer every image and command with
one fixed, well-formed completion (its recipe's `completion`, in the family's coordinates: 840-frame pixels
for Qwen2.5-VL, 0..1000 for Qwen3-VL). That lets tests and `--tiny` smoke runs exercise the whole path
generate → parse → SAM2 with a predictable answer. The answer itself means nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.core.answer import parse_answer
from segzero_ros.core.families import QWEN2_5_VL, QWEN3_VL, ModelFamily, answer_frame
from segzero_ros.core.prompt import EXAMPLE_ANSWER, build_prompt
from segzero_ros.files import build_folder_atomically
from segzero_ros.tiny import TINY_WARNING, default_cache_root

RECIPE_MARKER = "segzero_tiny_recipe.json"
"""Written last by a build; a folder without it is not a finished tiny model."""
TINY_THINK = "tiny model: fixed answer"


def fixed_completion(box: tuple[int, int, int, int], points: tuple[tuple[int, int], tuple[int, int]]) -> str:
    return (f"<think>{TINY_THINK}</think><answer>"
            '{"bbox": [%d,%d,%d,%d], "points_1": [%d,%d], "points_2": [%d,%d]}'
            "</answer>" % (*box, *points[0], *points[1]))

DEFAULT_SYSTEM_PROMPT = str(QWEN2_5_VL.system_prompt)

# Qwen2.5-VL's special tokens, in the released tokenizer's order (ids follow the BPE vocabulary here).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
END_OF_TURN = "<|im_end|>"
PADDING = "<|endoftext|>"

# Same rendering as Qwen2-VL / Qwen2.5-VL: a default system turn when none is given, images and videos as
# vision placeholders the processor expands, and an opened assistant turn on request.
_TURN = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
)
_GENERATION = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}" + _TURN + "{% endfor %}" + _GENERATION
)

# Qwen3-VL's rendering: the same turns, but no default system turn.
QWEN3_CHAT_TEMPLATE = "{% for message in messages %}" + _TURN + "{% endfor %}" + _GENERATION


@dataclass(frozen=True)
class TinyRecipe:
    """One family's tiny reasoner: what it answers and how small its pictures are."""

    family: ModelFamily
    version: str
    """Bump whenever anything changes what gets built; the cache folder name carries it."""
    box: tuple[int, int, int, int]
    """The box it always answers, in the family's coordinates (x1, y1, x2, y2)."""
    points: tuple[tuple[int, int], tuple[int, int]]
    chat_template: str
    max_pixels: int
    """Pixel budget of the processor: the frame is shrunk to it, so a few visual tokens per image."""

    @property
    def dirname(self) -> str:
        return f"tiny-{self.family.name}-r{self.version}"

    @property
    def completion(self) -> str:
        """What greedy decoding produces (special tokens skipped) for any image and command."""
        return fixed_completion(self.box, self.points)

    @property
    def min_pixels(self) -> int:
        return (2 * self.family.grid) ** 2


QWEN2_5 = TinyRecipe(QWEN2_5_VL, "2", (200, 180, 640, 700), ((380, 400), (460, 520)), CHAT_TEMPLATE, 112 * 112)
"""840×840 frame → 112×112 → 8×8 patches of 14 px → 16 visual tokens (the real model: 900)."""
QWEN3 = TinyRecipe(QWEN3_VL, "1", (240, 215, 760, 830), ((450, 475), (550, 620)), QWEN3_CHAT_TEMPLATE, 128 * 128)
"""832×832 frame → 128×128 → 8×8 patches of 16 px → 16 visual tokens (the real model: 676); answers 0..1000."""
RECIPES: dict[str, TinyRecipe] = {QWEN2_5.family.name: QWEN2_5, QWEN3.family.name: QWEN3}

RECIPE_VERSION = QWEN2_5.version
TINY_QWEN_DIRNAME = QWEN2_5.dirname
TINY_FRAME_BOX = QWEN2_5.box
"""Box the tiny Qwen2.5-VL always answers, in the 840×840 reasoning frame (x1, y1, x2, y2)."""
TINY_FRAME_POINTS = QWEN2_5.points
TINY_COMPLETION = QWEN2_5.completion
"""What the tiny Qwen2.5-VL's greedy decoding produces for any image and command."""
PATCH_SIZE, MERGE_SIZE = QWEN2_5_VL.patch_size, QWEN2_5_VL.merge_size

BPE_VOCAB_SIZE = 420
TRAIN_MAX_STEPS = 400
TRAIN_LEARNING_RATE = 5e-3
TRAIN_LOSS_TARGET = 0.01

_TRAIN_COMMANDS = (
    "the red cup",
    "Person on the left.",
    "Which object would you use to cut paper?",
    "dog",
    "the largest window in the room, next to the door",
    "Find the thing a tired person would most likely sit on after a long walk through the city.",
    "car",
    "the second bottle from the right on the kitchen shelf",
)
_CHECK_COMMANDS = ("the chair next to the table", "What can be used to keep rain off?")


def ensure_tiny_qwen(cache_root: Path | None = None, family: str = QWEN2_5.family.name) -> Path:
    """Folder with the tiny model of `family`, its processor and tokenizer (loadable by `from_pretrained`);
    built if missing.

    Builds into a private temporary folder and renames it into place, so concurrent callers never see a
    half-written model; when two build at once, the first rename wins and the other copy is discarded.
    """
    recipe = tiny_recipe(family)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / recipe.dirname
    if not _is_finished(target):
        build_folder_atomically(target, lambda folder: build_tiny_qwen(folder, recipe=recipe), _is_finished)
    return target


def tiny_recipe(family: str) -> TinyRecipe:
    if family not in RECIPES:
        raise ValueError(f"there is no tiny {family} reasoner; tiny families: {', '.join(RECIPES)}")
    return RECIPES[family]


def _is_finished(folder: Path) -> bool:
    return (folder / RECIPE_MARKER).is_file()


def build_tiny_qwen(output_dir: Path, seed: int = 0, recipe: TinyRecipe = QWEN2_5) -> None:
    """Build, warm-start, verify and save the tiny model of `recipe` into output_dir (created if needed)."""
    import torch
    import transformers

    from segzero_ros.reasoning.chat import prepare_processor_for_generation

    hf: Any = transformers  # transformers' partial annotations trip mypy --strict; use it untyped

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processor = prepare_processor_for_generation(build_tiny_processor(seed, recipe))
    tokenizer = processor.tokenizer
    model_class = (hf.Qwen3VLForConditionalGeneration if recipe.family is QWEN3_VL
                   else hf.Qwen2_5_VLForConditionalGeneration)
    with torch.random.fork_rng(devices=[]):  # seeded build that leaves the caller's random state alone
        torch.manual_seed(seed)
        model = model_class(tiny_qwen_config(tokenizer, recipe))
        model.generation_config = hf.GenerationConfig(
            eos_token_id=[tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.convert_tokens_to_ids(PADDING)],
            pad_token_id=tokenizer.convert_tokens_to_ids(PADDING),
            do_sample=False,
        )
        _warm_start(model, processor, seed, recipe)
    _verify(model, processor, seed, recipe)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    marker = {"family": recipe.family.name, "recipe_version": recipe.version, "seed": seed,
              "completion": recipe.completion, "warning": TINY_WARNING}
    (output_dir / RECIPE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def build_tiny_processor(seed: int = 0, recipe: TinyRecipe = QWEN2_5) -> Any:
    """The family's real processor (Qwen2_5_VLProcessor / Qwen3VLProcessor, image processor of its patch size)
    around a freshly trained byte-level BPE and a small pixel budget."""
    import transformers

    hf: Any = transformers  # transformers' partial annotations trip mypy --strict; use it untyped

    tokenizer = build_tiny_tokenizer(seed, recipe.chat_template)
    grid = {"size": {"shortest_edge": recipe.min_pixels, "longest_edge": recipe.max_pixels},
            "patch_size": recipe.family.patch_size, "merge_size": recipe.family.merge_size}
    if recipe.family is QWEN3_VL:  # Qwen3-VL normalises to [-1, 1] (mean = std = 0.5)
        half = [0.5, 0.5, 0.5]
        return hf.Qwen3VLProcessor(
            image_processor=hf.Qwen2VLImageProcessor(**grid, image_mean=half, image_std=half),
            video_processor=hf.Qwen3VLVideoProcessor(**grid, image_mean=half, image_std=half),
            tokenizer=tokenizer, chat_template=recipe.chat_template)
    return hf.Qwen2_5_VLProcessor(
        image_processor=hf.Qwen2VLImageProcessor(**grid),
        video_processor=hf.Qwen2VLVideoProcessor(**grid),
        tokenizer=tokenizer,
        chat_template=recipe.chat_template,
    )


def build_tiny_tokenizer(seed: int = 0, chat_template: str = CHAT_TEMPLATE) -> Any:
    """Qwen2Tokenizer over a byte-level BPE trained on Seg-Zero prompts, answers and digits."""
    import transformers
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    hf: Any = transformers  # transformers' partial annotations trip mypy --strict; use it untyped

    # Pre-tokenize exactly like Qwen2Tokenizer will, so the learned merges apply the same way there.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(seed), trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in trained["merges"]]
    first_special = len(vocab)
    for offset, token in enumerate(QWEN_SPECIAL_TOKENS):
        vocab[token] = first_special + offset
    tokenizer = hf.Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=END_OF_TURN,
        pad_token=PADDING,
        extra_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in (END_OF_TURN, PADDING)],
        model_max_length=32768,
    )
    tokenizer.chat_template = chat_template
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    if ids != list(range(first_special, first_special + len(QWEN_SPECIAL_TOKENS))):
        raise RuntimeError(f"tiny tokenizer special token ids are not where the vocabulary put them: {ids}")
    return tokenizer


def _tokenizer_corpus(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    corpus = [build_prompt(command) for command in (*_TRAIN_COMMANDS, *_CHECK_COMMANDS)]
    corpus += [recipe.completion for recipe in RECIPES.values()] * 4
    corpus += [EXAMPLE_ANSWER, DEFAULT_SYSTEM_PROMPT, "system user assistant"]
    for _ in range(16):
        box = sorted(rng.integers(0, 840, 2).tolist()) + sorted(rng.integers(0, 840, 2).tolist())
        points = rng.integers(0, 840, 4).tolist()
        corpus.append(
            f'<think>the object on the left is closest</think><answer>{{"bbox": [{box[0]},{box[2]},{box[1]},'
            f'{box[3]}], "points_1": [{points[0]},{points[1]}], "points_2": [{points[2]},{points[3]}]}}</answer>'
        )
    corpus.append(" ".join("0123456789"))
    return corpus


def tiny_qwen_config(tokenizer: Any, recipe: TinyRecipe = QWEN2_5) -> Any:
    """The family's config at toy scale; every special token id comes from `tokenizer` itself."""
    import transformers

    hf: Any = transformers  # transformers' partial annotations trip mypy --strict; use it untyped

    def token_id(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    # Two heads of 32: vLLM's CPU attention (the served-reasoner tests) needs head_dim >= 32.
    text_heads = 2
    text_hidden = 64
    head_dim = text_hidden // text_heads
    mrope_section = [4, 6, 6]  # temporal, height, width rotary slices (Qwen's 1:1.5:1.5); sum = head_dim / 2
    if sum(mrope_section) * 2 != head_dim:
        raise AssertionError("mrope_section must sum to head_dim / 2")
    tokens = {"image_token_id": token_id("<|image_pad|>"), "video_token_id": token_id("<|video_pad|>"),
              "vision_start_token_id": token_id("<|vision_start|>"), "vision_end_token_id": token_id("<|vision_end|>")}
    if recipe.family is QWEN3_VL:
        return hf.Qwen3VLConfig(
            text_config={
                "vocab_size": len(tokenizer), "hidden_size": text_hidden, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": text_heads, "num_key_value_heads": 2,
                "head_dim": head_dim, "max_position_embeddings": 4096,
                # interleaved multimodal rotary encoding, as the released checkpoints
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section,
                                    "mrope_interleaved": True},
                "eos_token_id": token_id(END_OF_TURN), "pad_token_id": token_id(PADDING),
                "tie_word_embeddings": True,
            },
            vision_config={
                "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                "patch_size": recipe.family.patch_size, "spatial_merge_size": recipe.family.merge_size,
                "temporal_patch_size": 2, "out_hidden_size": text_hidden,
                "num_position_embeddings": 64,  # a learned 8×8 position grid, interpolated to the image's
                "deepstack_visual_indexes": [0],  # a layer whose features also feed the language model
            },
            tie_word_embeddings=True, **tokens)
    return hf.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": text_heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            "bos_token_id": None,
            "eos_token_id": token_id(END_OF_TURN),
            "pad_token_id": token_id(PADDING),
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            "window_size": 112,
            "out_hidden_size": text_hidden,
            "fullatt_block_indexes": [1],
        },
        tie_word_embeddings=True,
        **tokens,
    )


def _sample_images(rng: np.random.Generator) -> list[np.ndarray]:
    """Noise, flat colour and a gradient at assorted sizes: the answer must not depend on the picture."""
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    flat = np.full((300, 300, 3), (200, 30, 30), dtype=np.uint8)
    ramp = np.linspace(0, 255, 333, dtype=np.float64).astype(np.uint8)
    gradient = np.stack([np.tile(ramp, (517, 1))] * 3, axis=-1)
    small_noise = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return [noise, flat, gradient, small_noise]


def _warm_start(model: Any, processor: Any, seed: int, recipe: TinyRecipe) -> None:
    """Teacher-force the recipe's completion after the chat-formatted Seg-Zero prompt until greedy would
    reproduce it."""
    import torch

    from segzero_ros.reasoning.chat import render_chat_text, rgb_array_to_frame

    images = _sample_images(np.random.default_rng(seed))
    pairs = [(images[i % len(images)], command) for i, command in enumerate(_TRAIN_COMMANDS)]
    target = recipe.completion + END_OF_TURN
    # Left padding (set by the build) puts every row's target at the end, where the labels slice it.
    batch = processor(
        text=[render_chat_text(processor, command) + target for _, command in pairs],
        images=[rgb_array_to_frame(image, recipe.family.frame_size) for image, _ in pairs],
        padding=True,
        return_tensors="pt",
    )
    target_length = len(processor.tokenizer(target)["input_ids"])
    target_ids = batch["input_ids"][:, -target_length:]
    decoded = processor.tokenizer.decode(target_ids[0].tolist())
    if decoded != target:
        raise RuntimeError(f"completion does not tokenize on its own boundary: {decoded!r}")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -target_length:] = target_ids

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LEARNING_RATE, weight_decay=0.0)
    for _ in range(TRAIN_MAX_STEPS):
        output = model(**batch, labels=labels)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        # Logits at position t predict token t + 1: compare the predictions for the target span.
        predicted = output.logits[:, -target_length - 1 : -1].argmax(dim=-1)
        if output.loss.item() < TRAIN_LOSS_TARGET and bool((predicted == target_ids).all()):
            break
    model.eval()


def _verify(model: Any, processor: Any, seed: int, recipe: TinyRecipe) -> None:
    """Greedy generation on unseen commands and image sizes must give exactly the recipe's completion."""
    import torch

    from segzero_ros.reasoning.transformers_backend import prepare_batch

    rng = np.random.default_rng(seed + 1)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(0, 256, (517, 333, 3), dtype=np.uint8)]
    inputs = prepare_batch(processor, images, list(_CHECK_COMMANDS), frame_size=recipe.family.frame_size)
    with torch.inference_mode():
        sequences = model.generate(**inputs, do_sample=False, max_new_tokens=96, use_cache=True)
    texts = processor.tokenizer.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    for text, image in zip(texts, images, strict=True):
        # parse_answer raises AnswerParseError when malformed
        answer = parse_answer(text, (image.shape[1], image.shape[0]), answer_frame(recipe.family).extent)
        if text != recipe.completion or answer.frame_box.as_list() != list(recipe.box):
            raise RuntimeError(f"tiny {recipe.family.name} warm start failed: greedy output {text!r}")
