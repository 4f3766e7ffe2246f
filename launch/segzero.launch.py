"""Launch the segzero perception node with the package's params file, and optionally RViz.

    ros2 launch segzero_ros segzero.launch.py image:=/camera/color/image_raw
    ros2 launch segzero_ros segzero.launch.py reasoner_model:=/models/Seg-Zero-7B device:=cuda use_rviz:=true
    ros2 launch segzero_ros segzero.launch.py reasoner_server:=vllm reasoner_model:=/models/Seg-Zero-7B

Arguments left empty keep the params file's value; set ones override it. The node configures and
activates itself (`autostart`), so no lifecycle manager is needed; pass autostart:=false to use one.
"""

from __future__ import annotations

from typing import Any

from segzero_ros.ros.launch_arguments import PARAMETER_ARGUMENTS, argument_help, parameter_overrides

ARGUMENT_HELP = {
    "image": "camera topic (sensor_msgs/Image); CompressedImage is read from <image>/compressed",
    "params_file": "node parameters (YAML); default: the package's config/segzero.yaml",
    "namespace": "namespace of the node (topics become /<namespace>/segzero/...)",
    "node_name": "name of the node; its topics are ~/command, ~/result, ~/mask, ~/overlay, ...",
    "log_level": "debug, info, warn or error",
    "use_rviz": "true: also start RViz with config/segzero.rviz",
    "rviz_config": "RViz layout; default: the package's config/segzero.rviz",
    "depth": "aligned depth topic (sensor_msgs/Image 16UC1 mm or 32FC1 m, registered to the colour camera)",
    "depth_camera_info": "CameraInfo of the depth topic",
    "reasoner_server": "none, transformers or vllm: start that OpenAI-compatible server for reasoner_model (the "
                       "tiny model with tiny:=true) on 127.0.0.1:reasoner_server_port, restarted if it dies, and "
                       "point the node at it (reasoner.backend openai); configure waits for it to answer",
    "reasoner_server_port": "port of the managed reasoner server (127.0.0.1 only)",
    "reasoner_server_wait_s": "how long configure waits for the managed server to answer (weights load first)",
    "reasoner_server_dtype": "dtype the managed server loads the weights in (auto, bfloat16, float16, float32)",
    "reasoner_server_args": "extra arguments for the managed server's command line (e.g. --gpu-memory-utilization "
                            "0.6 for vllm)",
    "dds_profile": "Fast DDS profile for the node (and RViz): 'auto' = the package's large-frame profile "
                   "(config/fastdds_large_frames.xml) when spatial or tracking is on and FASTDDS_DEFAULT_PROFILES_FILE "
                   "is unset; 'none'; or a path. The camera driver must use it too (export "
                   "FASTDDS_DEFAULT_PROFILES_FILE where it starts): shared memory needs both ends",
    **{argument: argument_help(argument) for argument in PARAMETER_ARGUMENTS},
}
"""Launch-only arguments described here; the ones that set node parameters describe themselves."""

__all__ = ["ARGUMENT_HELP", "PARAMETER_ARGUMENTS", "dds_profile", "generate_launch_description",
           "managed_server", "parameter_overrides"]


def rviz_installed() -> bool:
    """rviz2 is in this ROS environment (its ament index entry), so launch_ros can start it."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return True


def dds_profile(value: dict[str, str], shipped: str) -> str:
    """The Fast DDS profile file the node gets ("" = none): see the dds_profile argument."""
    import os

    choice = value.get("dds_profile", "auto").strip()
    if choice.lower() == "none":
        return ""
    if choice.lower() != "auto":
        return choice
    wants_frames = any(value.get(name, "").strip().lower() == "true" for name in ("spatial", "tracking"))
    return shipped if wants_frames and not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") else ""


def managed_server(value: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
    """The reasoner server process `reasoner_server` asks for (respawned when it dies, ended with the launcher)
    and the node parameters that point the node at it; nothing for `none`."""
    from launch.actions import ExecuteProcess

    from segzero_ros.ros.managed_server import base_url, launcher_command, server_command

    kind = value.get("reasoner_server", "none").strip().lower() or "none"
    if kind == "none":
        return [], {}
    port = int(value["reasoner_server_port"])
    tiny = value.get("tiny", "").strip().lower() == "true"
    model = value.get("reasoner_model", "").strip()
    device, dtype = value.get("device", "").strip(), value["reasoner_server_dtype"].strip()
    if tiny and not model:
        from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

        model, device, dtype = str(ensure_tiny_qwen()), "cpu", "float32"
    if not model:
        from segzero_ros.config import DEFAULT_REASONER_MODEL

        model = DEFAULT_REASONER_MODEL
    command = server_command(kind, model, port, device=device, dtype=dtype, extra=value["reasoner_server_args"])
    process = ExecuteProcess(cmd=launcher_command(command), name=f"reasoner_server_{kind}", respawn=True,
                             respawn_delay=2.0, output="screen", sigterm_timeout="10")
    parameters = {"reasoner.backend": "openai", "reasoner.base_url": base_url(port), "reasoner.model": "",
                  "reasoner.server_wait_s": float(value["reasoner_server_wait_s"])}
    return [process], parameters


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
        "dds_profile": "auto",
        "reasoner_server": "none",
        "reasoner_server_port": "8000",
        "reasoner_server_wait_s": "600",
        "reasoner_server_dtype": "auto",
        "reasoner_server_args": "",
    }
    defaults.update({argument: "" for argument in PARAMETER_ARGUMENTS})

    def launch_nodes(context: Any, *args: Any, **kwargs: Any) -> list[Any]:
        value = {name: LaunchConfiguration(name).perform(context) for name in defaults}
        image = value["image"]
        profile = dds_profile(value, os.path.join(share, "config", "fastdds_large_frames.xml"))
        environment = {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}
        nodes: list[Any] = [LogInfo(msg=f"Fast DDS profile {profile} (large depth and colour frames over shared "
                                        "memory); start the camera driver with it too")] if profile else []
        server, served = managed_server(value)
        nodes += server
        nodes += [
            Node(
                package="segzero_ros",
                executable="segzero_node",
                name=value["node_name"],
                namespace=value["namespace"],
                parameters=[value["params_file"], {**parameter_overrides(value), **served}],
                remappings=[("image", image), ("image/compressed", f"{image}/compressed"),
                            ("depth", value["depth"]), ("depth_camera_info", value["depth_camera_info"])],
                arguments=["--ros-args", "--log-level", value["log_level"]],
                additional_env=environment,
                output="screen",
                emulate_tty=True,
            )
        ]
        if value["use_rviz"].lower() == "true":
            if rviz_installed():
                nodes.append(Node(package="rviz2", executable="rviz2", arguments=["-d", value["rviz_config"]],
                                  additional_env=environment, output="log"))
            else:  # decided before anything starts: a failing rviz2 would leave the node orphaned
                nodes.insert(0, LogInfo(msg="use_rviz:=true but rviz2 is not installed (apt install "
                                            "ros-$ROS_DISTRO-rviz2): starting the node without RViz"))
        return nodes

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=ARGUMENT_HELP[name])
         for name, default in defaults.items()]
        + [OpaqueFunction(function=launch_nodes)]
    )
