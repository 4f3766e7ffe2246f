"""The reasoner as a service: Seg-Zero / VisionReasoner behind an OpenAI-compatible chat-completions server.

A 7B reasoner does not fit every robot, and a fleet should share one GPU server. vLLM, SGLang and
`transformers serve` all speak the OpenAI API, so the robot keeps SAM2 on board and sends only what the
model reads: the frame squashed to 840×840 exactly as the local backend does it (PNG, lossless: a JPEG or
an unsquashed frame gives the model different pixels, hence different tokens), the same prompt and the same
system turn, greedy decoding. Servers that split the reasoning off (`reasoning_content`) get it re-joined
into ``<think>…</think>`` so the raw output parses as it would locally.

Bounded in time: connect and read limits per attempt and one budget (`timeout_s`) for the whole command,
retries included; retries with backoff only after connection errors and 5xx answers. Every failure raises
an exception whose message carries the server's words; the pipeline turns it into `reasoner_failed` (or
`timeout`). The API key comes from an environment variable or a file named in the config, never from a
parameter value, and is never logged.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from segzero_ros.config import OpenAIReasonerConfig, ReasonerConfig, widen
from segzero_ros.core.families import SEG_ZERO_FRAME, AnswerFrame, family
from segzero_ros.core.formats import SEG_ZERO
from segzero_ros.core.progress import Progress
from segzero_ros.errors import (
    BackendUnavailableError,
    CanceledError,
    ModelLoadError,
    ReasonerTimeoutError,
    SegZeroError,
)
from segzero_ros.reasoning.base import BatchReasonerBase, ReasonerOutput, output_from_text, resolve_answer_frame
from segzero_ros.reasoning.chat import chat_with_image, rgb_array_to_frame

LOG = logging.getLogger(__name__)

NO_KEY = "EMPTY"
"""Sent when no key is configured: local servers accept any key, and the client library requires one."""
BACKOFF_S = 0.5
"""First retry delay; doubled per retry, never past the command's remaining budget."""
CANCEL_POLL_S = 0.05


class ReasonerServerError(SegZeroError):
    """The server refused, failed, or broke off; the message carries its words."""


def frame_data_url(image: np.ndarray, frame_size: int = SEG_ZERO_FRAME.frame_size) -> str:
    """The frame the local backend feeds the model (Seg-Zero: 840×840), as a lossless PNG data URL."""
    buffer = io.BytesIO()
    rgb_array_to_frame(image, frame_size).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(image: np.ndarray, command: str, format: str = SEG_ZERO, frame: AnswerFrame = SEG_ZERO_FRAME
                  ) -> list[dict[str, Any]]:
    """The family's system turn (if it has one) + one user turn (image first, then the prompt), as the local
    chat template renders them."""
    image_part = {"type": "image_url", "image_url": {"url": frame_data_url(image, frame.frame_size)}}
    return chat_with_image(image_part, command, format, family(frame.family))


def joined_output(reasoning: str | None, content: str | None) -> str:
    """The raw model text from a server's answer: ``reasoning_content`` (when the server split it off) back
    inside ``<think>…</think>`` before ``content``."""
    content = content or ""
    if reasoning and "<think>" not in content:
        return f"<think>{reasoning}</think>{content}"
    return content


def read_api_key(config: OpenAIReasonerConfig) -> str | None:
    """The key from `api_key_file` (first line) or the `api_key_env` variable; None when neither is set."""
    if config.api_key_file:
        path = Path(config.api_key_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ModelLoadError(f"openai reasoner: cannot read the API key file {path}: {exc.strerror}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ModelLoadError(f"openai reasoner: the API key file {path} is empty")
        return key
    value = os.environ.get(config.api_key_env, "").strip() if config.api_key_env else ""
    return value or None


class OpenAIReasoner(BatchReasonerBase):
    """A reasoner on an OpenAI-compatible server (vLLM, SGLang, transformers serve)."""

    def __init__(
        self,
        base_url: str,
        model: str = "",
        api_key: str | None = None,
        timeout_s: float = 60.0,
        *,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        max_new_tokens: int = 1024,
        concurrency: int = 4,
        answer_format: str = SEG_ZERO,
        verify_tls: bool = True,
        ca_file: str | None = None,
        frame: AnswerFrame = SEG_ZERO_FRAME,
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise BackendUnavailableError(
                "the openai reasoner needs the openai package: pip install 'segzero_ros[serve]'") from exc
        self._openai: Any = openai
        self._base_url = base_url.rstrip("/")
        self._model = model
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_retries = max_retries
        self._max_new_tokens = max_new_tokens
        self._format = answer_format
        self.answer_frame = frame
        """The served model's frame and coordinates (reasoner.family, or Seg-Zero's: a server hides its
        checkpoint)."""
        verify: bool | str = ca_file if (verify_tls and ca_file) else verify_tls
        self._client: Any = openai.OpenAI(
            base_url=self._base_url, api_key=api_key or NO_KEY, max_retries=0,
            timeout=openai.Timeout(timeout_s, connect=connect_timeout_s),
            http_client=openai.DefaultHttpxClient(verify=verify),
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="segzero-openai")
        self._model_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ReasonerConfig) -> OpenAIReasoner:
        config = widen(config, OpenAIReasonerConfig)
        reasoner = cls(
            config.base_url, config.model or "", read_api_key(config), config.timeout_s,
            connect_timeout_s=config.connect_timeout_s, max_retries=config.max_retries,
            max_new_tokens=config.max_new_tokens, concurrency=config.concurrency,
            answer_format=config.answer_format, verify_tls=config.verify_tls, ca_file=config.ca_file,
            frame=resolve_answer_frame(config),
        )
        if config.server_wait_s > 0:
            try:
                reasoner.wait_for_server(config.server_wait_s)
            except BaseException:
                reasoner.close()
                raise
        return reasoner

    def wait_for_server(self, timeout_s: float, poll_s: float = 0.5) -> float:
        """Block until the server lists its models (a server starting beside the node: `ros2 launch` with
        reasoner_server); ModelLoadError after `timeout_s`. Returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout_s
        problem = "no answer"
        while True:
            try:
                self._client.models.list(timeout=min(self._connect_timeout_s + 5.0, max(timeout_s, 0.1)))
                return time.monotonic() - started
            except self._openai.APIError as exc:
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            if time.monotonic() + poll_s > deadline:
                raise ModelLoadError(f"the reasoner server at {self._base_url} did not answer within "
                                     f"{timeout_s:g} s (last: {problem}); is it starting (see its log), or is "
                                     "reasoner.base_url wrong?")
            time.sleep(poll_s)

    @property
    def name(self) -> str:
        return self._model or f"openai:{self._base_url}"

    @property
    def base_url(self) -> str:
        return self._base_url

    def reason_batch(self, images: Sequence[np.ndarray], commands: Sequence[str]) -> list[ReasonerOutput]:
        """One request per pair, up to `concurrency` at a time (servers batch concurrent requests)."""
        if len(images) != len(commands):
            raise ValueError(f"{len(images)} images but {len(commands)} commands")
        futures = [self._pool.submit(self._answer, image, command, None)
                   for image, command in zip(images, commands, strict=True)]
        return [future.result() for future in futures]

    def reason_stream(self, image: np.ndarray, command: str, progress: Progress) -> ReasonerOutput:
        """One streamed request: text reaches `progress.text` as the server sends it; a cancel closes the
        stream (the server stops generating) and raises CanceledError."""
        return self._answer(image, command, progress)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ------------------------------------------------------------------ one command

    def _answer(self, image: np.ndarray, command: str, progress: Progress | None) -> ReasonerOutput:
        started = time.perf_counter()
        deadline = time.monotonic() + self._timeout_s
        messages = chat_messages(image, command, self._format, self.answer_frame)
        size = (int(image.shape[1]), int(image.shape[0]))
        preprocess_s = time.perf_counter() - started
        text, prompt_tokens, completion_tokens = self._with_retries(
            lambda: self._stream(messages, deadline, progress) if progress is not None
            else self._complete(messages, deadline), deadline, progress)
        return output_from_text(text, size, format=self._format, frame=self.answer_frame, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens, preprocess_s=preprocess_s,
                                generate_s=time.perf_counter() - started - preprocess_s)

    def _with_retries(self, attempt: Callable[[], tuple[str, int, int]], deadline: float,
                      progress: Progress | None) -> tuple[str, int, int]:
        openai = self._openai
        delay = BACKOFF_S
        for tries_left in range(self._max_retries, -1, -1):
            try:
                return attempt()
            except openai.APITimeoutError:
                raise ReasonerTimeoutError(
                    f"the reasoner server at {self._base_url} did not answer within {self._timeout_s:g} s") from None
            except (openai.APIConnectionError, _RetryableError) as exc:
                failure = ReasonerServerError(f"cannot reach the reasoner server at {self._base_url}: "
                                              f"{_describe(exc)}")
            except openai.APIStatusError as exc:
                failure = ReasonerServerError(f"the reasoner server at {self._base_url} answered "
                                              f"{exc.status_code}: {_server_words(exc)}")
                if exc.status_code < 500:
                    raise failure from None  # a 4xx will not change on a retry
            if tries_left == 0 or time.monotonic() + delay >= deadline or (progress and progress.canceled):
                raise failure
            LOG.warning("%s; retrying in %.1f s", failure, delay)
            if progress is not None and progress.cancel.wait(delay):
                raise CanceledError("canceled while waiting to retry")
            if progress is None:
                time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _timeout(self, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._openai.APITimeoutError(request=None)
        return self._openai.Timeout(remaining, connect=min(self._connect_timeout_s, remaining))

    def _request(self, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"model": self._served_model(), "messages": messages, "temperature": 0.0,
                "max_tokens": self._max_new_tokens, **extra}

    def _complete(self, messages: list[dict[str, Any]], deadline: float) -> tuple[str, int, int]:
        response = self._client.chat.completions.create(**self._request(messages), timeout=self._timeout(deadline))
        if not getattr(response, "choices", None):
            raise ReasonerServerError(f"the reasoner server at {self._base_url} sent no choices: {_short(response)}")
        message = response.choices[0].message
        reasoning = _reasoning_content(message)
        usage = getattr(response, "usage", None)
        return (joined_output(reasoning, message.content), int(getattr(usage, "prompt_tokens", 0) or 0),
                int(getattr(usage, "completion_tokens", 0) or 0))

    def _stream(self, messages: list[dict[str, Any]], deadline: float, progress: Progress) -> tuple[str, int, int]:
        if progress.canceled:
            raise CanceledError("canceled before the request was sent")
        stream = self._client.chat.completions.create(
            **self._request(messages, stream=True, stream_options={"include_usage": True}),
            timeout=self._timeout(deadline))
        done = threading.Event()
        watcher = threading.Thread(target=_close_when, args=(stream, progress, deadline, done), daemon=True,
                                   name="segzero-openai-cancel")
        watcher.start()
        pieces: list[str] = []
        in_think = False
        usage: Any = None
        finished = False
        try:
            for chunk in stream:
                usage = getattr(chunk, "usage", None) or usage
                for choice in getattr(chunk, "choices", None) or ():
                    delta = choice.delta
                    reasoning = _reasoning_content(delta)
                    if reasoning:
                        if not in_think:
                            pieces.append("<think>")
                            progress.text("<think>")
                            in_think = True
                        pieces.append(reasoning)
                        progress.text(reasoning)
                    if delta.content:
                        if in_think:
                            pieces.append("</think>")
                            progress.text("</think>")
                            in_think = False
                        pieces.append(delta.content)
                        progress.text(delta.content)
                    finished = finished or choice.finish_reason is not None
        except Exception as exc:
            if progress.canceled:
                raise CanceledError(f"canceled after {len(pieces)} streamed chunks") from None
            if time.monotonic() >= deadline:
                raise ReasonerTimeoutError(f"the reasoner server at {self._base_url} did not finish within "
                                           f"{self._timeout_s:g} s") from None
            if not pieces:
                raise _RetryableError(_describe(exc)) from None
            raise ReasonerServerError(f"the stream from {self._base_url} broke off after {len(pieces)} chunks: "
                                      f"{_describe(exc)}") from None
        finally:
            done.set()
            stream.close()
        if progress.canceled:
            raise CanceledError(f"canceled after {len(pieces)} streamed chunks")
        if time.monotonic() >= deadline and not finished:
            raise ReasonerTimeoutError(f"the reasoner server at {self._base_url} did not finish within "
                                       f"{self._timeout_s:g} s")
        if not finished:
            raise ReasonerServerError(f"the stream from {self._base_url} ended without a finish reason after "
                                      f"{len(pieces)} chunks (truncated)")
        if in_think:
            pieces.append("</think>")
            progress.text("</think>")
        return ("".join(pieces), int(getattr(usage, "prompt_tokens", 0) or 0),
                int(getattr(usage, "completion_tokens", 0) or 0))

    def _served_model(self) -> str:
        """The configured model name, or the first one the server lists (asked once)."""
        with self._model_lock:
            if not self._model:
                listed = self._client.models.list(timeout=self._connect_timeout_s + 5.0)
                names = [entry.id for entry in getattr(listed, "data", None) or ()]
                if not names:
                    raise ReasonerServerError(f"the reasoner server at {self._base_url} serves no model")
                self._model = names[0]
            return self._model


class _RetryableError(Exception):
    """A stream that broke before any text arrived: worth another try, like a refused connection."""


def _reasoning_content(message: Any) -> str | None:
    """The reasoning a server split off a message or a stream delta (a field outside the OpenAI schema)."""
    value = getattr(message, "reasoning_content", None) or (getattr(message, "model_extra", None) or {}).get(
        "reasoning_content")
    return value if isinstance(value, str) else None


def _close_when(stream: Any, progress: Progress, deadline: float, done: threading.Event) -> None:
    """Close the stream as soon as the command is canceled or out of time, even while a read blocks."""
    while not done.wait(CANCEL_POLL_S):
        if progress.canceled or time.monotonic() >= deadline:
            try:
                stream.close()
            except Exception:  # closing a half-read response may itself complain; the reader reports it
                LOG.debug("closing the reasoner stream failed", exc_info=True)
            return


def _server_words(exc: Any) -> str:
    """What the server said in an error answer (its JSON message, else the body), shortened."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("message") or body.get("detail") or body.get("error") or body
        return _short(detail)
    response = getattr(exc, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return _short(text or exc)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    words = str(exc)
    if cause is not None and str(cause) and str(cause) not in words:
        words = f"{words} ({type(cause).__name__}: {cause})"
    return _short(words or type(exc).__name__)


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
