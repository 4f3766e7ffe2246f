"""A tiny SAM2 built offline: the sam2 package's own hiera-tiny architecture with seeded random weights.

It exercises the real loading path (hydra config + `{"model": state_dict}` checkpoint through `build_sam2`)
and the real image predictor, at a 256 px encoder input so `set_image` takes a fraction of a second on one
CPU core. The masks it predicts are meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.config import SegmenterConfig
from segzero_ros.files import build_folder_atomically

TINY_SAM2_RECIPE_VERSION = 1
"""Bump when anything below changes the built checkpoint, so stale caches are not reused."""
TINY_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
TINY_SAM2_IMAGE_SIZE = 256
"""Encoder input side: a multiple of 32 (Hiera's total stride); 256 keeps set_image ≈ 0.25 s on one core."""
TINY_SAM2_SEED = 0
CHECKPOINT_FILENAME = "tiny_sam2.pt"


@dataclass(frozen=True)
class TinySam2:
    config: str
    """sam2 package config name, as `build_sam2` takes it."""
    checkpoint: Path
    image_size: int

    def segmenter_config(self, device: str = "cpu", backend: str = "sam2", **options: Any) -> SegmenterConfig:
        """The config that loads this model through a regular backend (sam2 by default; `options` are that
        backend's own fields, e.g. onnx_dir for onnxruntime)."""
        from segzero_ros.registry import backend as registered

        config = registered("segmenter", backend).make_config(  # the box baseline reads none of the model fields
            config=self.config, checkpoint=str(self.checkpoint), image_size=self.image_size, device=device, **options)
        assert isinstance(config, SegmenterConfig)
        return config


def tiny_sam2_folder(cache_root: Path) -> Path:
    """Recipe-versioned folder, so a changed recipe builds afresh next to the old cache."""
    return cache_root / f"sam2.1-hiera-t-{TINY_SAM2_IMAGE_SIZE}px-r{TINY_SAM2_RECIPE_VERSION}"


def ensure_tiny_sam2(cache_root: Path | None = None) -> TinySam2:
    """Build the tiny SAM2 checkpoint once per cache root; later calls only check that it exists."""
    if cache_root is None:
        from segzero_ros.files import default_cache_root

        cache_root = default_cache_root()
    folder = tiny_sam2_folder(cache_root)
    tiny = TinySam2(config=TINY_SAM2_CONFIG, checkpoint=folder / CHECKPOINT_FILENAME,
                    image_size=TINY_SAM2_IMAGE_SIZE)
    if not tiny.checkpoint.is_file():
        build_folder_atomically(folder, lambda staging: _write_tiny_checkpoint(staging / CHECKPOINT_FILENAME),
                                lambda built: (built / CHECKPOINT_FILENAME).is_file())
    return tiny


def _write_tiny_checkpoint(path: Path) -> None:
    import torch
    from sam2.build_sam import build_sam2

    # fork_rng keeps the caller's global RNG untouched while the weights come from a fixed seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SAM2_SEED)
        model = build_sam2(
            TINY_SAM2_CONFIG,
            ckpt_path=None,
            device="cpu",
            hydra_overrides_extra=[f"++model.image_size={TINY_SAM2_IMAGE_SIZE}"],
        )
    torch.save({"model": model.state_dict()}, path)
