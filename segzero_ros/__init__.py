"""Seg-Zero reasoning segmentation for ROS 2: library, CLI and perception node."""

from __future__ import annotations

import pkgutil

# The ROS message generator installs `segzero_ros.msg` into its own site-packages/segzero_ros folder, which an
# editable install (or a colcon symlink install) of this library would otherwise shadow. extend_path adds every
# `segzero_ros` folder on sys.path to this package's search path, so both halves import side by side.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
