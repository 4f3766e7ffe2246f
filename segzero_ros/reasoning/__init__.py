"""Reasoners: models that read an image and a command and answer with a box and two points."""

from segzero_ros.reasoning.base import Reasoner, ReasonerOutput

__all__ = ["Reasoner", "ReasonerOutput"]
