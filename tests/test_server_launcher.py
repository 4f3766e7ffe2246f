"""The launcher of the launch-managed reasoner server, with real processes: the server runs in a process group
of its own, and nothing it started outlives it — whether it crashes, the launcher is asked to stop, or the
launcher itself is killed. (vLLM's engine process outlived a SIGKILLed API server before the launcher did this.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segzero_ros.ros.managed_server import group_members, launcher_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups via Linux /proc")

# A "server" that starts a helper which would outlive it (as vLLM's engine does), then waits.
SERVER = ("sleep 300 & echo $! > {helper}; echo $$ > {server}; wait")


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    helper, server = tmp_path / "helper.pid", tmp_path / "server.pid"
    launcher = subprocess.Popen(launcher_command(["sh", "-c", SERVER.format(helper=helper, server=server)]))
    deadline = time.monotonic() + 20
    while not (helper.exists() and server.exists() and helper.read_text().strip() and server.read_text().strip()):
        assert time.monotonic() < deadline, "the server never started"
        time.sleep(0.05)
    return launcher, int(server.read_text()), int(helper.read_text())


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_crashed_server_takes_what_it_started_with_it(tmp_path):
    launcher, server, helper = _start(tmp_path)
    try:
        assert os.getpgid(server) == server and os.getpgid(helper) == server != os.getpgid(launcher.pid)
        os.kill(server, signal.SIGKILL)
        assert launcher.wait(timeout=20) == 128 + signal.SIGKILL  # the launch sees the crash and respawns
        assert _gone(helper) and not group_members(server)
    finally:
        launcher.kill()


def test_stopping_the_launcher_stops_the_whole_group(tmp_path):
    launcher, server, helper = _start(tmp_path)
    try:
        launcher.send_signal(signal.SIGINT)  # what `ros2 launch` sends first at shutdown
        launcher.wait(timeout=20)
        assert _gone(server) and _gone(helper)
    finally:
        launcher.kill()


def test_a_killed_launcher_still_ends_its_server(tmp_path):
    launcher, server, _helper = _start(tmp_path)
    launcher.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal reaches the server
    launcher.wait(timeout=20)
    assert _gone(server)  # (its helper is then the server's own business: vLLM ends its engine on SIGTERM)
    if group_members(server):
        os.killpg(server, signal.SIGKILL)


def test_a_server_that_cannot_start_is_one_clear_line(tmp_path):
    done = subprocess.run(launcher_command(["/nonexistent/reasoner-server"]), capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 127
    assert done.stderr.strip().startswith("cannot start the reasoner server '/nonexistent/reasoner-server'")
