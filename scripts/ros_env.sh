# Source this (`. scripts/ros_env.sh`) to use the ROS 2 side from .venv without a ROS installation or colcon
# workspace: `ros2 launch segzero_ros segzero.launch.py tiny:=true`, `ros2 run segzero_ros segzero_node`,
# `ros2 interface show segzero_ros/msg/ReasoningSegmentation`, `ros2 topic echo …`. scripts/setup must have
# run (with ../shared beside the checkout, for the launch system and the ros2 CLI).
# Keep DDS on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Jazzy+), ROS_LOCALHOST_ONLY=1 (Humble).
_segzero_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
export AMENT_PREFIX_PATH="$_segzero_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$_segzero_root/.venv/bin:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST} ROS_LOCALHOST_ONLY=${ROS_LOCALHOST_ONLY:-1}
unset _segzero_root
