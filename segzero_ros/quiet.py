"""Library progress bars off: transformers draws one for every weight load, which in a node's log (not a
terminal) is a stray line of carriage returns. The CLI prints its own progress where it matters."""

from __future__ import annotations

import os
import sys


def quiet_library_progress_bars() -> None:
    """huggingface_hub and transformers read the variable when imported; an already imported transformers is
    told directly. Imports nothing itself (a node on the openai backend never loads transformers)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
