"""A 20-second run of benchmarks/soak_node.py, exactly as a person would run it (its own process, the real
node entry point, the tiny models, a 30 Hz camera and 1 command/s) with tracking on: no command lost or
answered twice, the commanded objects tracked between commands, frames dropped rather than queued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ros.harness import skip_module_unless_ros_runtime

pytestmark = [pytest.mark.ros, pytest.mark.slow]
skip_module_unless_ros_runtime()

DOMAIN_ID = 76
SOAK_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_node.py"
SECONDS = 20


def test_twenty_second_soak_loses_no_command(tiny_cache_root, tmp_path):
    report_path = tmp_path / "soak.json"
    env = dict(os.environ, SEGZERO_CACHE=str(tiny_cache_root))
    run = subprocess.run(
        [sys.executable, str(SOAK_SCRIPT), "--minutes", str(SECONDS / 60), "--warmup-minutes", str(5 / 60),
         "--domain-id", str(DOMAIN_ID), "--json", str(report_path), "--tracking"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert report_path.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    print(run.stdout[-2500:])

    assert report["lost_commands"] == [] and report["duplicated_commands"] == []
    assert report["unexpected_results"] == 0
    assert report["commands_sent"] >= SECONDS // 2
    assert report["results_received"] == report["commands_sent"]
    assert report["outcomes"].get("success", 0) >= 1, report["outcomes"]
    status = report["node_status"]
    assert status["commands_received"] == report["commands_sent"]
    assert status["results_succeeded"] + status["results_failed"] == report["commands_sent"]
    assert (status["lifecycle_state"], status["stuck"], status["images_unusable"]) == ("active", False, 0)
    assert report["frames_taken_by_node"] > 0
    # Tracking: the results' objects were followed on later frames; a tracker slower than the camera drops
    # frames (newest wins) instead of falling behind; the track never failed.
    assert report["tracked_commands"] >= 2 and report["tracked_messages"] > report["tracked_commands"]
    assert status["frames_tracked"] >= report["tracked_messages"]
    assert status["frames_dropped"] > 0
    assert status["tracking_state"] in ("tracking", "lost") and status["tracking_error"] == ""
    # A gross leak detector only (the 10-minute run measures growth): keeping each 900 KiB camera frame
    # would add ~500 MiB in 20 s.
    assert report["rss_end_mib"] < 1.25 * report["rss_after_warmup_mib"]
    assert report["node_exit_code"] == 0 and run.returncode == 0, run.stderr[-3000:]
