#!/usr/bin/env bash
# Build the interface packages PyPI lacks that the node uses when present (vision_msgs: Detection2D/3D) into
# the virtualenv's prefix, from the sources in ../shared/ros-tools/src (ROS machines have them from apt).
# Without that folder it says so and exits 0: the node then runs without its vision_msgs outputs.
# Idempotent: a package that already imports is not rebuilt. Usage: scripts/build_ros_extras.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(realpath "${1:-${VENV:-.venv}}")
PY=$VENV/bin/python
SOURCES=${SEGZERO_ROS_TOOLS:-../shared/ros-tools}/src

if [ ! -d "$SOURCES" ]; then
  echo "[extras] $SOURCES not found: skipping vision_msgs (the node publishes no ~/detections*)"
  exit 0
fi
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
for package in vision_msgs; do
  if "$PY" -c "import $package.msg" 2>/dev/null; then
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
  "$PY" -c "import $package.msg" || { echo "[extras] $package built but does not import" >&2; exit 1; }
  echo "[extras] $package built into $VENV in $(( $(date +%s) - started )) s"
done
