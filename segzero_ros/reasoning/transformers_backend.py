"""Seg-Zero reasoning with a local Qwen2.5-VL checkpoint through Hugging Face transformers.

Reproduces the reference inference exactly (SEGZERO.md "Inference, step by step"): the image squashed to
840×840, one user turn [image, Seg-Zero prompt] under the chat template's default system prompt, greedy
decoding with the KV cache, and the answer scaled back to the original image. Several (image, command)
pairs share one left-padded `generate` call.

torch and transformers are imported inside the functions that need them, so importing this module (e.g. to
read its constants) stays cheap; the chat turn itself is `segzero_ros.reasoning.chat`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import DEFAULT_REASONER_MODEL, ReasonerConfig, TransformersReasonerConfig, widen
from segzero_ros.core.families import SEG_ZERO_FRAME
from segzero_ros.core.formats import SEG_ZERO
from segzero_ros.core.progress import Progress
from segzero_ros.devices import release_torch_memory, resolve_torch_device
from segzero_ros.errors import CanceledError, ModelLoadError
from segzero_ros.files import download_hint, hub_offline, hub_problem, looks_like_local_path
from segzero_ros.quiet import quiet_harmless_warnings
from segzero_ros.reasoning.base import BatchReasonerBase, ReasonerOutput, output_from_text, resolve_answer_frame
from segzero_ros.reasoning.chat import prepare_processor_for_generation, render_chat_text, rgb_array_to_frame


def load_fix_hint(model: str) -> str:
    """How to get `model` onto this machine, or run without it."""
    repo = model if not looks_like_local_path(model) and model.count("/") == 1 else DEFAULT_REASONER_MODEL
    return ("To fix this, pass a local model folder (`segzero infer --reasoner /path/to/model`, or the ROS node "
            f"parameter `reasoner.model`), or download the weights on a connected machine with {download_hint(repo)} "
            "and copy that folder here, or use `--tiny` for the offline smoke-test models.")


def prepare_batch(processor: Any, images: Sequence[np.ndarray], commands: Sequence[str],
                  format: str = SEG_ZERO, frame_size: int = SEG_ZERO_FRAME.frame_size,
                  *, pad_to_multiple_of: int | None = None) -> Any:
    """Processor inputs (left-padded, PyTorch tensors; all of them: Qwen3-VL's include mm_token_type_ids) for a
    batch of (image, command) pairs, prompted in the answer `format`, each image resized to the square frame.

    The processor must have gone through `prepare_processor_for_generation`.
    """
    if processor.tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a left-padding processor; call prepare_processor_for_generation")
    frames = [rgb_array_to_frame(image, frame_size) for image in images]
    texts = [render_chat_text(processor, command, format) for command in commands]
    return processor(text=texts, images=frames, padding=True, pad_to_multiple_of=pad_to_multiple_of,
                     return_tensors="pt")


STATIC_BUCKET = 64
"""Static generation pads prompts (on the left) to a multiple of this many tokens: one compiled cache shape
serves every command whose prompt falls in the same bucket."""
WARM_UP_TOKENS = 4


def quantization_config(quantization: str) -> Any:
    """transformers' TorchAoConfig for a weight-only `quantization` (None for none); ModelLoadError naming the
    package when torchao is missing."""
    if quantization == "none":
        return None
    try:
        import torchao.quantization as ao
    except ImportError as exc:
        raise ModelLoadError(f"reasoner.quantization {quantization} needs torchao: pip install "
                             "'segzero-ros[quantization]' (or set reasoner.quantization none)") from exc
    from transformers import TorchAoConfig

    if quantization == "int8":
        return TorchAoConfig(quant_type=ao.Int8WeightOnlyConfig())
    if quantization == "int4":
        return TorchAoConfig(quant_type=ao.Int4WeightOnlyConfig(group_size=128))
    raise ValueError(f"unknown reasoner quantization {quantization!r}")


def resolve_dtype(requested: str, device: str) -> Any:
    import torch

    if requested == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if requested not in dtypes:
        raise ValueError(f"unknown reasoner dtype {requested!r}; use auto, {', '.join(dtypes)}")
    return dtypes[requested]


def _load_problem(model: str, exc: BaseException | None) -> str:
    """One sentence saying why `model` could not be loaded."""
    path = Path(model).expanduser()
    if path.exists() and not path.is_dir():
        return "it is a file, not a model folder"
    if path.is_dir():
        if not (path / "config.json").is_file():
            return "the folder has no config.json, so it is not a transformers model folder"
        detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}" if exc else "unknown error"
        return f"the local folder exists but could not be loaded ({detail})"
    if looks_like_local_path(model):
        return "no such local folder"
    why = hub_problem() or "the hub refused the request"
    return f"it is not in the local Hugging Face cache and it cannot be downloaded ({why})"


def model_load_error(model: str, exc: BaseException | None = None) -> ModelLoadError:
    return ModelLoadError(f"Could not load the reasoner model '{model}': {_load_problem(model, exc)}. "
                          f"{load_fix_hint(model)}")


def _in_hub_cache(repo_id: str) -> bool:
    """The model's config is in the local Hugging Face cache (so loading it needs no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


class TransformersReasoner(BatchReasonerBase):
    """A Qwen2.5-VL (Seg-Zero) or Qwen3-VL checkpoint, answering in original-image pixels: its family (from the
    checkpoint's config.model_type unless reasoner.family says) decides the frame and the coordinates."""

    def __init__(self, model: Any, processor: Any, config: ReasonerConfig) -> None:
        self._model: Any = model
        self._processor: Any = prepare_processor_for_generation(processor)
        self._config = widen(config, TransformersReasonerConfig)
        self._eos_ids = _eos_token_ids(model, processor)
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        self.answer_frame = resolve_answer_frame(self._config, model_type)
        """The checkpoint's family (its config.model_type unless reasoner.family says), frame and coordinates."""

    @classmethod
    def from_config(cls, config: ReasonerConfig) -> TransformersReasoner:
        """Load model and processor; every load failure becomes a ModelLoadError that says how to fix it."""
        config = widen(config, TransformersReasonerConfig)
        quiet_harmless_warnings()
        device = resolve_torch_device(config.device, "reasoner")
        if config.quantization == "int4" and not device.startswith("cuda"):
            raise ModelLoadError(f"reasoner.quantization int4 needs a CUDA device (torchao's int4 weight-only "
                                 f"kernels); the reasoner runs on {device}: use int8 there, or none")
        dtype = resolve_dtype(config.dtype, device)
        path = Path(config.model).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise model_load_error(config.model)
        if not path.is_dir() and (path.exists() or looks_like_local_path(config.model)):
            raise model_load_error(config.model)
        source = str(path) if path.is_dir() else config.model
        if not path.is_dir() and not hub_offline() and not _in_hub_cache(source) and hub_problem() is not None:
            raise model_load_error(config.model)  # fail in seconds, not after minutes of hub retries
        try:
            import transformers

            hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
            processor = hf.AutoProcessor.from_pretrained(source, trust_remote_code=config.trust_remote_code)
            extra: dict[str, Any] = {}
            if config.attn_implementation is not None:
                extra["attn_implementation"] = config.attn_implementation
            quantization = quantization_config(config.quantization)
            if quantization is not None:
                extra["quantization_config"] = quantization
            model = hf.AutoModelForImageTextToText.from_pretrained(
                source, dtype=dtype, device_map=device, trust_remote_code=config.trust_remote_code, **extra
            )
            model.eval()
        except ModelLoadError:
            raise
        except Exception as exc:
            raise model_load_error(config.model, exc) from exc
        reasoner = cls(model, processor, config)
        if config.warm_up:
            reasoner.warm_up()
        return reasoner

    def warm_up(self) -> float:
        """One generation of a few tokens on a blank frame with this reasoner's own settings (cache, limits),
        so kernels are chosen — and, static on CUDA, compiled — before the first command; returns seconds."""
        import torch

        started = time.perf_counter()
        blank = np.full((self.answer_frame.frame_size, self.answer_frame.frame_size, 3), 127, dtype=np.uint8)
        inputs = self._inputs([blank], ["warm up"])
        with torch.inference_mode():
            self._model.generate(**inputs, **self._generation_options(inputs, _stop_after(
                int(inputs["input_ids"].shape[1]), WARM_UP_TOKENS)))
        return time.perf_counter() - started

    @property
    def name(self) -> str:
        return self._config.model

    @property
    def processor(self) -> Any:
        return self._processor

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        """All pairs in one greedy `generate` call; times are the batch's, shared equally among its outputs."""
        return self._generate(images, commands, None)

    def reason_stream(self, image: np.ndarray, command: str, progress: Progress) -> ReasonerOutput:
        """One greedy generation whose text reaches `progress.text` as it is decoded (transformers'
        TextStreamer) and which a stopping criterion ends at the next token once `progress.cancel` is set."""
        return self._generate([image], [command], progress)[0]

    def _generate(self, images: Sequence[np.ndarray], commands: Sequence[str], progress: Progress | None
                  ) -> list[ReasonerOutput]:
        if len(images) != len(commands):
            raise ValueError(f"{len(images)} images but {len(commands)} commands")
        if not images:
            return []
        if self._model is None:
            raise RuntimeError("reasoner is closed")
        import torch

        started = time.perf_counter()
        inputs = self._inputs(images, commands)
        sizes = [(int(image.shape[1]), int(image.shape[0])) for image in images]
        prompt_length = int(inputs["input_ids"].shape[1])
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        preprocess_s = time.perf_counter() - started

        streaming: dict[str, Any] = {}
        if progress is not None:
            if progress.canceled:
                raise CanceledError("canceled before generation started")
            streaming = {"streamer": _ProgressStreamer(self._processor.tokenizer, progress)}
        stopping = _stop_when_canceled(progress) if progress is not None else None
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = self._model.generate(**inputs, **self._generation_options(inputs, stopping), **streaming)
        generate_s = time.perf_counter() - started
        if progress is not None and progress.canceled:
            raise CanceledError(f"canceled after {sequences.shape[1] - prompt_length} generated tokens")

        new_tokens = sequences[:, prompt_length:].tolist()
        texts = self._processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        share = len(images)
        return [
            output_from_text(
                text,
                size,
                format=self._config.answer_format,
                frame=self.answer_frame,
                prompt_tokens=int(prompt),
                completion_tokens=self._completion_length(tokens),
                preprocess_s=preprocess_s / share,
                generate_s=generate_s / share,
            )
            for text, size, prompt, tokens in zip(texts, sizes, prompt_tokens, new_tokens, strict=True)
        ]

    def _inputs(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> Any:
        bucket = STATIC_BUCKET if self._config.generation == "static" else None
        return prepare_batch(self._processor, images, commands, self._config.answer_format,
                             self.answer_frame.frame_size, pad_to_multiple_of=bucket).to(self._model.device)

    def _generation_options(self, inputs: Any, stopping: Any) -> dict[str, Any]:
        """Greedy decoding with the KV cache as configured: static or not, within the reasoning budget."""
        options: dict[str, Any] = {"do_sample": False, "max_new_tokens": self._config.max_new_tokens,
                                   "use_cache": True}
        if self._config.generation == "static":
            options["cache_implementation"] = "static"
        if stopping is not None:
            options["stopping_criteria"] = stopping
        budget = self._config.max_reasoning_tokens
        if budget:  # None and 0: no budget
            from segzero_ros.reasoning.budget import reasoning_budget

            options["logits_processor"] = reasoning_budget(self._processor.tokenizer, int(inputs["input_ids"].shape[1]),
                                                           budget, int(inputs["input_ids"].shape[0]))
        return options

    def _completion_length(self, tokens: list[int]) -> int:
        """Generated tokens up to and including the first end-of-sequence token (padding after it excluded)."""
        for index, token in enumerate(tokens):
            if token in self._eos_ids:
                return index + 1
        return len(tokens)

    def close(self) -> None:
        """Drop the model and give its memory back (CUDA cache included)."""
        if self._model is None:
            return
        self._model = None
        release_torch_memory()


def _ProgressStreamer(tokenizer: Any, progress: Progress) -> Any:  # noqa: N802  # a class made on first use
    """transformers' TextStreamer, its finished text pieces handed to `progress.text` (the prompt skipped)."""
    from transformers import TextStreamer

    class ProgressStreamer(TextStreamer):  # type: ignore[misc]
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            progress.text(text)

    return ProgressStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _stop_when_canceled(progress: Progress) -> Any:
    """A StoppingCriteriaList that ends generation at the next token once the command is canceled."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CancelCriterion(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), progress.canceled, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([CancelCriterion()])


def _stop_after(prompt_length: int, tokens: int) -> Any:
    """A StoppingCriteriaList ending generation after `tokens` new tokens (warm-up: the configured
    max_new_tokens keeps the cache's shape, this keeps it short)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class AfterTokens(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = input_ids.shape[1] - prompt_length >= tokens
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([AfterTokens()])


def _eos_token_ids(model: Any, processor: Any) -> frozenset[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = processor.tokenizer.eos_token_id
    if configured is None:
        return frozenset()
    if isinstance(configured, int):
        return frozenset({configured})
    return frozenset(int(token) for token in configured)
