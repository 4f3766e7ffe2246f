"""Launch the segzero perception node with the package's params file, and optionally RViz.

    ros2 launch segzero_ros segzero.launch.py image:=/camera/color/image_raw
    ros2 launch segzero_ros segzero.launch.py reasoner_model:=/models/Seg-Zero-7B device:=cuda use_rviz:=true

Arguments left empty keep the params file's value; set ones override it. The node configures and
activates itself (`autostart`), so no lifecycle manager is needed; pass autostart:=false to use one.
"""

from __future__ import annotations

from typing import Any

PARAMETER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "autostart": ("autostart",),
    "reasoner_backend": ("reasoner.backend",),
    "reasoner_model": ("reasoner.model",),
    "answer_format": ("reasoner.answer_format",),
    "reasoner_base_url": ("reasoner.base_url",),
    "segmenter_backend": ("segmenter.backend",),
    "segmenter_model": ("segmenter.model",),
    "segmenter_config": ("segmenter.config",),
    "segmenter_checkpoint": ("segmenter.checkpoint",),
    "device": ("reasoner.device", "segmenter.device"),
    "compressed_input": ("compressed_input",),
    "max_image_age_s": ("max_image_age_s",),
    "spatial": ("spatial.enabled",),
    "tracking": ("tracking.enabled",),
    "tiny": ("tiny",),
}
"""Launch argument → node parameter(s) it overrides when not empty."""

ARGUMENT_HELP = {
    "image": "camera topic (sensor_msgs/Image); CompressedImage is read from <image>/compressed",
    "params_file": "node parameters (YAML); default: the package's config/segzero.yaml",
    "namespace": "namespace of the node (topics become /<namespace>/segzero/...)",
    "node_name": "name of the node; its topics are ~/command, ~/result, ~/mask, ~/overlay, ...",
    "log_level": "debug, info, warn or error",
    "use_rviz": "true: also start RViz with config/segzero.rviz",
    "rviz_config": "RViz layout; default: the package's config/segzero.rviz",
    "autostart": "true/false; empty keeps the params file's value",
    "reasoner_backend": "reasoner backend (transformers, ...); empty keeps the params file's",
    "reasoner_model": "Hugging Face id or local folder of the reasoning model",
    "reasoner_base_url": "with reasoner_backend:=openai: the server's API root, e.g. https://gpu-server:8000/v1",
    "answer_format": "seg_zero (Seg-Zero-7B: one object) or vision_reasoner (VisionReasoner-7B: a list, "
                     "not_found when none); empty keeps the params file's",
    "segmenter_backend": "segmenter backend: sam2, onnxruntime or tensorrt; empty keeps the params file's",
    "segmenter_model": "Hugging Face id of the SAM2 checkpoint",
    "segmenter_config": "sam2 config name, needed with segmenter_checkpoint",
    "segmenter_checkpoint": "local SAM2 .pt checkpoint",
    "device": "cpu, cuda or cuda:N for both models; empty keeps the params file's devices",
    "compressed_input": "true: subscribe to <image>/compressed (sensor_msgs/CompressedImage)",
    "max_image_age_s": "newest image must be at most this old when a command arrives; 0 = any age",
    "tiny": "true: the tiny offline models (no weights needed; masks and reasoning are MEANINGLESS)",
    "spatial": "true: also place each result in 3D from the aligned depth image (topics depth, depth_camera_info)",
    "tracking": "true: keep tracking each result's object on every new frame (~/tracked, ~/mask)",
    "depth": "aligned depth topic (sensor_msgs/Image 16UC1 mm or 32FC1 m, registered to the colour camera)",
    "depth_camera_info": "CameraInfo of the depth topic",
}


def parameter_overrides(arguments: dict[str, str]) -> dict[str, Any]:
    """Node parameters from the non-empty launch arguments, typed as the node declares them."""
    overrides: dict[str, Any] = {}
    for argument, parameters in PARAMETER_ARGUMENTS.items():
        text = arguments.get(argument, "").strip()
        if not text:
            continue
        value: Any = text
        if argument in ("autostart", "compressed_input", "spatial", "tracking", "tiny"):
            if text.lower() not in ("true", "false"):
                raise ValueError(f"launch argument {argument} must be true or false, got {text!r}")
            value = text.lower() == "true"
        elif argument == "max_image_age_s":
            value = float(text)
        for parameter in parameters:
            overrides[parameter] = value
    return overrides


def rviz_installed() -> bool:
    """rviz2 is in this ROS environment (its ament index entry), so launch_ros can start it."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return True


def generate_launch_description() -> Any:
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription  # type: ignore[attr-defined]  # ROS launch, not PyPI's 'launch'

    share = get_package_share_directory("segzero_ros")
    defaults = {
        "image": "/camera/image_raw",
        "depth": "/camera/aligned_depth_to_color/image_raw",
        "depth_camera_info": "/camera/aligned_depth_to_color/camera_info",
        "params_file": os.path.join(share, "config", "segzero.yaml"),
        "namespace": "",
        "node_name": "segzero",
        "log_level": "info",
        "use_rviz": "false",
        "rviz_config": os.path.join(share, "config", "segzero.rviz"),
    }
    defaults.update({argument: "" for argument in PARAMETER_ARGUMENTS})

    def launch_nodes(context: Any, *args: Any, **kwargs: Any) -> list[Any]:
        value = {name: LaunchConfiguration(name).perform(context) for name in defaults}
        image = value["image"]
        nodes = [
            Node(
                package="segzero_ros",
                executable="segzero_node",
                name=value["node_name"],
                namespace=value["namespace"],
                parameters=[value["params_file"], parameter_overrides(value)],
                remappings=[("image", image), ("image/compressed", f"{image}/compressed"),
                            ("depth", value["depth"]), ("depth_camera_info", value["depth_camera_info"])],
                arguments=["--ros-args", "--log-level", value["log_level"]],
                output="screen",
                emulate_tty=True,
            )
        ]
        if value["use_rviz"].lower() == "true":
            if rviz_installed():
                nodes.append(Node(package="rviz2", executable="rviz2", arguments=["-d", value["rviz_config"]],
                                  output="log"))
            else:  # decided before anything starts: a failing rviz2 would leave the node orphaned
                nodes.insert(0, LogInfo(msg="use_rviz:=true but rviz2 is not installed (apt install "
                                            "ros-$ROS_DISTRO-rviz2): starting the node without RViz"))
        return nodes

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=ARGUMENT_HELP[name])
         for name, default in defaults.items()]
        + [OpaqueFunction(function=launch_nodes)]
    )
