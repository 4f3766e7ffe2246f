"""Datasets the toolkit generates itself: synthetic referring-segmentation scenes for smoke tests, training
warm-ups and evaluation demos, written in the same folder format `segzero eval` reads."""

from segzero_ros.data.synthetic import (
    COLORS,
    SHAPE_KINDS,
    Shape,
    SyntheticSample,
    generate_sample,
    generate_samples,
    iter_samples,
    resolve_expression,
)

__all__ = [
    "COLORS",
    "SHAPE_KINDS",
    "Shape",
    "SyntheticSample",
    "generate_sample",
    "generate_samples",
    "iter_samples",
    "resolve_expression",
]
