"""A fleet of robots sharing one reasoner server: N concurrent clients, each sending commands back to back
through OpenAIReasoner, for N = 1, 4, 16. Prints commands/s and command latency p50/p99 per N.

    python benchmarks/bench_fleet.py                                  # starts `transformers serve` (tiny model)
    python benchmarks/bench_fleet.py --base-url http://127.0.0.1:8000/v1 --model Ricky06662/Seg-Zero-7B
    python benchmarks/bench_fleet.py --compare-local /models/Seg-Zero-7B --device cuda   # + in-process baseline

Without --base-url it serves the tiny offline Qwen2.5-VL with `transformers serve` on 127.0.0.1 (CPU, so the
figures measure the serving path, not a model). With --compare-local it also runs the in-process transformers
backend on the same frames, one command at a time, and prints its latency and decode tokens/s next to the
server's (the issue's goal on a GPU: the served 7B ≥ 2× faster per command).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from segzero_ros.reasoning.openai_backend import OpenAIReasoner

COMMANDS = ("the cup", "the red mug on the left", "something to cut bread with", "the plant")


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_fleet(base_url: str, model: str, clients: int, commands_each: int, max_tokens: int) -> dict[str, float]:
    """`clients` threads, each its own OpenAIReasoner (a robot), sending commands back to back."""
    images = frames(4)
    latencies: list[float] = []
    tokens: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def robot(index: int) -> None:
        reasoner = OpenAIReasoner(base_url, model, timeout_s=600, max_new_tokens=max_tokens, concurrency=1)
        reasoner.reason(images[0], COMMANDS[0])  # warm: connection, model name
        start.wait()
        for number in range(commands_each):
            began = time.perf_counter()
            output = reasoner.reason(images[(index + number) % len(images)], COMMANDS[number % len(COMMANDS)])
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                tokens.append(output.completion_tokens)
                if not output.ok:
                    failures.append(output.error or "?")
        reasoner.close()

    threads = [threading.Thread(target=robot, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"clients": clients, "commands": len(latencies), "commands_per_s": len(latencies) / wall,
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "tokens_per_s": sum(tokens) / wall, "failed": len(failures)}


def run_local(model: str, device: str, repeats: int, max_tokens: int) -> dict[str, float]:
    from segzero_ros.config import TransformersReasonerConfig
    from segzero_ros.reasoning.transformers_backend import TransformersReasoner

    reasoner = TransformersReasoner.from_config(TransformersReasonerConfig(model=model, device=device,
                                                                           max_new_tokens=max_tokens))
    images = frames(4)
    reasoner.reason(images[0], COMMANDS[0])
    latencies, tokens = [], []
    for number in range(repeats):
        began = time.perf_counter()
        output = reasoner.reason(images[number % 4], COMMANDS[number % len(COMMANDS)])
        latencies.append(time.perf_counter() - began)
        tokens.append(output.completion_tokens / max(output.generate_s, 1e-9))
    reasoner.close()
    return {"p50_s": statistics.median(latencies), "decode_tokens_per_s": statistics.median(tokens)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an OpenAI-compatible server; default: start transformers serve (tiny)")
    parser.add_argument("--model", default="", help="served model name (default: the first the server lists)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--commands", type=int, default=8, help="commands per client")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--compare-local", metavar="MODEL", help="also time the in-process transformers backend")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    server = None
    base_url = args.base_url
    if base_url is None:
        from segzero_ros.testing.servers import transformers_serve
        from segzero_ros.tiny import default_cache_root
        from segzero_ros.tiny.qwen_vl import ensure_tiny_qwen

        log = Path(tempfile.mkdtemp(prefix="segzero-fleet-")) / "serve.log"
        server = transformers_serve(ensure_tiny_qwen(default_cache_root()), log).start()
        base_url = server.base_url
        print(f"transformers serve (tiny Qwen2.5-VL, CPU) at {base_url}; log {log}")
    try:
        print(f"{'clients':>7} {'commands':>8} {'cmd/s':>8} {'p50 s':>8} {'p99 s':>8} {'tok/s':>8} {'failed':>6}")
        for clients in args.clients:
            row = run_fleet(base_url, args.model, clients, args.commands, args.max_tokens)
            print(f"{row['clients']:>7} {row['commands']:>8} {row['commands_per_s']:>8.2f} {row['p50_s']:>8.3f} "
                  f"{row['p99_s']:>8.3f} {row['tokens_per_s']:>8.1f} {row['failed']:>6}", flush=True)
        if args.compare_local:
            local = run_local(args.compare_local, args.device, args.commands, args.max_tokens)
            print(f"in-process transformers: p50 {local['p50_s']:.3f} s per command, "
                  f"decode {local['decode_tokens_per_s']:.1f} tokens/s")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
