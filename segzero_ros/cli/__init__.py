"""`segzero` command line. Each subcommand lives in its own module and imports heavy libraries lazily,
so `segzero --help` answers instantly."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from segzero_ros.errors import SegZeroError
from segzero_ros.quiet import quiet_library_progress_bars

# Modules with `add_parser(subparsers)`; each registers one subcommand whose handler is `args.handler`.
SUBCOMMAND_MODULES = (
    "segzero_ros.cli.export",
    "segzero_ros.cli.infer",
    "segzero_ros.cli.eval",
    "segzero_ros.cli.track",
    "segzero_ros.cli.train",
)


class Parser(argparse.ArgumentParser):
    """Usage errors in one line (which argument, what is wrong, where help is), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="segzero",
        description="Seg-Zero reasoning segmentation: inference, training, evaluation and SAM2 export.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_library_progress_bars()
    try:
        code: int = args.handler(args)
    except SegZeroError as exc:
        # Expected failures (no weights, missing backend) get one clear line, never a traceback.
        print(f"segzero {args.subcommand}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
