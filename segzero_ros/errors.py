"""Errors that cross module boundaries; each one carries a message meant for the person running things."""

from __future__ import annotations


class SegZeroError(Exception):
    """Base for the package's own errors."""


class ModelLoadError(SegZeroError):
    """A model could not be loaded; the message names the model and how to point at local weights."""


class BackendUnavailableError(SegZeroError):
    """A configured backend needs a package or device this machine lacks."""


class ReasonerTimeoutError(SegZeroError):
    """A reasoner (e.g. a remote server) did not answer within its configured time."""


class CanceledError(SegZeroError):
    """The command was canceled while it ran; no result but the cancellation itself."""
