"""A process's life tied to its parent's: the kernel sends SIGTERM when the parent dies (Linux). Used by the
node and by the launch-managed reasoner server; `ros2 launch` killed with SIGTERM does not stop its processes
(ros2/launch#666). Free of rclpy."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
"""prctl option: the signal the kernel sends this process when its parent dies (linux/prctl.h)."""


def exit_with_parent(parent: int) -> bool:
    """Ask the kernel for SIGTERM when `parent` (the launcher) dies; if it is gone already, SIGTERM now.
    False where that is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True
