"""The first thing to run: a camera-less demo. `segzero_image_source` publishes pictures (default: the
package's kitchen photo), the node answers commands on them, RViz shows the overlay when it is installed.

    ros2 launch segzero_ros demo.launch.py                          # tiny offline models: meaningless masks
    ros2 launch segzero_ros demo.launch.py tiny:=false reasoner_model:=/models/Seg-Zero-7B \\
        segmenter_checkpoint:=/models/sam2_hiera_large.pt segmenter_config:=configs/sam2/sam2_hiera_l.yaml
    ros2 topic pub --once /segzero/command std_msgs/String "data: 'the thing I can cut bread with'"

`source` may be a folder of images, a video file, a ros2 bag (with `bag_topic`) or a webcam index.
"""

from __future__ import annotations

from typing import Any

from segzero_ros.ros.launch_arguments import PARAMETER_ARGUMENTS, argument_help

ARGUMENTS = {
    "source": ("", "images folder, video file, ros2 bag or webcam index; default: the package's example photo"),
    "rate_hz": ("5.0", "frames per second the source publishes"),
    "bag_topic": ("", "with a bag: the Image / CompressedImage topic to replay (default: the first one)"),
    "use_rviz": ("true", "start RViz when rviz2 is installed"),
    **{argument: ("", argument_help(argument)) for argument in PARAMETER_ARGUMENTS},
    "tiny": ("true", argument_help("tiny") + "; the demo's default is true"),
    "max_image_age_s": ("0.0", argument_help("max_image_age_s") + "; the demo's default 0 takes any age"),
}
"""The source's own arguments, and every node-parameter argument of segzero.launch.py passed through."""
IMAGE_TOPIC = "/demo/image"


def generate_launch_description() -> Any:
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription  # type: ignore[attr-defined]  # ROS launch, not PyPI's 'launch'

    share = get_package_share_directory("segzero_ros")

    def launch(context: Any, *args: Any, **kwargs: Any) -> list[Any]:
        value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        source = value["source"] or os.path.join(share, "examples")
        camera = Node(package="segzero_ros", executable="segzero_image_source", name="segzero_image_source",
                      parameters=[{"source": source, "rate_hz": float(value["rate_hz"]),
                                   "bag_topic": value["bag_topic"]}],
                      remappings=[("image", IMAGE_TOPIC)], output="screen")
        node_arguments = {"image": IMAGE_TOPIC, "use_rviz": value["use_rviz"],
                          **{name: value[name] for name in PARAMETER_ARGUMENTS if value[name]}}
        node = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(share, "launch",
                                                                                   "segzero.launch.py")),
                                        launch_arguments=node_arguments.items())
        return [camera, node]

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=launch)]
    )
