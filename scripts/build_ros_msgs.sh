#!/usr/bin/env bash
# Build this package's ROS interfaces (msg/, srv/) into the virtualenv's prefix with the ROS 2 PyPI wheels,
# so `from segzero_ros.msg import ReasoningSegmentation` works from .venv without a ROS installation; the
# same install puts the ament index entry, share/segzero_ros/{launch,config} and lib/segzero_ros/segzero_node
# there, so `ros2 launch segzero_ros segzero.launch.py` and `ros2 run` work with AMENT_PREFIX_PATH=.venv.
# On a robot with ROS installed use colcon instead (README). Idempotent: does nothing when the interface
# files, CMakeLists.txt, package.xml and this script are unchanged since the last successful build.
#
# Usage: scripts/build_ros_msgs.sh [--force]      (VENV=path/to/venv to use another virtualenv)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(realpath "${VENV:-.venv}")
PY=$VENV/bin/python
BUILD_DIR=${BUILD_DIR:-build/ros_msgs}
STAMP=$BUILD_DIR/.segzero-msgs-stamp
force=${1:-}

if [ ! -x "$PY" ]; then
  echo "[msgs] no virtualenv at $VENV (run scripts/setup first)" >&2
  exit 1
fi

read -r SITE PY_INCLUDE NUMPY_INCLUDE PY_TAG < <("$PY" - <<'EOF'
import sys, sysconfig
import numpy
print(sysconfig.get_paths()["purelib"], sysconfig.get_paths()["include"], numpy.get_include(),
      f"{sys.version_info.major}{sys.version_info.minor}")
EOF
)

# The wheels' dependency lists are incomplete: the generators need these too (ENVIRONMENT.md).
# (ament_cmake_ros_core exists from Kilted on; Jazzy's wheels build without it.)
required=(ament_cmake ament_cmake_python ament_cmake_include_directories ament_package
          rosidl_default_generators rosidl_core_generators sensor_msgs std_msgs builtin_interfaces geometry_msgs
          action_msgs)
missing=()
for package in "${required[@]}"; do
  [ -d "$VENV/share/$package" ] || missing+=("ros-${package//_/-}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[msgs] missing ROS wheels in $VENV: ${missing[*]}" >&2
  echo "[msgs] install them with: $PY -m pip install ${missing[*]} catkin-pkg" >&2
  exit 1
fi

# The generated Python package must not shadow the library: with setuptools' default ("strict") editable
# install, the library is found by a finder that runs AFTER the normal path search, so any site-packages
# segzero_ros/ folder (the generated messages) would win. A path-based ("compat") editable install puts
# the source tree on sys.path instead; the library's __init__ then wins and pkgutil.extend_path adds
# the generated msg/ and srv/ beside it.
ensure_compat_editable() {
  if compgen -G "$SITE/__editable___segzero_ros_*_finder.py" > /dev/null; then
    echo "[msgs] re-installing the editable library in compat mode (see comment in $0)"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
      --config-settings editable_mode=compat -e .
  fi
}

check_import() {
  "$PY" - <<'EOF'
import segzero_ros
import segzero_ros.pipeline  # the library half
from segzero_ros.msg import ReasoningSegmentation, SegZeroStatus
from segzero_ros.srv import Segment
from segzero_ros.action import Segment as SegmentAction

assert hasattr(segzero_ros, "__version__"), "segzero_ros resolved to the generated package, not the library"
for message_type in (ReasoningSegmentation, SegZeroStatus, Segment, SegmentAction):
    message_type.__class__.__import_type_support__()  # loads the compiled type support libraries
assert ReasoningSegmentation.ERROR_NO_IMAGE == "no_image", repr(ReasoningSegmentation.ERROR_NO_IMAGE)
EOF
}

fingerprint=$(cat msg/*.msg srv/*.srv action/*.action CMakeLists.txt package.xml launch/* config/* examples/kitchen.png "$0" | sha256sum | cut -d' ' -f1)
fingerprint="$fingerprint $VENV"
if [ "$force" != "--force" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$fingerprint" ] \
    && [ -d "$SITE/segzero_ros/msg" ]; then
  ensure_compat_editable
  if check_import 2> /dev/null; then
    echo "[msgs] segzero_ros interfaces in $VENV are up to date"
    exit 0
  fi
  echo "[msgs] up-to-date stamp but the interfaces do not import; rebuilding"
fi

# The wheels' exported CMake files name the wheel builder's Python and numpy include folders
# (/opt/python/cpXY-cpXY/...), which CMake rejects as missing paths: point them at this venv's.
wheel_python=/opt/python/cp$PY_TAG-cp$PY_TAG
mapfile -t stale < <(grep -rlF --include='*.cmake' "$wheel_python" "$VENV/share" || true)
if [ "${#stale[@]}" -gt 0 ]; then
  echo "[msgs] rewriting wheel-builder include paths in ${#stale[@]} CMake files"
  sed -i \
    -e "s#$wheel_python/lib/python[0-9.]*/site-packages/numpy/_core/include#$NUMPY_INCLUDE#g" \
    -e "s#$wheel_python/include/python[0-9.]*#$PY_INCLUDE#g" \
    "${stale[@]}"
fi

started=$(date +%s)
mkdir -p "$BUILD_DIR"
echo "[msgs] configuring ($BUILD_DIR)"
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
cmake -S . -B "$BUILD_DIR" -Wno-dev --log-level=WARNING \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DBUILD_TESTING=OFF \
  -DSEGZERO_INSTALL_PYTHON_PACKAGE=OFF > "$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log" >&2; exit 1; }
echo "[msgs] building"
cmake --build "$BUILD_DIR" -j "$(nproc)" > "$BUILD_DIR.build.log" 2>&1 \
  || { tail -n 60 "$BUILD_DIR.build.log" >&2; exit 1; }
cmake --install "$BUILD_DIR" > "$BUILD_DIR.install.log" 2>&1 \
  || { tail -n 30 "$BUILD_DIR.install.log" >&2; exit 1; }

# rosidl also installs an empty segzero_ros/__init__.py and egg-info metadata for the generated package.
# In this prefix the library comes from pip: that __init__.py would hide it and the metadata would
# duplicate its distribution, so both go; segzero_ros/ stays a plain folder holding msg/ and srv/.
rm -f "$SITE/segzero_ros/__init__.py"
rm -rf "$SITE/segzero_ros/__pycache__"/__init__.* "$SITE"/segzero_ros-*.egg-info
ensure_compat_editable
check_import
echo "$fingerprint" > "$STAMP"
echo "[msgs] built and installed into $VENV in $(( $(date +%s) - started )) s"
