"""Segmenters: promptable models that turn a box and positive points into a pixel mask."""

from segzero_ros.segmentation.base import Segmenter, SegmentOutput

__all__ = ["SegmentOutput", "Segmenter"]
