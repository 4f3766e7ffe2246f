"""Pure Seg-Zero logic: no torch, no ROS, no transformers. Safe to import anywhere, fast to test."""
