"""An int8 SAM2 encoder for onnxruntime's CPU provider, derived from the fp32 export and cached.

Why: at fp32 onnxruntime's CPU provider runs the encoder's GEMMs at PyTorch's speed (docs/sam2_export.md),
so on a CPU-only machine it cannot be much faster than the torch backend. With int8 weights (per output
channel, symmetric) and activations quantised per call, MLAS runs those GEMMs on the CPU's integer units
(VNNI, AMX-int8), several times faster than fp32. This is onnxruntime's standard dynamic quantisation
(`onnxruntime.quantization.quantize_dynamic`) of the MatMuls with constant weights, applied after the
CPU rewrite (segzero_ros.segmentation.cpu_graph), so attention, GELU, LayerNorm, convolutions and the whole
decoder stay fp32.

It changes results (the fp32 graphs are the parity reference): measured differences are in
docs/sam2_export.md, and `segmenter.precision: int8` is never chosen by `auto`. The shipped graph folder
is never written (it may be read-only on a robot); the derived encoder goes to the cache, keyed by the
fp32 encoder's sha256, the onnxruntime version and the recipe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from segzero_ros.errors import BackendUnavailableError, ModelLoadError
from segzero_ros.segmentation.cpu_graph import CpuRewriteReport

INT8_FORMAT_VERSION = 1
"""Bump when the recipe or the rewrite before it changes, so cached encoders are rebuilt."""
CACHE_SUBFOLDER = "sam2-onnx-cpu-int8"
ENCODER_FILE = "encoder.int8.onnx"
INFO_FILE = "int8.json"

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""x86 CPU flags (as /proc/cpuinfo spells them) of the integer dot-product units MLAS's u8·s8 kernels use."""

Report = Callable[[str], None]
"""Called with a line of news for the person waiting (what is being built, where it went)."""


def _silent(message: str) -> None:
    del message


@dataclass(frozen=True)
class Int8Recipe:
    """How the encoder's weights are quantised (part of the cache key)."""

    per_channel: bool = True
    """One scale per output channel: Hiera's projections have channels of very different ranges."""
    reduce_range: bool = False
    """7-bit weights: needed on x86 CPUs without VNNI, whose u8·s8 instruction saturates 16-bit sums."""


@dataclass(frozen=True)
class Int8Encoder:
    """A cached int8 encoder graph and how it was made."""

    path: Path
    rewrite: CpuRewriteReport
    quantized_matmuls: int
    recipe: Int8Recipe
    built: bool
    """True when this call built it, False when it came from the cache."""


def needs_reduced_range(machine: str | None = None, cpu_flags: frozenset[str] | None = None) -> bool:
    """True on x86 CPUs lacking VNNI/AMX-int8 (onnxruntime's quantisation guide: use reduce_range there)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return False  # ARM's int8 dot products do not saturate
    flags = cpu_flags if cpu_flags is not None else _linux_cpu_flags()
    return not (flags & VNNI_FLAGS) if flags is not None else True


def default_recipe() -> Int8Recipe:
    return Int8Recipe(per_channel=True, reduce_range=needs_reduced_range())


def ensure_int8_encoder(fp32_encoder: Path, encoder_sha256: str, *, cache_root: Path | None = None,
                        recipe: Int8Recipe | None = None, report: Report = _silent) -> Int8Encoder:
    """The cached int8 encoder for the fp32 graph `fp32_encoder` (whose manifest sha256 is given), built on
    first use: seconds for hiera-tiny, ~22 s and ~4.6 GB peak memory for hiera-large."""
    from segzero_ros.files import build_folder_atomically, default_cache_root

    ort_version = _onnxruntime_version()
    recipe = recipe or default_recipe()
    key_fields = {"format": INT8_FORMAT_VERSION, "encoder_sha256": encoder_sha256, "onnxruntime": ort_version,
                  **asdict(recipe)}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    folder = (cache_root or default_cache_root()) / CACHE_SUBFOLDER / f"{encoder_sha256[:12]}-{key}"
    built = False

    def build(staging: Path) -> None:
        nonlocal built
        report(f"quantising the SAM2 encoder to int8 for onnxruntime's CPU provider once, into {folder}")
        started = time.perf_counter()
        rewrite, matmuls = quantize_encoder(fp32_encoder, staging / ENCODER_FILE, recipe)
        info = {"key": key_fields, "source": str(fp32_encoder), "rewrite": asdict(rewrite),
                "quantized_matmuls": matmuls, "seconds": round(time.perf_counter() - started, 1)}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        built = True

    if not _is_complete(folder):
        build_folder_atomically(folder, build, _is_complete)
    info = json.loads((folder / INFO_FILE).read_text())
    return Int8Encoder(path=folder / ENCODER_FILE, rewrite=CpuRewriteReport(**info["rewrite"]),
                       quantized_matmuls=int(info["quantized_matmuls"]), recipe=recipe, built=built)


def quantize_encoder(fp32_encoder: Path, output: Path, recipe: Int8Recipe) -> tuple[CpuRewriteReport, int]:
    """CPU rewrite, then dynamic int8 quantisation of every MatMul whose second input is a weight.

    Returns the rewrite report and how many MatMuls became integer MatMuls.
    """
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise BackendUnavailableError("int8 encoders need the onnx and onnxruntime packages "
                                      "(pip install onnx onnxruntime)") from error
    from segzero_ros.segmentation.cpu_graph import load_encoder_for_cpu

    model, rewrite = load_encoder_for_cpu(fp32_encoder)
    with _without_quantizer_advice():
        quantize_dynamic(model, output, op_types_to_quantize=["MatMul"], per_channel=recipe.per_channel,
                         reduce_range=recipe.reduce_range, weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True})
    del model
    quantized = onnx.load(str(output), load_external_data=False)
    matmuls = sum(node.op_type == "MatMulInteger" for node in quantized.graph.node)
    if matmuls == 0:
        raise ModelLoadError(f"int8 quantisation of {fp32_encoder} changed no MatMul: not a SAM2 encoder export?")
    return rewrite, matmuls


@contextlib.contextmanager
def _without_quantizer_advice() -> Iterator[None]:
    """quantize_dynamic advises "pre-processing" through the root logger, which would also configure root
    logging in the caller's process (a ROS node's, say). Its shape-inference pre-pass is for static and
    per-channel Conv quantisation; these MatMul weights have static shapes already."""
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    advice = _DropMessages("consider to run pre-processing", "consider pre-processing")
    if placeholder is not None:
        root.addHandler(placeholder)
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        if placeholder is not None:
            root.removeHandler(placeholder)


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self._fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(fragment in message for fragment in self._fragments)


def _is_complete(folder: Path) -> bool:
    return (folder / ENCODER_FILE).is_file() and (folder / INFO_FILE).is_file()


def _onnxruntime_version() -> str:
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError("int8 encoders need onnxruntime (pip install onnxruntime)") from error
    return str(onnxruntime.__version__)


def _linux_cpu_flags() -> frozenset[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None
