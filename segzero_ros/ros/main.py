"""Console entry point `segzero_node`: the segzero node on a TransitionExecutor until Ctrl-C / SIGTERM.

Shutdown as a robot needs it: SIGINT and SIGTERM (what `docker stop`, systemd and launch send) both let the
node answer a running command, release its models and exit 0; with `exit_with_parent` the kernel sends it
SIGTERM when its launcher dies, since `ros2 launch` killed by SIGTERM exits at once and leaves its nodes
running (upstream ros2/launch#666).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.parameter import Parameter

from segzero_ros.quiet import quiet_library_progress_bars
from segzero_ros.ros.executor import TransitionExecutor
from segzero_ros.ros.lifetime import exit_with_parent
from segzero_ros.ros.node import SegZeroNode, add_to_executor


def main(args: list[str] | None = None) -> int:
    """Console entry point `segzero_node`."""
    parent = os.getppid()
    quiet_library_progress_bars()
    _init_without_rclpy_signal_handlers(args)
    # SIGTERM (sent by launch after SIGINT) ends the process the same orderly way as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    executor = TransitionExecutor()
    node: SegZeroNode | None = None
    tiny = "--tiny" in (sys.argv if args is None else args)  # `segzero_node --tiny`: the tiny parameter
    try:
        node = SegZeroNode(parameter_overrides=[Parameter("tiny", value=True)] if tiny else [])
        if node.settings.node.exit_with_parent:
            exit_with_parent(parent)
        add_to_executor(node, executor)
        while True:
            # A bounded wait, so Ctrl-C (a KeyboardInterrupt between waits) is handled within a fraction of a
            # second even when nothing arrives.
            try:
                executor.spin_once(timeout_sec=0.25)
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception:  # one callback's bug must not take the robot's perception down
                node.get_logger().error(f"a callback raised; the node goes on:\n{traceback.format_exc()}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()  # while the context is still valid: the last results and logs still go out
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


def _init_without_rclpy_signal_handlers(args: list[str] | None) -> None:
    """rclpy's own SIGINT handler shuts the context down at once, before the node could publish the answer
    of a running command or release its models cleanly; Python's KeyboardInterrupt lets main() do both."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # very old rclpy: keep its handlers
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


if __name__ == "__main__":
    sys.exit(main())
