"""The reasoner server a launch file manages (`reasoner_server:=transformers|vllm`): the command line for each
kind, bound to 127.0.0.1, and a launcher that ties the server's life to its parent's.

    python -m segzero_ros.ros.managed_server -- transformers serve --host 127.0.0.1 --port 8000 MODEL

The launcher asks the kernel to end it when its parent (`ros2 launch`) dies — SIGTERM to `ros2 launch` does not
stop its processes (ros2/launch#666) — then becomes the server (exec), so the server holds no extra process.
Free of rclpy and launch.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
KINDS = ("none", "transformers", "vllm")


def server_command(kind: str, model: str, port: int, *, device: str = "", dtype: str = "",
                   max_model_len: int = 4096, extra: str = "") -> list[str]:
    """The server's command line (without the launcher), listening on 127.0.0.1:`port` only."""
    if kind == "transformers":
        command = [_executable("transformers"), "serve", "--host", LOOPBACK, "--port", str(port)]
        if device and device != "auto":
            command += ["--device", device]
        if dtype and dtype != "auto":
            command += ["--dtype", dtype]
        command.append(model)
    elif kind == "vllm":
        command = [_executable("vllm"), "serve", model, "--host", LOOPBACK, "--port", str(port),
                   "--max-model-len", str(max_model_len), "--limit-mm-per-prompt", json.dumps({"image": 1})]
        if dtype and dtype != "auto":
            command += ["--dtype", dtype]
    else:
        raise ValueError(f"reasoner_server must be one of {', '.join(KINDS)}, got {kind!r}")
    return command + shlex.split(extra)


def base_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/v1"


def launcher_command(command: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "segzero_ros.ros.managed_server", "--", *command]


def _executable(name: str) -> str:
    """The console script beside this Python (the same virtual environment), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        print("usage: python -m segzero_ros.ros.managed_server -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    from segzero_ros.ros.lifetime import exit_with_parent

    exit_with_parent(os.getppid())
    os.execvp(arguments[0], arguments)
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main())
