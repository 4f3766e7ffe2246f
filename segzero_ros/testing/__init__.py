"""Test doubles for reliability tests: backends that fail, hang or run out of memory on cue.

Part of the library (not of tests/) so benchmarks, plug-in authors and the ROS node tests can inject the
same faults into anything that builds a pipeline through `segzero_ros.backends`.
"""
