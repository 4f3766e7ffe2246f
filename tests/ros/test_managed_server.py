"""The reasoner server the launch file manages: `ros2 launch … reasoner_server:=transformers tiny:=true` starts a
real `transformers serve` of the tiny Qwen2.5-VL on 127.0.0.1 beside the node; configure waits for it (and says
so in the status); a command is answered through it; the server killed → commands fail with the reason; the
launch restarts it → answered again, with no restart of the node. The real upstream launch system and ros2
CLI from ../shared/ros-tools. The same with `reasoner_server:=vllm` (vLLM's CPU build) is opt-in:
`scripts/setup_vllm`, then `SEGZERO_VLLM=1 scripts/test tests/ros/test_managed_server.py`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from segzero_ros.ros.managed_server import (
    LOOPBACK,
    VLLM_SERVER,
    base_url,
    group_members,
    launcher_command,
    server_command,
)
from segzero_ros.testing.servers import free_port
from tests.ros.harness import (
    image_message,
    rgb_test_image,
    ros2_cli,
    skip_module_unless_ros_runtime,
    stop_ros2_daemon,
    wait_until,
)


def test_server_commands_listen_on_loopback_only():
    served = server_command("transformers", "/models/tiny", 8123, device="cpu", dtype="float32")
    assert served[1:] == ["serve", "--host", LOOPBACK, "--port", "8123", "--device", "cpu", "--dtype", "float32",
                          "/models/tiny"]
    vllm = server_command("vllm", "/models/Seg-Zero-7B", 8124, dtype="bfloat16", extra="--gpu-memory-utilization 0.6")
    assert vllm[1:5] == ["-m", VLLM_SERVER, "--model", "/models/Seg-Zero-7B"]
    assert vllm[vllm.index("--host") + 1] == LOOPBACK
    assert vllm[-2:] == ["--gpu-memory-utilization", "0.6"] and '{"image": 1}' in vllm
    assert launcher_command(served)[1:4] == ["-m", "segzero_ros.ros.managed_server", "--"]
    assert base_url(8123) == "http://127.0.0.1:8123/v1"
    with pytest.raises(ValueError, match="reasoner_server must be one of"):
        server_command("sglang", "m", 1)


skip_module_unless_ros_runtime()
pytest.importorskip("fastapi")  # transformers serve

ROS2 = ros2_cli()

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

DOMAIN_ID = 86
CAMERA = "/camera/image_raw"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _server_pids(port: int) -> list[int]:
    """The managed server's process: `transformers serve` or vLLM's server module on our port (not its launcher,
    not vLLM's engine process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (b"serve" in command or VLLM_SERVER.encode() in command) and str(port).encode() in command \
                    and b"segzero_ros.ros.managed_server" not in command:  # the server, not its launcher
                found.append(int(entry.name))
    return found


def _ask(camera, image, commands, results, text: str, timeout: float = 60.0):
    """Publish a fresh image and `text` until DDS delivers the command, then its one result."""
    deadline = time.monotonic() + timeout
    while not [m for m in results.messages if m.command == text]:
        assert time.monotonic() < deadline, f"no result for {text!r}"
        camera.publish(image)
        time.sleep(0.2)
        commands.publish(String(data=text))
        time.sleep(1.0)
    return results.wait_for(lambda m: m.command == text)


VLLM_BIN = Path(os.environ.get("SEGZERO_VLLM_VENV", Path(__file__).resolve().parents[2] / ".venv-vllm")) / "bin"
SERVERS = [
    pytest.param("transformers", {}, id="transformers"),
    # vLLM's CPU build in a venv of its own (scripts/setup_vllm), found on PATH as a user would install it.
    pytest.param("vllm", {"PATH": f"{VLLM_BIN}:{os.environ.get('PATH', '')}", "VLLM_CPU_KVCACHE_SPACE": "1",
                          "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "2"},
                 id="vllm", marks=pytest.mark.skipif(os.environ.get("SEGZERO_VLLM") != "1",
                                                      reason="opt-in: SEGZERO_VLLM=1 (after scripts/setup_vllm)")),
]


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "server_env"), SERVERS)
def test_a_launch_managed_server_serves_dies_and_comes_back(harness, tiny_qwen_dir, tiny_sam2, kind, server_env):
    if kind == "vllm" and not (VLLM_BIN / "vllm").is_file():
        pytest.fail(f"SEGZERO_VLLM=1 but {VLLM_BIN / 'vllm'} is missing: run scripts/setup_vllm", pytrace=False)
    port = free_port()
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", **server_env)
    status = harness.subscribe(SegZeroStatus, "/segzero/status", LATCHED)
    results = harness.subscribe(ReasoningSegmentation, "/segzero/result", 100)
    commands = harness.publisher(String, "/segzero/command")
    camera = harness.publisher(Image, CAMERA)
    launch = subprocess.Popen([ROS2, "launch", "segzero_ros", "segzero.launch.py", "tiny:=true",
                               f"reasoner_server:={kind}", f"reasoner_server_port:={port}",
                               "reasoner_server_wait_s:=300"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.monotonic()
        ready = status.wait_for(lambda m: m.ready, timeout=360)
        steps = {m.loading_step for m in status.messages}
        assert f"waiting for reasoner server at {base_url(port)}" in steps, steps
        assert ready.reasoner_name  # the served model's name, asked from the server
        wait_until(lambda: camera.get_subscription_count() >= 1, what="the node's camera subscription")
        image = image_message(rgb_test_image(80, 60), frame_id="camera")
        deadline = time.monotonic() + 30
        while status.messages[-1].image_age_s < 0:
            assert time.monotonic() < deadline, "the node never received an image"
            camera.publish(image)
            time.sleep(0.3)

        first = _ask(camera, image, commands, results, "the red mug")
        assert first.success, first.error

        [server] = _server_pids(port)
        group = os.getpgid(server)
        assert group == server and len(group_members(group)) >= 1  # the launcher gave it a group of its own
        os.kill(server, signal.SIGKILL)  # a crash: the server gets no chance to end what it started
        wait_until(lambda: server not in _server_pids(port), timeout=10, what="the server to die")
        wait_until(lambda: not group_members(group), timeout=30,
                   what=f"the killed server's other processes (vLLM's engine) to end: {group_members(group)}")
        failed = _ask(camera, image, commands, results, "while the server is down", timeout=30)
        assert not failed.success and failed.error_kind == "reasoner_failed", (failed.error_kind, failed.error)
        assert str(port) in failed.error or "connect" in failed.error.lower(), failed.error

        # The launch respawns the server; the node, never restarted, answers through it again.
        deadline = time.monotonic() + 300
        while True:
            again = _ask(camera, image, commands, results, f"again {time.monotonic():.0f}", timeout=30)
            if again.success:
                break
            assert time.monotonic() < deadline, f"never answered after the respawn: {again.error}"
            time.sleep(2.0)
        assert _server_pids(port) and _server_pids(port) != [server]
        print(f"ready, answered, failed and answered again after the respawn in {time.monotonic() - started:.1f} s")
    finally:
        launch.send_signal(signal.SIGINT)
        try:
            output = launch.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            launch.kill()
            output = launch.communicate()[0]
        stop_ros2_daemon(ROS2, env)
    wait_until(lambda: not _server_pids(port), timeout=20, what="the server to end with the launch")
    assert f"reasoner_server_{kind}" in output, output[-3000:]
