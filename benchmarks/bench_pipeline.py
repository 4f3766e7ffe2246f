"""Per-stage timings of the Seg-Zero pipeline (a benchmark, not a test: it prints figures).

CPU (any machine):   python benchmarks/bench_pipeline.py --tiny
GPU (real archs):    python benchmarks/bench_pipeline.py --real-arch --device cuda

--tiny runs the tiny offline models end to end (reason → encode → decode) on a few image sizes.
--real-arch builds the REAL Qwen2.5-VL-7B and SAM2 hiera-large architectures with random weights (no
download) and reports decode tokens/s at bf16 with ~150 forced new tokens, plus SAM2 encoder/decoder ms.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
from timing import median_ms

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bench_tiny(repeats: int, threads: int) -> None:
    import torch

    from segzero_ros.backends import build_pipeline
    from segzero_ros.tiny import tiny_pipeline_config

    torch.set_num_threads(threads)
    pipeline = build_pipeline(tiny_pipeline_config())
    print(f"tiny models, CPU, {threads} thread(s), median of {repeats}")
    print(f"{'image':>10} {'reason ms':>10} {'encode ms':>10} {'decode ms':>10} {'total ms':>10} {'new tokens':>10}")
    rng = np.random.default_rng(0)
    for width, height in ((640, 480), (1280, 720)):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        runs = [pipeline.run(image, "the red mug") for _ in range(repeats + 1)][1:]
        if not all(run.ok for run in runs):
            print(f"{width}x{height}: error: {runs[0].error}")
            continue
        medians = {attr: statistics.median(getattr(r.timings, attr) for r in runs) * 1000
                   for attr in ("reason_s", "encode_s", "decode_s", "total_s")}
        print(f"{width}x{height:<5} {medians['reason_s']:10.1f} {medians['encode_s']:10.1f} "
              f"{medians['decode_s']:10.1f} {medians['total_s']:10.1f} {runs[0].completion_tokens:10d}")
    pipeline.close()


def real_qwen_7b_config() -> object:
    """Qwen2.5-VL-7B-Instruct's architecture, written out so no download is needed."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
            "max_position_embeddings": 128000, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        },
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
    )


def bench_real_qwen(device: str, new_tokens: int) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    print(f"Qwen2.5-VL-7B architecture, random weights, bf16, {device}")
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build directly in bf16: 15 GB instead of 30 GB of fp32 first
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(real_qwen_7b_config()).eval()
    finally:
        torch.set_default_dtype(previous_dtype)
    # 900 visual tokens (840×840) + ~160 text tokens, as in a real Seg-Zero prompt; text-only ids suffice
    # for decode speed, which the visual prefix affects only through the KV-cache length.
    prompt = torch.randint(0, 150000, (1, 1060), device=device)

    def generate() -> None:
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        torch.cuda.synchronize()

    def prefill_only() -> None:
        with torch.inference_mode():
            model(prompt)
        torch.cuda.synchronize()

    total = median_ms(generate, repeats=3)
    prefill = median_ms(prefill_only, repeats=3)
    print(f"  prefill 1060 tokens: {prefill:.1f} ms; generate {new_tokens} tokens: {total:.0f} ms "
          f"→ decode ≈ {new_tokens / ((total - prefill) / 1000):.1f} tokens/s")


def bench_real_sam2(device: str) -> None:
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(build_sam2("configs/sam2.1/sam2.1_hiera_l.yaml", None, device=device))
    image = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)

    def encode() -> None:
        predictor.set_image(image)
        torch.cuda.synchronize()

    def decode() -> None:
        predictor.predict(point_coords=np.array([[600, 300], [650, 350]], np.float32), point_labels=np.array([1, 1]),
                          box=np.array([500, 200, 800, 500], np.float32), multimask_output=True)
        torch.cuda.synchronize()

    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        encode_ms = median_ms(encode, repeats=10)
        decode_ms = median_ms(decode, repeats=20)
    print(f"SAM2 hiera-large, bf16 autocast, 1280×720 input: encoder {encode_ms:.1f} ms, decoder {decode_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny offline models on CPU")
    parser.add_argument("--real-arch", action="store_true", help="real 7B / hiera-large architectures (GPU)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=150)
    args = parser.parse_args()
    if not (args.tiny or args.real_arch):
        parser.error("choose --tiny and/or --real-arch")
    if args.tiny:
        bench_tiny(args.repeats, args.threads)
    if args.real_arch:
        bench_real_qwen(args.device, args.new_tokens)
        bench_real_sam2(args.device)


if __name__ == "__main__":
    main()
