"""One GPU suite: the robot-side figures of every model family in one short run, one table, one JSON.

    python benchmarks/gpu_suite.py --json gpu_suite.json             # one H100/H200-class GPU, ≤ 8 min
    python benchmarks/gpu_suite.py --dry-run                          # the same code, tiny models, CPU, seconds

REAL architectures with random weights, built in bf16 directly on the GPU (no download; speed does not depend on
the weights): Qwen2.5-VL-7B (Seg-Zero-7B's), Qwen3-VL-4B and -8B; SAM2 hiera-l, the SAM3 tracker, EdgeTAM.

- reasoners, through the node's own TransformersReasoner: prefill of an 840² (832²) frame + Seg-Zero prompt,
  decode tokens/s, a 150-token answer — eager, static cache (compiled by transformers on CUDA; the compile is
  paid in a warm-up, outside the timing), and torchao int8 / int4 weight-only — with peak GPU memory;
- segmenters, through the node's segmenter and tracker backends: image encode and one decode at 1280×720, a
  tracked frame at 640×480 once the memory window is full — eager and compiled (`segmenter.compile`: the same
  parts compiled, the same warm-up; "ready s" is build + compile + warm-up);
- the pipeline: command → mask = 150-token answer + encode + decode, for Seg-Zero-7B + SAM2-l and
  Qwen3-VL-4B + EdgeTAM (random weights cannot answer, so the stages are timed one by one and added);
- the HBM limit: bandwidth from a device-to-device copy in the same run; decode's share of it is
  tokens/s × weight bytes / bandwidth.

What a machine with only torch + transformers must add: benchmarks/gpu_requirements.txt.
--dry-run (CI) runs every row on the tiny offline models, so the suite cannot rot (its compiled rows in torch's
force_eager stance: wrappers and warm-up, not inductor's CPU code generation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_pipeline imports its neighbours by name

ANSWER_TOKENS = 150


@dataclass(frozen=True)
class Setting:
    device: str
    dtype: Any
    dry: bool
    answer_tokens: int
    repeats: int


def timed(function: Callable[[], Any], setting: Setting, repeats: int | None = None) -> float:
    """Median wall time in ms (CUDA synchronised), after one untimed call."""
    import torch

    def once() -> float:
        started = time.perf_counter()
        function()
        if setting.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - started) * 1000

    once()
    return statistics.median(once() for _ in range(repeats or setting.repeats))


def peak_gib(setting: Setting) -> float | None:
    import torch

    if not setting.device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def reset_peak(setting: Setting) -> None:
    import torch

    if setting.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# --- reasoners ----------------------------------------------------------------------------------------------


def qwen3_vl_config(size: str) -> Any:
    """Qwen3-VL-4B / -8B's architecture, written out from their published configs (no download; parameter
    counts 4.44 B and 8.77 B, as released)."""
    from transformers import Qwen3VLConfig

    text = {"4b": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36},
            "8b": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36}}[size]
    # 2B/4B see through a 24-layer, 1024-wide vision tower; 8B through the 27-layer, 1152-wide one.
    vision = {"4b": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                     "deepstack_visual_indexes": [5, 11, 17]},
              "8b": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                     "deepstack_visual_indexes": [8, 16, 24]}}[size]
    return Qwen3VLConfig(
        text_config={**text, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                     "vocab_size": 151936, "max_position_embeddings": 262144, "rope_theta": 5000000.0,
                     "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                      "mrope_interleaved": True}},
        vision_config={**vision, "num_heads": 16, "out_hidden_size": text["hidden_size"], "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304},
        tie_word_embeddings=size == "4b", image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653)


def reasoner_specs(setting: Setting) -> list[tuple[str, Callable[[], tuple[Any, Any]]]]:
    """(name, build → (model, processor)) of each reasoner to measure."""
    import transformers

    from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

    hf: Any = transformers

    def tiny(family: str) -> Callable[[], tuple[Any, Any]]:
        def build() -> tuple[Any, Any]:
            folder = ensure_tiny_qwen(family=family)
            return (hf.AutoModelForImageTextToText.from_pretrained(folder).eval(),
                    hf.AutoProcessor.from_pretrained(folder))
        return build

    def real(config: Callable[[], Any], family: str) -> Callable[[], tuple[Any, Any]]:
        def build() -> tuple[Any, Any]:
            import torch

            # The tiny processor's tokenizer has Qwen's special tokens at their real ids; the image processor is
            # the released one (patch 14 or 16, merge 2, the checkpoints' pixel limits).
            processor = hf.AutoProcessor.from_pretrained(ensure_tiny_qwen(family=family))
            patch = 14 if family == "qwen2_5_vl" else 16
            processor.image_processor = hf.Qwen2VLImageProcessor(
                patch_size=patch, merge_size=2, min_pixels=(patch * 2) ** 2 * 4, max_pixels=16384 * (patch * 2) ** 2)
            previous = torch.get_default_dtype()
            torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the GPU: no fp32 copy first
            try:
                with torch.device(setting.device):
                    model = hf.AutoModelForImageTextToText.from_config(config()).eval()
            finally:
                torch.set_default_dtype(previous)
            return model, processor
        return build

    if setting.dry:
        return [("tiny Qwen2.5-VL", tiny("qwen2_5_vl")), ("tiny Qwen3-VL", tiny("qwen3_vl"))]
    from benchmarks.bench_pipeline import real_qwen_7b_config

    return [("Qwen2.5-VL-7B", real(real_qwen_7b_config, "qwen2_5_vl")),
            ("Qwen3-VL-4B", real(lambda: qwen3_vl_config("4b"), "qwen3_vl")),
            ("Qwen3-VL-8B", real(lambda: qwen3_vl_config("8b"), "qwen3_vl"))]


def quantize(model: Any, kind: str) -> None:
    """torchao weight-only quantization of the language model's linear layers, in place."""
    import torchao.quantization as ao

    config = ao.Int8WeightOnlyConfig() if kind == "int8" else ao.Int4WeightOnlyConfig(group_size=128)
    ao.quantize_(model.model.language_model, config)


def measure_reasoner(name: str, build: Callable[[], tuple[Any, Any]], setting: Setting,
                     image: Any) -> list[dict[str, Any]]:
    """One row per generation path: eager, static, and the torchao weight-only ones available here."""
    import importlib.util

    modes = ["eager", "static"]
    if importlib.util.find_spec("torchao") is not None:
        modes += ["int8"] + (["int4"] if setting.device.startswith("cuda") else [])
    return [measure_mode(name, build, mode, setting, image) for mode in modes]


def measure_mode(name: str, build: Callable[[], tuple[Any, Any]], mode: str, setting: Setting,
                 image: Any) -> dict[str, Any]:
    import torch

    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.reasoning.transformers_backend import TransformersReasoner, prepare_batch

    reset_peak(setting)
    model, processor = build()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    if mode in ("int8", "int4"):
        quantize(model, mode)
    weight_bytes = _tensor_bytes(model)
    config = TransformersReasonerConfig(model=name, generation="static" if mode == "static" else "eager",
                                        max_new_tokens=setting.answer_tokens, device=setting.device)
    reasoner = TransformersReasoner(model, processor, config)
    warm_up_s = reasoner.warm_up()  # static on CUDA: transformers compiles the decode step here
    inputs = prepare_batch(reasoner.processor, [image], ["the thing I can cut bread with"],
                           frame_size=reasoner.answer_frame.frame_size).to(setting.device)
    cache = {"cache_implementation": "static"} if mode == "static" else {}

    def prefill() -> None:
        with torch.inference_mode():
            model(**inputs)

    def answer() -> None:
        with torch.inference_mode():
            model.generate(**inputs, do_sample=False, use_cache=True, max_new_tokens=setting.answer_tokens,
                           min_new_tokens=setting.answer_tokens, **cache)

    prefill_ms, answer_ms = timed(prefill, setting), timed(answer, setting)
    decode_s = max(answer_ms - prefill_ms, 1e-6) / 1000
    return {"model": name, "mode": mode, "parameters_b": round(parameters / 1e9, 3),
            "weight_gib": round(weight_bytes / 2**30, 2), "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "prefill_ms": round(prefill_ms, 1), "decode_tokens_per_s": round(setting.answer_tokens / decode_s, 1),
            "answer_ms": round(answer_ms, 1), "warm_up_s": round(warm_up_s, 1), "peak_gib": peak_gib(setting)}


def _tensor_bytes(model: Any) -> int:
    """Bytes the model's weights take (torchao tensors count their packed data)."""
    total = 0
    for tensor in model.state_dict().values():
        inner = getattr(tensor, "__tensor_flatten__", None)
        if inner is not None:
            names, _ = tensor.__tensor_flatten__()
            total += sum(getattr(tensor, part).numel() * getattr(tensor, part).element_size() for part in names)
        else:
            total += tensor.numel() * tensor.element_size()
    return total


# --- segmenters ---------------------------------------------------------------------------------------------


SEGMENTER_MODES = ("eager", "compiled")


def segmenter_specs(setting: Setting) -> list[tuple[str, Callable[[bool], tuple[Any, Any]]]]:
    """(name, build(compiled) → (segmenter, tracker)); compiled builds come back compiled and warmed up."""
    if setting.dry:
        from segzero_ros.backends import build_segmenter, build_tracker
        from segzero_ros.tiny import tiny_segmenter_config

        def tiny(backend: str) -> Callable[[bool], tuple[Any, Any]]:
            def build(compiled: bool) -> tuple[Any, Any]:
                config = tiny_segmenter_config(backend, compile=compiled)
                return build_segmenter(config), build_tracker(config)
            return build

        return [("tiny SAM2", tiny("sam2")), ("tiny SAM3 tracker", tiny("sam3")), ("tiny EdgeTAM", tiny("edgetam"))]
    import torch

    from benchmarks.bench_segmenters import build

    def real(name: str) -> Callable[[bool], tuple[Any, Any]]:
        return lambda compiled: build(name, setting.device, torch.bfloat16, compile=compiled)[:2]

    return [("SAM2 hiera-l", real("sam2-l")), ("SAM3 tracker", real("sam3")), ("EdgeTAM", real("edgetam"))]


def measure_segmenter(name: str, build: Callable[[bool], tuple[Any, Any]], setting: Setting) -> list[dict[str, Any]]:
    """One row per mode. The dry run's compiled rows run in torch's force_eager stance: the compile wrappers and
    the warm-up, without inductor's minutes of CPU code generation (tests/test_segmenter_compile.py, opt-in, has
    inductor really compile the tiny models)."""
    import contextlib

    import torch

    rows = []
    for mode in SEGMENTER_MODES:
        compiled = mode == "compiled"
        stance = torch.compiler.set_stance("force_eager") if compiled and setting.dry else contextlib.nullcontext()
        with stance:
            rows.append(_measure_segmenter_mode(name, build, compiled, setting) | {"mode": mode})
    return rows


def _measure_segmenter_mode(name: str, build: Callable[[bool], tuple[Any, Any]], compiled: bool,
                            setting: Setting) -> dict[str, Any]:
    from benchmarks.bench_tracking import frames as moving_disc
    from segzero_ros.core.geometry import Box, ObjectPrompt, Point

    reset_peak(setting)
    started = time.perf_counter()
    segmenter, tracker = build(compiled)  # compiled: compiles and warms up here
    ready_s = time.perf_counter() - started
    large = moving_disc(1, 1280, 720)[0]
    prompt = ObjectPrompt(Box(130, 170, 270, 310), (Point(200, 240), Point(215, 250)))
    encode_ms = timed(lambda: segmenter.set_image(large), setting)
    decode_ms = timed(lambda: segmenter.segment(prompt), setting)
    segmenter.close()
    window = 4 if setting.dry else 20  # past the 16-frame memory window: the tracker works at full memory
    clip = moving_disc(window + setting.repeats + 2)
    tracker.start(clip[0], prompt)
    for frame in clip[1:window]:
        tracker.track(frame)
    remaining = iter(clip[window:])
    tracked_ms = timed(lambda: tracker.track(next(remaining)), setting, repeats=setting.repeats)
    tracker.close()
    return {"model": name, "ready_s": round(ready_s, 1), "encode_ms": round(encode_ms, 1),
            "decode_ms": round(decode_ms, 2), "tracked_frame_ms": round(tracked_ms, 1),
            "tracked_fps": round(1000 / tracked_ms, 1), "peak_gib": peak_gib(setting)}


# --- bandwidth and the table ----------------------------------------------------------------------------------


def copy_bandwidth_gbs(setting: Setting) -> float:
    """Device memory bandwidth from a device-to-device copy (read + write), GB/s."""
    import torch

    size = 2**24 if setting.dry else 2**30
    source = torch.empty(size, dtype=torch.uint8, device=setting.device)
    target = torch.empty_like(source)
    milliseconds = timed(lambda: target.copy_(source), setting, repeats=5)
    return round(2 * size / (milliseconds / 1000) / 1e9, 1)


PIPELINES = ((("Qwen2.5-VL-7B", "tiny Qwen2.5-VL"), ("SAM2 hiera-l", "tiny SAM2")),
             (("Qwen3-VL-4B", "tiny Qwen3-VL"), ("EdgeTAM", "tiny EdgeTAM")))


def pipeline_rows(reasoners: list[dict[str, Any]], segmenters: list[dict[str, Any]],
                  setting: Setting) -> list[dict[str, Any]]:
    rows = []
    for (real_reasoner, tiny_reasoner), (real_segmenter, tiny_segmenter) in PIPELINES:
        reasoner_name = tiny_reasoner if setting.dry else real_reasoner
        segmenter_name = tiny_segmenter if setting.dry else real_segmenter
        segmenter = min((row for row in segmenters if row["model"] == segmenter_name),
                        key=lambda row: row["encode_ms"] + row["decode_ms"])  # its faster mode
        for reasoner in (row for row in reasoners if row["model"] == reasoner_name):
            total = reasoner["answer_ms"] + segmenter["encode_ms"] + segmenter["decode_ms"]
            rows.append({"reasoner": reasoner_name, "mode": reasoner["mode"], "segmenter": segmenter_name,
                         "segmenter_mode": segmenter["mode"], "command_to_mask_ms": round(total, 1)})
    return rows


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['device']} | {result['answer_tokens']}-token answers | copy bandwidth "
          f"{result['bandwidth_gbs']} GB/s")
    print(f"{'reasoner':<18}{'mode':<8}{'prefill ms':>11}{'tok/s':>9}{'answer ms':>11}{'of HBM':>8}"
          f"{'weights GiB':>12}{'peak GiB':>10}")
    for row in result["reasoners"]:
        share = f"{row['hbm_share']:.0%}" if row.get("hbm_share") is not None else "-"
        print(f"{row['model']:<18}{row['mode']:<8}{row['prefill_ms']:>11}{row['decode_tokens_per_s']:>9}"
              f"{row['answer_ms']:>11}{share:>8}{row['weight_gib']:>12}{row['peak_gib'] or '-'!s:>10}")
    print(f"\n{'segmenter':<20}{'mode':<10}{'ready s':>8}{'encode ms':>10}{'decode ms':>10}{'tracked ms':>11}"
          f"{'fps':>7}{'peak GiB':>10}")
    for row in result["segmenters"]:
        print(f"{row['model']:<20}{row['mode']:<10}{row['ready_s']:>8}{row['encode_ms']:>10}{row['decode_ms']:>10}"
              f"{row['tracked_frame_ms']:>11}{row['tracked_fps']:>7}{row['peak_gib'] or '-'!s:>10}")
    print(f"\n{'pipeline':<56}{'command → mask ms':>18}")
    for row in result["pipelines"]:
        label = f"{row['reasoner']} ({row['mode']}) + {row['segmenter']} ({row['segmenter_mode']})"
        print(f"{label:<56}{row['command_to_mask_ms']:>18}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: every row, in seconds")
    parser.add_argument("--device", default="cuda", help="torch device of the real run (default cuda)")
    parser.add_argument("--repeats", type=int, help="timed calls per figure, median (default 3; 1 dry)")
    parser.add_argument("--answer-tokens", type=int, help=f"tokens per answer (default {ANSWER_TOKENS}; 8 dry)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from segzero_ros.quiet import quiet_harmless_warnings

    quiet_harmless_warnings()
    if args.dry_run:
        torch.set_num_threads(1)
        setting = Setting("cpu", torch.float32, True, args.answer_tokens or 8, args.repeats or 1)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: run on a GPU machine, or --dry-run")
        setting = Setting(args.device, torch.bfloat16, False, args.answer_tokens or ANSWER_TOKENS, args.repeats or 3)
    started = time.perf_counter()
    device_name = "CPU (dry run, tiny models)" if setting.dry else torch.cuda.get_device_name(setting.device)
    image = (np.random.default_rng(0).random((720, 1280, 3)) * 255).astype(np.uint8)
    bandwidth = copy_bandwidth_gbs(setting)
    reasoners: list[dict[str, Any]] = []
    for name, build in reasoner_specs(setting):
        for row in measure_reasoner(name, build, setting, image):
            row["hbm_share"] = round(row["decode_tokens_per_s"] * row["weight_gib"] * 2**30 / (bandwidth * 1e9), 3)
            reasoners.append(row)
            print(json.dumps(row), flush=True)
    segmenters = []
    for name, build in segmenter_specs(setting):
        for row in measure_segmenter(name, build, setting):
            segmenters.append(row)
            print(json.dumps(row), flush=True)
    result = {"device": device_name, "answer_tokens": setting.answer_tokens, "bandwidth_gbs": bandwidth,
              "reasoners": reasoners, "segmenters": segmenters,
              "pipelines": pipeline_rows(reasoners, segmenters, setting),
              "seconds": round(time.perf_counter() - started, 1)}
    print_table(result)
    print(f"\nsuite: {result['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
