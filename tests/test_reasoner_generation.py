"""Robot-side generation paths of the transformers reasoner on the tiny Qwen2.5-VL and Qwen3-VL: the static cache
gives the eager path's greedy tokens (streaming and cancel included), warm-up, int8 weights, and the reasoning
budget. Speed is a benchmark's business (benchmarks/gpu_suite.py), not these tests'."""

from pathlib import Path

import numpy as np
import pytest

from segzero_ros.config import TransformersReasonerConfig
from segzero_ros.core.progress import Progress
from segzero_ros.errors import CanceledError
from segzero_ros.reasoning.transformers_backend import TransformersReasoner

pytestmark = pytest.mark.slow

COMMANDS = ["the red mug", "a much longer command: the thing on the left that I could cut bread with"]


def _noise(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((480, 640, 3)) * 255).astype(np.uint8)


def _load(folder: Path, **options) -> TransformersReasoner:
    return TransformersReasoner.from_config(TransformersReasonerConfig(model=str(folder), device="cpu", **options))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_static_generation_gives_the_eager_tokens(family, tiny_qwen_dir, tiny_qwen3_dir):
    folder = tiny_qwen_dir if family == "qwen2_5_vl" else tiny_qwen3_dir
    eager, static = _load(folder, warm_up=False), _load(folder, generation="static")
    try:
        images = [_noise(1), _noise(2)]
        first, second = eager.reason_batch(images, COMMANDS), static.reason_batch(images, COMMANDS)
        assert [o.raw_output for o in first] == [o.raw_output for o in second]
        assert [o.completion_tokens for o in first] == [o.completion_tokens for o in second]
        assert [o.objects for o in first] == [o.objects for o in second]
        # Static prompts are padded to 64-token buckets; the answers do not see the padding.
        assert [o.prompt_tokens for o in first] == [o.prompt_tokens for o in second]
    finally:
        eager.close()
        static.close()


def test_static_generation_streams_and_cancels(tiny_qwen_dir):
    reasoner = _load(tiny_qwen_dir, generation="static")
    try:
        chunks: list[str] = []
        streamed = reasoner.reason_stream(_noise(3), "the cup", Progress(on_text=chunks.append))
        assert len(chunks) > 5 and "".join(chunks) == streamed.raw_output
        seen: list[str] = []
        progress = Progress(on_text=lambda chunk: (seen.append(chunk), len(seen) == 2 and progress.cancel.set()))
        with pytest.raises(CanceledError, match="canceled after"):
            reasoner.reason_stream(_noise(3), "the cup", progress)
        assert 2 <= len(seen) < len(chunks)
    finally:
        reasoner.close()


def test_warm_up_generates_with_the_reasoners_own_settings(tiny_qwen_dir):
    reasoner = _load(tiny_qwen_dir, warm_up=False, generation="static")
    try:
        assert reasoner.warm_up() > 0.0
        assert reasoner.reason(_noise(4), "the cup").ok
    finally:
        reasoner.close()


def test_int8_weights_load_and_answer(tiny_qwen_dir):
    pytest.importorskip("torchao")
    plain, quantized = _load(tiny_qwen_dir, warm_up=False), _load(tiny_qwen_dir, quantization="int8")
    try:
        from torchao.utils import TorchAOBaseTensor

        weights = [module.weight for name, module in quantized._model.named_modules()
                   if name.endswith("q_proj") and hasattr(module, "weight")]
        assert weights and all(isinstance(weight, TorchAOBaseTensor) for weight in weights)
        answer = quantized.reason(_noise(5), "the cup")
        assert answer.ok, answer.error
        # Weight-only int8 of this tiny model keeps its greedy answer.
        assert answer.raw_output == plain.reason(_noise(5), "the cup").raw_output
    finally:
        plain.close()
        quantized.close()


@pytest.mark.parametrize("budget", [3, 12])
def test_a_reasoning_budget_closes_the_reasoning_in_time(tiny_qwen_dir, budget):
    reasoner = _load(tiny_qwen_dir, warm_up=False, max_reasoning_tokens=budget)
    try:
        tokenizer = reasoner.processor.tokenizer
        outputs = reasoner.reason_batch([_noise(6), _noise(7)], COMMANDS)
        for output in outputs:
            text = output.raw_output
            assert "</think>" in text
            reasoning = text.split("</think>")[0] + "</think>"
            assert len(tokenizer(reasoning, add_special_tokens=False)["input_ids"]) <= budget + 3
            # The answer that follows is parsed, or the command fails explicitly — never a silent wrong parse.
            assert output.ok or output.error
    finally:
        reasoner.close()


def test_a_budget_larger_than_the_reasoning_changes_nothing(tiny_qwen_dir):
    plain, budgeted = _load(tiny_qwen_dir, warm_up=False), _load(tiny_qwen_dir, warm_up=False,
                                                                  max_reasoning_tokens=500)
    try:
        assert budgeted.reason(_noise(8), "the cup").raw_output == plain.reason(_noise(8), "the cup").raw_output
    finally:
        plain.close()
        budgeted.close()


def test_int4_on_a_cpu_is_refused_with_the_reason(tiny_qwen_dir):
    from segzero_ros.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"int4 needs a CUDA device.*use int8"):
        _load(tiny_qwen_dir, quantization="int4")
