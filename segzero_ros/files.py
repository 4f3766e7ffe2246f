"""File-system helpers shared by the model caches, exports, evaluation outputs and loaders.

Several processes (eval shards, parallel test workers, a node and a CLI) may write the same cache or output
folder at once, so every file and folder is written under a private name and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0
"""How long a model load waits to learn whether the Hugging Face hub can be reached at all."""


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write `data` (str as UTF-8) beside `path` under a private name, then rename: no reader sees half a file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; these files are meant to be shared
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def build_folder_atomically(target: Path, build: Callable[[Path], None],
                            is_complete: Callable[[Path], bool]) -> None:
    """Run `build` on a private folder beside `target`, then rename it into place.

    Concurrent callers never see a half-built folder; when two build at once the first rename wins and the
    other copy is discarded. A `target` that exists but is not complete is debris of an interrupted
    non-atomic copy (never a live build), so it is replaced.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; caches are meant to be shared like any other
        if target.exists() and not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def looks_like_local_path(name: str) -> bool:
    """Whether a model or dataset name was meant as a path, so a typo is reported as a missing path rather
    than a failed hub lookup. Hub ids are "owner/name"; anything absolute, relative ("./", "../", "~") or
    deeper is a path."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set to a true value (huggingface_hub's own reading of it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_problem(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why nothing can be downloaded from the Hugging Face hub, found within `timeout_s`; None when it can be
    reached. Model loads ask this before a download, so an offline machine fails in seconds with the way out
    instead of retrying the hub for minutes."""
    if hub_offline():
        return "HF_HUB_OFFLINE=1 forbids downloads"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return (f"the hub ({host}:{port}) cannot be reached ({exc.strerror or exc}); on a machine without "
                "internet set HF_HUB_OFFLINE=1 so that nothing waits for the network")
    return None


def download_hint(repo_id: str, what: str = "", repo_type: str = "") -> str:
    """The command that fetches `repo_id` on a connected machine (huggingface_hub's `hf` CLI)."""
    kind = f" --repo-type {repo_type}" if repo_type else ""
    return f"`hf download{kind} {repo_id}{' ' + what if what else ''} --local-dir DIR`"


def default_cache_root() -> Path:
    """Cache for tiny models, ONNX exports and TensorRT engines.

    $SEGZERO_CACHE, else $XDG_CACHE_HOME/segzero_ros, else ~/.cache/segzero_ros.
    """
    explicit = os.environ.get("SEGZERO_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "segzero_ros"
