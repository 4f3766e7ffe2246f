"""The openai reasoner backend against a REAL `transformers serve` on 127.0.0.1 serving the tiny Qwen2.5-VL:
same boxes, points and reasoning as the in-process backend, streaming included. Faults the real server
cannot be made to produce on cue (5xx, 4xx, garbage, a stalled or cut stream) come from a small stub server
(tests/servers/openai_stub.py); a killed server and a closed port are real."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")
pytest.importorskip("fastapi")

from segzero_ros.backends import build_pipeline, build_reasoner
from segzero_ros.config import OpenAIReasonerConfig, PipelineConfig, TransformersReasonerConfig
from segzero_ros.core.families import AnswerFrame
from segzero_ros.core.progress import Progress
from segzero_ros.core.result import ErrorKind
from segzero_ros.errors import CanceledError, ModelLoadError, ReasonerTimeoutError
from segzero_ros.pipeline import SegZeroPipeline
from segzero_ros.reasoning.openai_backend import (
    OpenAIReasoner,
    ReasonerServerError,
    chat_messages,
    joined_output,
    read_api_key,
)
from segzero_ros.reasoning.transformers_backend import TransformersReasoner
from segzero_ros.segmentation.box import BoxSegmenter
from segzero_ros.testing.servers import LocalServer, free_port, transformers_serve

pytestmark = pytest.mark.slow

FRAMES = [(480, 640, 3), (517, 333, 4), (840, 840, 5)]
COMMANDS = ["the cup", "The red mug on the left.", "something to cut bread with"]


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def server(tiny_qwen_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "transformers_serve.log"
    with transformers_serve(tiny_qwen_dir, log) as running:
        yield running


@pytest.fixture(scope="module")
def local(tiny_qwen_dir):
    reasoner = TransformersReasoner.from_config(
        TransformersReasonerConfig(model=str(tiny_qwen_dir), device="cpu", max_new_tokens=96))
    yield reasoner
    reasoner.close()


@pytest.fixture
def remote(server):
    reasoner = OpenAIReasoner(server.base_url, timeout_s=60, max_new_tokens=96)
    yield reasoner
    reasoner.close()


def stub(tmp_path: Path, mode: str) -> LocalServer:
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    return LocalServer([sys.executable, "-m", "tests.servers.openai_stub", str(port), mode, str(tmp_path / "requests.jsonl")],
                       port, log_path=tmp_path / f"stub_{mode}.log", env={"PYTHONPATH": str(root)})


def requests_seen(tmp_path: Path) -> list[dict]:
    path = tmp_path / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_messages_are_the_local_chat_turn_with_a_png_of_the_840_frame(local) -> None:
    import base64
    import io

    from PIL import Image

    from segzero_ros.core.prompt import build_prompt
    from segzero_ros.reasoning.chat import rgb_array_to_frame

    image = noise(480, 640, 1)
    system, user = chat_messages(image, "The cup.")
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    picture, text = user["content"]
    assert text == {"type": "text", "text": build_prompt("The cup.")}
    header, payload = picture["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))
    np.testing.assert_array_equal(decoded, np.asarray(rgb_array_to_frame(image)))  # lossless, 840×840
    # An explicit default system turn renders exactly what the local backend sends without one.
    processor = local.processor
    explicit = processor.apply_chat_template(
        [system, {"role": "user", "content": [{"type": "image"}, text]}], tokenize=False, add_generation_prompt=True)
    from segzero_ros.reasoning.chat import render_chat_text

    assert explicit == render_chat_text(processor, "The cup.")


def test_joined_output_puts_split_reasoning_back() -> None:
    assert joined_output("seen it", '<answer>{"bbox": []}</answer>') == '<think>seen it</think><answer>{"bbox": []}</answer>'
    assert joined_output(None, "<think>a</think><answer>b</answer>") == "<think>a</think><answer>b</answer>"
    assert joined_output("dup", "<think>a</think>x") == "<think>a</think>x"


def test_same_answers_as_the_in_process_backend(remote, local) -> None:
    images = [noise(h, w, seed) for h, w, seed in FRAMES]
    expected = local.reason_batch(images, COMMANDS)
    served = remote.reason_batch(images, COMMANDS)  # three concurrent requests
    for mine, theirs in zip(served, expected, strict=True):
        assert mine.ok and mine.objects == theirs.objects
        assert mine.reasoning == theirs.reasoning
        assert mine.raw_output == theirs.raw_output  # the tiny model's text has no whitespace to strip
        assert mine.prompt_tokens == theirs.prompt_tokens and mine.completion_tokens > 0
    assert remote.name == str(Path(remote.name))  # resolved from /v1/models: the served folder


def test_streaming_gives_the_chunks_of_the_same_answer(remote, local) -> None:
    image = noise(480, 640, 3)
    chunks: list[str] = []
    streamed = remote.reason_stream(image, "the cup", Progress(on_text=chunks.append))
    expected = local.reason(image, "the cup")
    assert len(chunks) > 10 and "".join(chunks) == streamed.raw_output == expected.raw_output
    assert streamed.objects == expected.objects and streamed.prompt_tokens == expected.prompt_tokens


def test_pipeline_through_the_registry_matches_the_local_pipeline(server, tiny_qwen_dir) -> None:
    from segzero_ros.config import ReasonerConfig, SegmenterConfig

    image = noise(480, 640, 7)
    served = build_pipeline(PipelineConfig(
        reasoner=ReasonerConfig(backend="openai", model=""), segmenter=SegmenterConfig(backend="box")))
    assert isinstance(served.reasoner, OpenAIReasoner)
    served.close()
    remote = SegZeroPipeline(OpenAIReasoner(server.base_url, max_new_tokens=96), BoxSegmenter())
    local = SegZeroPipeline(TransformersReasoner.from_config(TransformersReasonerConfig(
        model=str(tiny_qwen_dir), device="cpu", max_new_tokens=96)), BoxSegmenter())
    try:
        a, b = remote.run(image, "the cup"), local.run(image, "the cup")
    finally:
        remote.close()
        local.close()
    assert a.ok and b.ok and a.box == b.box and a.points == b.points
    np.testing.assert_array_equal(a.mask, b.mask)


def test_a_killed_server_is_an_error_result_and_a_restarted_one_answers_again(tiny_qwen_dir, tmp_path) -> None:
    port = free_port()
    first = transformers_serve(tiny_qwen_dir, tmp_path / "a.log", port=port).start()
    reasoner = OpenAIReasoner(first.base_url, max_new_tokens=96, max_retries=0, timeout_s=20)
    pipeline = SegZeroPipeline(reasoner, BoxSegmenter())
    try:
        assert pipeline.run(noise(48, 64, 1), "cup").ok
        first.kill()
        down = pipeline.run(noise(48, 64, 1), "cup")
        assert down.error_kind is ErrorKind.REASONER_FAILED
        assert f"cannot reach the reasoner server at {first.base_url}" in (down.error or "")
        second = transformers_serve(tiny_qwen_dir, tmp_path / "b.log", port=port).start()
        try:
            assert pipeline.run(noise(48, 64, 1), "cup").ok
        finally:
            second.stop()
    finally:
        first.stop()
        pipeline.close()


def test_closed_port_fails_fast_after_bounded_retries() -> None:
    reasoner = OpenAIReasoner(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=2, timeout_s=10)
    started = time.monotonic()
    with pytest.raises(ReasonerServerError, match="Connection refused"):
        reasoner.reason(noise(48, 64, 1), "cup")
    elapsed = time.monotonic() - started
    reasoner.close()
    assert 1.4 <= elapsed < 5.0  # two retries after 0.5 s and 1 s of backoff, then the error


def test_5xx_is_retried_4xx_is_not_and_the_server_words_are_kept(tmp_path) -> None:
    with stub(tmp_path, "error_500") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", max_retries=2, timeout_s=20)
        with pytest.raises(ReasonerServerError, match="500: the GPU is on fire"):
            reasoner.reason(noise(48, 64, 1), "cup")
        assert sum(r.get("method") == "POST" for r in requests_seen(tmp_path)) == 3
        reasoner.close()
    (tmp_path / "requests.jsonl").unlink()
    with stub(tmp_path, "error_400") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", max_retries=2, timeout_s=20)
        result = SegZeroPipeline(reasoner, BoxSegmenter()).run(noise(48, 64, 1), "cup")
        assert result.error_kind is ErrorKind.REASONER_FAILED
        assert "answered 400: max_tokens is too large" in (result.error or "")
        assert sum(r.get("method") == "POST" for r in requests_seen(tmp_path)) == 1


def test_garbage_and_truncated_streams_are_explicit_errors(tmp_path) -> None:
    with stub(tmp_path, "garbage") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", max_retries=0, timeout_s=20)
        result = SegZeroPipeline(reasoner, BoxSegmenter()).run(noise(48, 64, 1), "cup")
        assert result.error_kind is ErrorKind.REASONER_FAILED and result.error
    with stub(tmp_path, "truncated") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", max_retries=0, timeout_s=20)
        chunks: list[str] = []
        with pytest.raises(ReasonerServerError, match=r"truncated|broke off"):
            reasoner.reason_stream(noise(48, 64, 1), "cup", Progress(on_text=chunks.append))
        assert chunks  # what had arrived was streamed on


def test_a_slow_server_times_out_within_the_budget(tmp_path) -> None:
    with stub(tmp_path, "slow") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", max_retries=2, timeout_s=1.5)
        started = time.monotonic()
        with pytest.raises(ReasonerTimeoutError, match=r"within 1\.5 s"):
            reasoner.reason(noise(48, 64, 1), "cup")
        assert time.monotonic() - started < 3.0
        result = SegZeroPipeline(reasoner, BoxSegmenter()).run(noise(48, 64, 1), "cup")
        assert result.error_kind is ErrorKind.TIMEOUT
        streamed_started = time.monotonic()
        with pytest.raises(ReasonerTimeoutError):
            reasoner.reason_stream(noise(48, 64, 1), "cup", Progress())
        assert time.monotonic() - streamed_started < 3.0


def test_cancel_closes_the_stream_mid_reasoning(tmp_path) -> None:
    with stub(tmp_path, "slow_stream") as server:
        reasoner = OpenAIReasoner(server.base_url, "stub", timeout_s=30)
        chunks: list[str] = []
        progress = Progress(on_text=chunks.append)
        threading.Timer(0.5, progress.cancel.set).start()
        started = time.monotonic()
        with pytest.raises(CanceledError):
            reasoner.reason_stream(noise(48, 64, 1), "cup", progress)
        assert time.monotonic() - started < 1.5 and 0 < len(chunks) < 8
        result = SegZeroPipeline(reasoner, BoxSegmenter()).run(noise(48, 64, 1), "cup", Progress(
            cancel=_set_event()))
        assert result.error_kind is ErrorKind.CANCELED
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(r.get("closed_by_client") for r in requests_seen(tmp_path)):
            time.sleep(0.1)
        assert any(r.get("closed_by_client") for r in requests_seen(tmp_path))  # the server saw the hang-up


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def test_api_key_comes_from_the_environment_or_a_file_and_is_never_shown(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROBOT_FLEET_KEY", "sk-secret-123")
    config = OpenAIReasonerConfig(base_url="http://127.0.0.1:9/v1", api_key_env="ROBOT_FLEET_KEY")
    assert read_api_key(config) == "sk-secret-123"
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    assert read_api_key(OpenAIReasonerConfig(api_key_file=str(key_file))) == "sk-from-file"
    with pytest.raises(ModelLoadError, match="cannot read the API key file"):
        read_api_key(OpenAIReasonerConfig(api_key_file=str(tmp_path / "missing")))
    with stub(tmp_path, "ok") as server:
        reasoner = build_reasoner(OpenAIReasonerConfig(base_url=server.base_url, model="stub",
                                                       api_key_env="ROBOT_FLEET_KEY"))
        output = reasoner.reason(noise(48, 64, 1), "cup")
        assert output.ok and "sk-secret" not in reasoner.name and "sk-secret" not in repr(config)
        reasoner.close()
    assert {r["authorization"] for r in requests_seen(tmp_path) if r.get("method") == "POST"} == {
        "Bearer sk-secret-123"}


def test_cli_infer_with_a_served_reasoner(server, tmp_path, capsys) -> None:
    from PIL import Image

    from segzero_ros.cli import main

    image = tmp_path / "frame.png"
    Image.fromarray(noise(480, 640, 9)).save(image)
    code = main(["infer", "--image", str(image), "--command", "the cup", "--reasoner-backend", "openai",
                 "--reasoner-url", server.base_url, "--reasoner", "", "--segmenter", "box", "--max-new-tokens", "96",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / "frame_result.json").read_text())
    assert result["ok"] and result["box"] == [152, 103, 488, 400] and result["reasoner"].endswith("r2")


@pytest.mark.slow
def test_a_served_qwen3_vl_answers_like_the_in_process_one(tiny_qwen3_dir, tmp_path) -> None:
    """A real `transformers serve` of the tiny Qwen3-VL with reasoner.family qwen3_vl: the 832² frame, no system
    turn, relative coordinates, and the same objects as the in-process backend."""
    image = noise(720, 1280, 11)
    messages = chat_messages(image, "the cup", frame=AnswerFrame("qwen3_vl", 832, "relative_1000"))
    assert [message["role"] for message in messages] == ["user"]  # Qwen3-VL's template adds no system turn
    local = build_reasoner(TransformersReasonerConfig(model=str(tiny_qwen3_dir), device="cpu", max_new_tokens=96))
    with transformers_serve(tiny_qwen3_dir, tmp_path / "serve.log") as server:
        remote = build_reasoner(OpenAIReasonerConfig(base_url=server.base_url, family="qwen3_vl", max_new_tokens=96))
        try:
            served, expected = remote.reason(image, "the cup"), local.reason(image, "the cup")
        finally:
            remote.close()
            local.close()
    assert remote.answer_frame == local.answer_frame and remote.answer_frame.extent == 1000
    assert served.ok and served.objects == expected.objects and served.raw_output == expected.raw_output
    assert served.prompt_tokens == expected.prompt_tokens
