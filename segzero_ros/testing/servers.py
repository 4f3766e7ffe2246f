"""Local OpenAI-compatible servers for tests and benchmarks: `transformers serve` (or any command) started on
127.0.0.1 on a free port, waited for, and stopped. Nothing here listens beyond loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class LocalServer:
    """A server process on 127.0.0.1:`port`; `base_url` is its OpenAI API root (…/v1)."""

    def __init__(self, command: list[str], port: int, *, log_path: Path, health_path: str = "/v1/models",
                 env: dict[str, str] | None = None) -> None:
        self.command, self.port, self.log_path, self.health_path = command, port, log_path, health_path
        self.base_url = f"http://{LOOPBACK}:{port}/v1"
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> LocalServer:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        url = f"http://{LOOPBACK}:{self.port}{self.health_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:  # loopback only
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server did not answer {url} within {timeout_s:g} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, as tests need it)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-limit:]
        except OSError:
            return ""

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def transformers_serve(model_dir: Path, log_path: Path, *, port: int | None = None, threads: int = 1,
                       continuous_batching: bool = False) -> LocalServer:
    """`transformers serve MODEL` on CPU, float32, 127.0.0.1 only, offline (not started yet)."""
    executable = Path(sys.executable).with_name("transformers")
    port = port or free_port()
    command = [str(executable), "serve", "--host", LOOPBACK, "--port", str(port), "--device", "cpu",
               "--dtype", "float32", str(model_dir)]
    if continuous_batching:
        command.insert(2, "--continuous-batching")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    return LocalServer(command, port, log_path=log_path, env=env)
