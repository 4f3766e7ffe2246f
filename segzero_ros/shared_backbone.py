"""One vision backbone for all the models loaded from one SAM3 (or EdgeTAM) checkpoint, and one run of it per image.

facebook/sam3 holds the concept detector (Sam3Model) and the tracker (Sam3TrackerModel, Sam3TrackerVideoModel) on
one perception-encoder backbone, most of its 848M parameters. Loaded one by one, the sam3_concept reasoner, the
sam3 segmenter and the sam3 tracker would hold that backbone three times and run it twice on every command's
image. `share_backbone` makes every model loaded from the same checkpoint, device and dtype hold the first one's
backbone (after checking its weights are equal), and that backbone remembers its last input and output: the
segmenter encoding the image the reasoner has just encoded gets the stored output. That is exact, not an
approximation: the processors of one checkpoint resize and normalise identically, so the pixels are equal and
the backbone would compute the same output again.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
_SHARED: dict[tuple[str, str, str], weakref.ref[Any]] = {}


class CachedForward:
    """Replaces a backbone's `forward`: the same pixels as the last call (inference, no extra arguments) return
    the last output. `computed` and `reused` count calls, for tests and benchmarks."""

    def __init__(self, forward: Any) -> None:
        self.inner = forward  # the backbone's own forward; `segmenter.compile` puts its compiled version here
        self._lock = threading.Lock()
        self._last: tuple[Any, Any] | None = None
        self.computed = 0
        self.reused = 0

    def __call__(self, pixel_values: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        if (args or kwargs or torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch._C._get_tracing_state() is not None):  # training, export, compile, odd calls: plain
            return self.inner(pixel_values, *args, **kwargs)
        with self._lock:
            if self._last is not None and _same_tensor(self._last[0], pixel_values):
                self.reused += 1
                return self._last[1]
            output = self.inner(pixel_values)
            self.computed += 1
            self._last = (pixel_values, output)
            return output

    def forget(self) -> None:
        """Drop the stored input and output (their memory)."""
        with self._lock:
            self._last = None


def _same_tensor(a: Any, b: Any) -> bool:
    import torch

    return bool(a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b))


def share_backbone(model: Any, source: str, device: Any, dtype: Any) -> bool:
    """Give `model` (its `vision_encoder.backbone`) the backbone an earlier model loaded from `source` on `device`
    in `dtype` holds, when its weights are equal; otherwise make `model`'s own the one later models share.
    Returns whether it now shares an earlier model's backbone."""
    backbone = model.vision_encoder.backbone
    path = Path(source).expanduser()
    key = (str(path.resolve()) if path.is_dir() else source, str(device), str(dtype))
    with _LOCK:
        reference = _SHARED.get(key)
        shared = reference() if reference is not None else None
        if shared is not None and shared is not backbone and _equal_weights(shared, backbone):
            model.vision_encoder.backbone = shared
            return True
        if not isinstance(backbone.__dict__.get("forward"), CachedForward):
            backbone.forward = CachedForward(backbone.forward)
        _SHARED[key] = weakref.ref(backbone)
        return False


def cache_of(model: Any) -> CachedForward | None:
    """The backbone cache of a model `share_backbone` has seen (None for any other)."""
    forward = model.vision_encoder.backbone.__dict__.get("forward")
    return forward if isinstance(forward, CachedForward) else None


def _equal_weights(a: Any, b: Any) -> bool:
    import torch

    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(
        first[name].shape == second[name].shape and torch.equal(first[name], second[name]) for name in first)
