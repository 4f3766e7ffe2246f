"""Shared fixtures. Tiny models are built once per cache folder and reused across tests and runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    """Two torch threads stall when both cores are busy (ENVIRONMENT.md); tests use one."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_cache_root() -> Path:
    from segzero_ros.tiny import default_cache_root

    return default_cache_root()


@pytest.fixture(scope="session")
def tiny_qwen_dir(tiny_cache_root: Path) -> Path:
    from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

    return ensure_tiny_qwen(tiny_cache_root)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tiny_cache_root: Path) -> Path:
    from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

    return ensure_tiny_qwen(tiny_cache_root, "qwen3_vl")


@pytest.fixture(scope="session")
def tiny_sam2(tiny_cache_root: Path):  # -> segzero_ros.tiny.sam2_model.TinySam2
    from segzero_ros.tiny.sam2_model import ensure_tiny_sam2

    return ensure_tiny_sam2(tiny_cache_root)
