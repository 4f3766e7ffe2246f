"""Reasoner model families: what differs between Qwen2.5-VL and Qwen3-VL checkpoints, declared once.

A released checkpoint only works with the image it was trained on and the coordinates it was trained to
answer in, so everything that depends on the family comes from one record here:

* **coordinates** — Qwen2/2.5-VL ground in ABSOLUTE pixels of the image they were fed (Seg-Zero: the 840×840
  frame); Qwen3-VL grounds in RELATIVE 0–1000 coordinates, whatever the image size.
* **image grid** — patch × merge pixels per visual token side: 14 × 2 = 28 (Qwen2.5-VL: 840² → 900 tokens),
  16 × 2 = 32 (Qwen3-VL: 832² → 676 tokens).
* **default frame** — the square the image is resized to: Seg-Zero's 840 for Qwen2.5-VL; for Qwen3-VL 840
  rounded to its 32-pixel grid, 832 (the processor would round it there anyway).
* **system turn** — Qwen2.5-VL's chat template adds "You are a helpful assistant." when none is given; Qwen3-VL's
  adds none. The reference templates ship with TRL (`trl/chat_templates/<chat_template>.jinja`).

Pure: no torch, no transformers. The reasoner backends read `config.model_type` and resolve an
:class:`AnswerFrame` with :func:`answer_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

ABSOLUTE = "absolute"
RELATIVE_1000 = "relative_1000"
COORDINATES = (ABSOLUTE, RELATIVE_1000)
RELATIVE_EXTENT = 1000
"""Relative coordinates run 0..1000 on both axes."""
AUTO = "auto"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]
    """`config.model_type` values of the family's checkpoints."""
    coordinates: str
    patch_size: int
    merge_size: int
    frame_size: int
    """The default square frame the image is resized to before the processor."""
    system_prompt: str | None
    """The system turn its chat template adds when a conversation has none (None: it adds none)."""
    chat_template: str
    """Name of the family's reference chat template in TRL (`trl/chat_templates/<name>.jinja`)."""

    @property
    def grid(self) -> int:
        """Pixels per visual token side (patch × merge): frames are rounded to multiples of it."""
        return self.patch_size * self.merge_size

    def visual_tokens(self, frame_size: int | None = None) -> int:
        """Visual tokens of a square frame: its side rounded to the grid (as the processor's smart_resize does),
        one token per grid cell."""
        side = self.rounded(frame_size if frame_size is not None else self.frame_size)
        return (side // self.grid) ** 2

    def rounded(self, side: int) -> int:
        """`side` rounded to the nearest multiple of the grid (at least one cell), as the processor does."""
        return max(self.grid, round(side / self.grid) * self.grid)


QWEN2_5_VL = ModelFamily("qwen2_5_vl", ("qwen2_vl", "qwen2_5_vl"), ABSOLUTE, 14, 2, 840,
                         "You are a helpful assistant.", "qwen2_5_vl")
QWEN3_VL = ModelFamily("qwen3_vl", ("qwen3_vl",), RELATIVE_1000, 16, 2, 832, None, "qwen3_vl")
QWEN3_VL_MOE = ModelFamily("qwen3_vl_moe", ("qwen3_vl_moe",), RELATIVE_1000, 16, 2, 832, None, "qwen3_vl")

FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (QWEN2_5_VL, QWEN3_VL, QWEN3_VL_MOE)}
FAMILY_NAMES = tuple(FAMILIES)
DEFAULT_FAMILY = QWEN2_5_VL
"""What a reasoner that cannot see its checkpoint (a server, recorded outputs) assumes unless told: Seg-Zero's."""


def family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILY_NAMES)}")
    return FAMILIES[name]


def family_of_model_type(model_type: str) -> ModelFamily:
    """The family of a checkpoint's `config.model_type`; ValueError naming the known types otherwise."""
    for candidate in FAMILIES.values():
        if model_type in candidate.model_types:
            return candidate
    known = ", ".join(t for candidate in FAMILIES.values() for t in candidate.model_types)
    raise ValueError(f"model_type {model_type!r} is not a known reasoner family ({known}); set reasoner.family "
                     "and reasoner.coordinates explicitly")


@dataclass(frozen=True)
class AnswerFrame:
    """How one reasoner sees an image and answers about it: the square frame the image is resized to, and the
    coordinates its answers are in. Answers map to original-image pixels by ×W/extent, ×H/extent."""

    family: str
    frame_size: int
    coordinates: str

    def __post_init__(self) -> None:
        if self.coordinates not in COORDINATES:
            raise ValueError(f"coordinates must be one of {', '.join(COORDINATES)}, got {self.coordinates!r}")
        if self.frame_size < 1:
            raise ValueError(f"frame size must be positive, got {self.frame_size}")

    @property
    def extent(self) -> int:
        """The answers' coordinate range: the frame's pixels (absolute) or 1000 (relative)."""
        return self.frame_size if self.coordinates == ABSOLUTE else RELATIVE_EXTENT

    def describe(self) -> str:
        return f"{self.family}, {self.frame_size}² frame, {self.coordinates} coordinates"


def answer_frame(model_family: ModelFamily, coordinates: str = AUTO, frame_size: int = 0) -> AnswerFrame:
    """The frame of a reasoner of `model_family`: `auto` / 0 take the family's own convention and frame."""
    return AnswerFrame(model_family.name, frame_size or model_family.frame_size,
                       model_family.coordinates if coordinates == AUTO else coordinates)


def resolve_frame(family_name: str = AUTO, coordinates: str = AUTO, frame_size: int = 0,
                  model_type: str | None = None) -> AnswerFrame:
    """The frame of a reasoner configured with these option values: the named family, or the checkpoint's
    `model_type` (None when the backend cannot see its checkpoint: Seg-Zero's family)."""
    if family_name != AUTO:
        chosen = family(family_name)
    elif model_type is not None:
        chosen = family_of_model_type(model_type)
    else:
        chosen = DEFAULT_FAMILY
    return answer_frame(chosen, coordinates, frame_size)


SEG_ZERO_FRAME = answer_frame(QWEN2_5_VL)
"""The reference system's: Qwen2.5-VL, 840×840, absolute pixels."""
