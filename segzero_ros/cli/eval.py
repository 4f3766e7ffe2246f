"""`segzero eval`: gIoU/cIoU on ReasonSeg, RefCOCO-style or your own data; merge shards; compare runs."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segzero_ros.cli.models import add_model_arguments, pipeline_config_from_args
from segzero_ros.data.loaders import FORMATS
from segzero_ros.errors import SegZeroError

EPILOG = """\
modes:
  segzero eval --data PATH --out DIR [model options]   evaluate (resumable: rerun the same command)
  segzero eval --merge DIR [--data PATH]               summary + report from finished shards
  segzero eval --compare DIR_A DIR_B [...]             side-by-side table of runs

data formats (--format auto detects them):
  reasonseg  LISA's layout: NAME.jpg + NAME.json (LabelMe polygons; "ignore" polygons are not scored)
  hf         save_to_disk folder, parquet file(s) or a cached hub id, columns image/text/mask
             (Ricky06662/ReasonSeg_val, ReasonSeg_test and the RefCOCO/+/g conversions)
  folder     samples.jsonl lines {"id", "image", "mask", "text"} with paths relative to the folder
  synthetic  synthetic[:COUNT[:SEED[:SIZE]]]: generated coloured shapes (smoke tests, demos)

multi-GPU: one process per GPU, each takes every N-th sample and writes its own results file; whichever
finishes last writes summary.json and the report (or run --merge afterwards):
  torchrun --nproc_per_node 8 -m segzero_ros.cli eval --data D --out O ...
  accelerate launch --num_processes 8 -m segzero_ros.cli eval --data D --out O ...
  for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i segzero eval --shard $i/4 --data D --out O ... & done; wait
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure gIoU/cIoU on a dataset, merge sharded runs, compare runs",
        description="Evaluate the Seg-Zero pipeline the way the paper does (gIoU, cIoU; a failed answer "
        "scores I = 0, U = |GT|) and write summary.json plus a report with plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", help="dataset folder, parquet file or cached hub id")
    parser.add_argument("--format", default="auto", choices=FORMATS)
    parser.add_argument("--split", help="split of a multi-split HF dataset (default: test, else the only one)")
    parser.add_argument("--texts", choices=("first", "all"), default="first",
                        help="ReasonSeg layout: LISA's first question per image, or one sample per question")
    parser.add_argument("--out", type=Path, help="output folder (results, summary.json, report.md, plots/)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples (before sharding)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per reasoning batch")
    parser.add_argument("--shard", help="I/N: this process takes samples I, I+N, ... (default: RANK/WORLD_SIZE "
                        "under torchrun or accelerate, else everything)")
    parser.add_argument("--worst", type=int, default=8, help="how many worst samples the report shows")
    parser.add_argument("--no-masks", action="store_true", help="do not save predicted masks (no overlays)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard results in --out that came from a different model or dataset")
    parser.add_argument("--merge", type=Path, metavar="DIR", help="merge shard results in DIR and write the report")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="DIR", help="print a table comparing runs")

    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    modes = [name for name in ("data", "merge", "compare") if getattr(args, name)]
    if args.compare:
        return _compare(args)
    if args.merge:
        return _merge(args)
    if not modes or args.out is None:
        raise SegZeroError("give --data PATH --out DIR to evaluate, --merge DIR, or --compare DIR DIR")
    return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from segzero_ros.backends import build_pipeline
    from segzero_ros.data.loaders import detect_format, load_eval_dataset
    from segzero_ros.evaluation.merge import merge_results, missing_ids
    from segzero_ros.evaluation.runner import Shard, add_summary_info, ensure_run_file, evaluate, read_records

    if args.batch_size < 1:
        raise SegZeroError("--batch-size must be at least 1")
    try:
        shard = Shard.parse(args.shard) if args.shard else (Shard.from_environment() or Shard())
    except ValueError as exc:
        raise SegZeroError(str(exc)) from exc
    args.device = process_device(args.device or "auto")
    config = pipeline_config_from_args(args, "eval")  # flags checked before the data or a model is read
    data_format = detect_format(args.data) if args.format == "auto" else args.format
    dataset = load_eval_dataset(args.data, data_format, split=args.split, reasonseg_texts=args.texts)
    dataset = dataset.head(args.limit)

    source = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
    data_info = {"source": source, "format": data_format, "split": args.split, "texts": args.texts}
    identity = {**data_info, "reasoner": _without_device(config.reasoner),
                "segmenter": _without_device(config.segmenter)}
    details = {
        "data": {**data_info, "limit": args.limit},
        "summary_info": {"dataset": dataset.name, "reasoner": config.reasoner.describe(),
                         "segmenter": config.segmenter.describe()},
    }
    out_dir: Path = args.out
    ensure_run_file(out_dir, identity, details, overwrite=args.overwrite)

    done = read_records(out_dir)
    if all(sample_id in done for sample_id in shard.select(dataset).ids):
        print(f"segzero eval: shard {shard}: all samples already done", file=sys.stderr)
    else:
        pipeline = build_pipeline(config)
        add_summary_info(out_dir, reasoner_frame=pipeline.reasoner.answer_frame.describe())
        print(f"segzero eval: reasoner {pipeline.reasoner.name}: {pipeline.reasoner.answer_frame.describe()}",
              file=sys.stderr)
        try:
            outcome = evaluate(pipeline, dataset, out_dir, shard=shard, batch_size=args.batch_size,
                               save_masks=not args.no_masks, progress_bar=not args.no_progress)
        except KeyboardInterrupt:
            print(f"segzero eval: interrupted; rerun the same command to resume ({out_dir})", file=sys.stderr)
            raise
        finally:
            pipeline.close()
        print(f"segzero eval: shard {shard}: {outcome.processed} evaluated, {outcome.already_done} already done",
              file=sys.stderr)

    missing = missing_ids(out_dir, dataset)
    if missing:
        print(f"segzero eval: {len(missing)} samples are still running in other shards; the last shard to "
              f"finish writes the report (or run `segzero eval --merge {out_dir}`)", file=sys.stderr)
        return 0
    summary = merge_results(out_dir, dataset, worst=args.worst)
    _print_summary(summary, out_dir)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from segzero_ros.data.loaders import load_eval_dataset
    from segzero_ros.evaluation.merge import merge_results
    from segzero_ros.evaluation.runner import read_run_file

    out_dir: Path = args.merge
    run_file = read_run_file(out_dir)
    if run_file is None:
        raise SegZeroError(f"{out_dir}: no run.json: not an evaluation output folder")
    data = run_file.get("data") or {}
    source = args.data or data.get("source")
    dataset = None
    if source:
        try:
            dataset = load_eval_dataset(source, args.format if args.data else data.get("format", "auto"),
                                        split=args.split or data.get("split"),
                                        reasonseg_texts=data.get("texts", "first")).head(data.get("limit"))
        except SegZeroError as exc:
            print(f"segzero eval: cannot reopen the dataset ({exc}); summarising all records, no overlays",
                  file=sys.stderr)
    summary = merge_results(out_dir, dataset, worst=args.worst)
    if not summary["complete"]:
        print(f"segzero eval: warning: {summary['missing']} samples have no result yet", file=sys.stderr)
    _print_summary(summary, out_dir)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from segzero_ros.evaluation.compare import format_comparison, load_run

    if len(args.compare) < 2:
        raise SegZeroError("--compare needs at least two output folders")
    print(format_comparison([load_run(path) for path in args.compare]), end="")
    return 0


def process_device(device: str, environ: Mapping[str, str] | None = None) -> str:
    """Under torchrun/accelerate with --device auto, process LOCAL_RANK uses GPU LOCAL_RANK."""
    env = os.environ if environ is None else environ
    if device != "auto" or "LOCAL_RANK" not in env or int(env.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    return f"cuda:{int(env['LOCAL_RANK']) % torch.cuda.device_count()}"


def _without_device(config: Any) -> dict[str, Any]:
    """Config fields that change results; the device does not (shards run on different GPUs)."""
    values: dict[str, Any] = dataclasses.asdict(config)
    values.pop("device", None)
    return values


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    failures = ", ".join(f"{kind} {count}" for kind, count in summary["failures"].items())
    print(f"gIoU {summary['gIoU']:.4f}  cIoU {summary['cIoU']:.4f}  samples {summary['count']}  "
          f"failed {summary['failed']}" + (f" ({failures})" if failures else ""))
    not_found = summary.get("not_found") or {}
    if not_found.get("no_target_samples"):
        print(f"not-found accuracy {not_found['accuracy']:.4f} ({not_found['correct']}/"
              f"{not_found['no_target_samples']} samples without a target answered not_found)")
    print(f"summary: {out_dir / 'summary.json'}")
    print(f"report:  {out_dir / 'report.md'}")
