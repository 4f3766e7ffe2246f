#!/usr/bin/env bash
# Install the upstream ROS 2 pieces PyPI lacks into the virtualenv, from ../shared/ros-tools (ROS machines
# have them from apt): the launch system, launch_testing and the ros2 CLI (pure-Python wheels), and the
# interface packages composition_interfaces (launch_ros imports it), vision_msgs (the node's Detection2D/3D
# outputs) and the subsets of object_recognition_msgs + moveit_msgs that carry CollisionObject (the node's
# planning-scene output; needs the ros-shape-msgs wheel), built into the venv prefix. Without that folder it
# says so and exits 0: the node then runs without those outputs and the launch/CLI tests skip.
# Idempotent: wheels are reinstalled only when they change, a package that imports is not rebuilt.
# Usage: scripts/build_ros_extras.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(realpath "${1:-${VENV:-.venv}}")
PY=$VENV/bin/python
TOOLS=${SEGZERO_ROS_TOOLS:-../shared/ros-tools}
SOURCES=$TOOLS/src

if [ ! -d "$SOURCES" ]; then
  echo "[extras] $TOOLS not found: no launch/ros2 CLI tools, no vision_msgs / moveit_msgs (no ~/detections*, no collision objects)"
  exit 0
fi
stamp=$VENV/.segzero-ros-tools-stamp
fingerprint=$(sha256sum "$TOOLS"/wheels/*.whl | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]; then
  # As ros-tools/install.sh does: their dependencies by their PyPI names, then the wheels without theirs.
  "$PY" -m pip install -q --disable-pip-version-check osrf-pycommon argcomplete psutil pyyaml importlib-metadata
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$TOOLS"/wheels/*.whl
  echo "$fingerprint" > "$stamp"
  echo "[extras] launch, launch_testing and the ros2 CLI installed into $VENV"
else
  echo "[extras] launch, launch_testing and the ros2 CLI are up to date"
fi
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
# package:module that proves it imports (composition_interfaces has services only)
for entry in composition_interfaces:srv vision_msgs:msg object_recognition_msgs:msg moveit_msgs:msg; do
  package=${entry%%:*}
  module=$package.${entry##*:}
  if "$PY" -c "import $module" 2>/dev/null; then
    echo "[extras] $package is up to date"
    continue
  fi
  started=$(date +%s)
  build=build/$package
  mkdir -p "$build"
  { cmake -S "$SOURCES/$package" -B "$build" -Wno-dev --log-level=WARNING -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF \
    && cmake --build "$build" -j "$(nproc)" && cmake --install "$build"; } > "$build.log" 2>&1 \
    || { tail -n 40 "$build.log" >&2; echo "[extras] building $package failed (log: $build.log)" >&2; exit 1; }
  "$PY" -c "import $module" || { echo "[extras] $package built but does not import" >&2; exit 1; }
  echo "[extras] $package built into $VENV in $(( $(date +%s) - started )) s"
done
