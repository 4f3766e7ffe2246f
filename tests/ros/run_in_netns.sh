#!/usr/bin/env bash
# Run a command (default: the ROS tests) inside a fresh loopback-only network namespace with the ROS
# discovery settings the tests expect, e.g.  tests/ros/run_in_netns.sh .venv/bin/python -m pytest tests/ros -x
set -euo pipefail
cd "$(dirname "$0")/../.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
netns_run=../shared/tools/netns-run
[ -x "$netns_run" ] || netns_run=scripts/netns-run
if [ "$#" -eq 0 ]; then
  set -- .venv/bin/python -m pytest tests/ros
fi
exec "$netns_run" "$@"
