"""The ROS 2 side of segzero_ros: image conversion, node parameters and the lifecycle perception node.

Everything here needs the ROS 2 Python packages (rclpy, sensor_msgs) and, for the node, this package's
generated messages; the rest of the library does not.
"""
