"""Library progress bars off: transformers draws one for every weight load, which in a node's log (not a
terminal) is a stray line of carriage returns. The CLI prints its own progress where it matters. Also known
harmless library warnings that would otherwise greet every model load."""

from __future__ import annotations

import logging
import os
import sys

HARMLESS = {
    # torchao registers its enums for torch.compile the old way; transformers imports it on every load.
    "torch.utils._pytree": "is an Enum subclass and is now natively supported by torch.compile",
}
"""logger name → a fragment of a warning it logs that tells a user nothing they can act on."""


class _DropHarmless(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def quiet_harmless_warnings() -> None:
    """Filter the HARMLESS messages out at their loggers (idempotent; imports nothing)."""
    for name, fragment in HARMLESS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropHarmless) for existing in logger.filters):
            logger.addFilter(_DropHarmless(fragment))


def quiet_library_progress_bars() -> None:
    """huggingface_hub and transformers read the variable when imported; an already imported transformers is
    told directly. Imports nothing itself (a node on the openai backend never loads transformers)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    quiet_harmless_warnings()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
