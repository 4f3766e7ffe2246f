"""`segzero train`: GRPO fine-tuning of the reasoner (`grpo`) and training-data conversion (`make-dataset`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segzero_ros.core.families import FAMILY_NAMES, answer_frame, family
from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, SEG_ZERO
from segzero_ros.errors import SegZeroError

GRPO_EPILOG = """\
Options come from the reference recipe, then --config, then each --override key=value (e.g.
--override model=/models/Qwen2.5-VL-3B-Instruct max_steps=20 lora=true trl_args.top_k=50). Multi-GPU:
  accelerate launch --config_file recipes/accelerate_8gpu.yaml -m segzero_ros.cli \
      train grpo --config recipes/grpo_7b.yaml
The finished model (weights + processor) is written to OUTPUT_DIR/final; per-step metrics to OUTPUT_DIR/metrics.jsonl.
"""

MAKE_DATASET_EPILOG = """\
Sources: a folder with samples.jsonl (image + mask + text per line), a ReasonSeg folder, an HF dataset with
image/mask/text columns (save_to_disk folder, parquet or cached hub id), or synthetic[:COUNT[:SEED[:SIZE]]].
Box and points are computed from each full-resolution mask exactly as the Seg-Zero data preparation does.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the reasoner with GRPO (TRL) and prepare training data",
        description="Seg-Zero training: GRPO with format and accuracy rewards, and dataset conversion.",
    )
    commands = parser.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)

    grpo = commands.add_parser(
        "grpo",
        help="run GRPO training from a YAML config",
        description="GRPO fine-tuning of a Qwen2.5-VL reasoner on TRL's GRPOTrainer with the Seg-Zero rewards.",
        epilog=GRPO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grpo.add_argument("--config", type=Path, help="YAML file of training options (see recipes/grpo_*.yaml)")
    grpo.add_argument(
        "--override", "-o", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="set one option, after the config file (repeatable)",
    )
    grpo.add_argument("--print-config", action="store_true", help="print the resolved options and exit")
    grpo.add_argument("--plan", action="store_true",
                      help="print the run's plan (processes, split of a step, steps, GPU memory per device from "
                           "parameter counts) and exit; nothing is loaded")
    grpo.add_argument("--accelerate-config", type=Path, metavar="FILE",
                      help="--plan: the accelerate config the run will be launched with (processes, machines, "
                           "DeepSpeed/FSDP)")
    grpo.add_argument("--processes", type=int, metavar="N",
                      help="--plan: processes in all (overrides the accelerate config's num_processes)")
    grpo.add_argument("--gpu-memory", type=float, default=80.0, metavar="GIB",
                      help="--plan: memory of one GPU, for vLLM colocate's share (default 80)")
    grpo.set_defaults(handler=run_grpo)

    make = commands.add_parser(
        "make-dataset",
        help="convert mask data (or synthetic shapes) to the refCOCOg_2k_840 training schema",
        description="Write a save_to_disk dataset with columns id, problem, solution, image (840×840, or the "
        "--family's frame), img_height, img_width, solution_extent.",
        epilog=MAKE_DATASET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("--source", required=True, help="mask dataset path, HF id, or synthetic[:COUNT[:SEED[:SIZE]]]")
    make.add_argument("--out", required=True, type=Path, help="output folder (save_to_disk layout)")
    make.add_argument("--format", default="auto", choices=("auto", "masks", "segzero", "synthetic"))
    make.add_argument("--split", default="train", help="split to read from a multi-split source")
    make.add_argument("--limit", type=int, default=None, help="convert only the first N samples")
    make.add_argument("--answer-format", default=SEG_ZERO, choices=ANSWER_FORMAT_NAMES,
                      help="solution layout: seg_zero (one box + two points; samples with several or no objects "
                           "are skipped) or vision_reasoner (a JSON list, one box + point per GT object; [] kept)")
    make.add_argument("--family", default="qwen2_5_vl", choices=FAMILY_NAMES,
                      help="the reasoner family the data is for: images in its frame, solutions in its coordinates "
                           "(qwen2_5_vl: 840² and 840-frame pixels, the reference schema; qwen3_vl: 832² and 0..1000); "
                           "training converts any schema dataset to the model's own on the way in anyway")
    make.add_argument(
        "--resample", default="area", choices=("area", "bilinear"),
        help="840² resize: area (reference data prep, default) or bilinear (what inference does)",
    )
    make.set_defaults(handler=run_make_dataset)


def run_grpo(args: argparse.Namespace) -> int:
    from segzero_ros.training.config import load_training_config

    try:
        config = load_training_config(args.config, args.override)
    except (OSError, ValueError) as exc:
        raise SegZeroError(f"bad training config: {exc}") from exc
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if args.plan:
        return _print_plan(config, args)
    from segzero_ros.training.trainer import is_main_process, train_grpo

    def log(message: str) -> None:
        print(message, flush=True)

    outcome = train_grpo(config, log=log)
    if is_main_process():
        print(f"done: {outcome.global_step} steps; model in {outcome.final_model_dir}; "
              f"metrics in {outcome.metrics_path}")
    return 0


def _print_plan(config: Any, args: argparse.Namespace) -> int:
    from segzero_ros.training.plan import Launch, launch_from_environment, plan_training

    if args.processes is not None and args.processes < 1:
        raise SegZeroError("--processes must be at least 1")
    try:
        if args.accelerate_config is not None:
            launch = Launch.from_accelerate_config(args.accelerate_config, args.processes)
        elif args.processes is not None:
            launch = Launch(args.processes, 1, "ddp" if args.processes > 1 else "single")
        else:
            launch = launch_from_environment()
        plan = plan_training(config, launch, gpu_memory_gib=args.gpu_memory)
    except (OSError, ValueError, TypeError) as exc:
        raise SegZeroError(f"cannot plan this run: {exc}") from exc
    print("\n".join(plan.lines(config)))
    return 0


def run_make_dataset(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from segzero_ros.training.datasets import load_training_dataset, save_segzero_dataset

    if args.out.exists() and any(args.out.iterdir()):
        raise SegZeroError(f"{args.out} exists and is not empty; choose a new --out folder")
    staging = Path(tempfile.mkdtemp(prefix=".segzero-rows-", dir=args.out.parent if args.out.parent.exists() else None))
    try:
        try:
            dataset = load_training_dataset(
                args.source, args.format, split=args.split, max_samples=args.limit, resample=args.resample,
                cache_dir=staging, answer_format=args.answer_format, frame=answer_frame(family(args.family)),
            )
        except ValueError as exc:
            raise SegZeroError(str(exc)) from exc
        save_segzero_dataset(dataset, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(dataset)} samples to {args.out}", file=sys.stderr)
    return 0
