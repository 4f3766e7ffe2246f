"""The one reading of a configured torch device ("auto", "cpu", "cuda", "cuda:N"), shared by the backends."""

from __future__ import annotations

from segzero_ros.errors import BackendUnavailableError


def resolve_torch_device(requested: str, role: str) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; an explicit CUDA request must be satisfiable.

    `role` ("reasoner", "segmenter") names the config section in the error, so the user knows which to fix.
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(f"{role} device {requested!r} was requested but torch sees no CUDA GPU; "
                                      "use device 'cpu' or 'auto'")
    return requested


def release_torch_memory() -> None:
    """After a backend drops its model: collect it now and hand torch's cached CUDA blocks back to the driver
    (another process, or the next model, may need them). Never imports torch just to free memory it does not
    hold."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
