"""The model flags of `segzero infer` and `segzero eval`, generated from the option tables.

Every option of every registered reasoner and segmenter backend is a flag `--reasoner.<field>` /
`--segmenter.<field>` with its type, range, choices and description (the same table the node's ROS
parameters come from, `segzero_ros.registry.section_options`), so a plug-in's option is a flag here without
editing this file. The short flags of earlier versions stay as aliases. Flags the chosen backend does not
read are warned about; flags that contradict each other are refused with one line (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segzero_ros.config import DEFAULT_SAM2_MODEL, PipelineConfig, ReasonerConfig, SegmenterConfig
from segzero_ros.errors import SegZeroError
from segzero_ros.options import FlatOption
from segzero_ros.registry import Kind, backend, backends, section_options

SECTIONS: tuple[Kind, ...] = ("reasoner", "segmenter")

ALIASES: dict[str, tuple[str, ...]] = {
    "reasoner.model": ("--reasoner",),
    "reasoner.backend": ("--reasoner-backend",),
    "reasoner.base_url": ("--reasoner-url",),
    "reasoner.max_new_tokens": ("--max-new-tokens",),
    "reasoner.answer_format": ("--answer-format",),
    "segmenter.backend": ("--segmenter",),
    "segmenter.onnx_dir": ("--onnx-dir",),
    "segmenter.precision": ("--segmenter-precision",),
}
"""Short flags kept from earlier versions (and for the options everyone sets)."""
SAM2_FLAG_DEST = "sam2_source"
MODEL_NAMING = ("reasoner.model", "reasoner.base_url", "segmenter.model", "segmenter.config",
                "segmenter.checkpoint", "segmenter.onnx_dir", SAM2_FLAG_DEST)
"""Flags that choose which weights run: they contradict --tiny."""

SAM2_HELP = (f"SAM2 weights: a Hugging Face id (default {DEFAULT_SAM2_MODEL}), a local checkpoint "
             "(sam2.1_hiera_large.pt: its config is inferred from the file name) or CONFIG.yaml:CHECKPOINT.pt; "
             "sets segmenter.model / segmenter.checkpoint / segmenter.config")


def _flag(parameter: FlatOption) -> str:
    return "--" + parameter.name


def _converter(parameter: FlatOption) -> Any:
    """argparse `type`: the text as the option's kind, checked against its rule (argparse reports the problem)."""
    def convert(text: str) -> Any:
        try:
            value = parameter.option.coerce(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        problem = parameter.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = parameter.option.kind.__name__  # argparse names the type in "invalid int value"
    return convert


def _help(parameter: FlatOption) -> str:
    info = parameter.option
    rule = []
    if info.minimum is not None and info.maximum is not None:
        rule.append(f"{info.minimum:g} to {info.maximum:g}")
    if info.pattern_hint:
        rule.append(info.pattern_hint)
    if info.default not in (None, ""):
        rule.append(f"default {info.default}")
    text = parameter.description + (f" [{'; '.join(rule)}]" if rule else "")
    return text.replace("%", "%%")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Every model flag (both sections), plus --sam2, --device and --tiny."""
    for kind in SECTIONS:
        group = parser.add_argument_group(f"{kind} options (--{kind}.backend picks the backend; each flag "
                                          "says which backends read it when not all do)")
        for parameter in section_options(kind):
            choices = tuple(backends(kind)) if parameter.name.endswith(".backend") else parameter.option.choices
            group.add_argument(_flag(parameter), *ALIASES.get(parameter.name, ()), dest=parameter.name,
                               default=None, type=_converter(parameter), choices=choices or None,
                               metavar=parameter.option.kind.__name__.upper() if not choices else None,
                               help=_help(parameter))
        if kind == "segmenter":
            group.add_argument("--sam2", dest=SAM2_FLAG_DEST, default=None, metavar="MODEL", help=SAM2_HELP)
    common = parser.add_argument_group("both models")
    common.add_argument("--device", default=None, help="torch device of both models: auto, cpu, cuda or cuda:N "
                                                       "(a section's own --*.device wins)")
    common.add_argument("--tiny", action="store_true",
                        help="tiny offline models (meaningless masks, proves the install); --reasoner.family "
                             "qwen3_vl picks the tiny Qwen3-VL; refuses the flags that choose other weights")


def sam2_source(value: str) -> dict[str, str]:
    """--sam2 value → the segmenter fields naming the model (HF id, CHECKPOINT.pt, CONFIG.yaml:CHECKPOINT.pt)."""
    if ":" in value and value.split(":", 1)[0].endswith((".yaml", ".yml")):
        config_name, checkpoint = value.split(":", 1)
        return {"config": config_name, "checkpoint": checkpoint}
    if value.endswith((".pt", ".pth")) or Path(value).is_file():
        return {"checkpoint": value}
    return {"model": value}


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model options set on the command line, by flat name (--sam2 and --device spread over their fields)."""
    namespace = vars(args)
    given = {name: value for name, value in namespace.items() if "." in name and value is not None}
    if namespace.get(SAM2_FLAG_DEST) is not None:
        for field, value in sam2_source(namespace[SAM2_FLAG_DEST]).items():
            given.setdefault(f"segmenter.{field}", value)
    device = namespace.get("device")
    if device is not None:
        for kind in SECTIONS:
            problem = _section_option(kind, "device").problem(device) if _has(kind, "device") else None
            if problem is not None:
                raise SegZeroError(f"--device: {problem.removeprefix(f'{kind}.')}")
            given.setdefault(f"{kind}.device", device)
    return given


def _has(kind: Kind, field: str) -> bool:
    return any(parameter.name == f"{kind}.{field}" for parameter in section_options(kind))


def _section_option(kind: Kind, field: str) -> FlatOption:
    return next(parameter for parameter in section_options(kind) if parameter.name == f"{kind}.{field}")


def _section(given: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    return {name.partition(".")[2]: value for name, value in given.items() if name.startswith(kind + ".")}


def _choose_backends(given: dict[str, Any]) -> None:
    """--reasoner-url alone selects the openai backend; with another backend it is a contradiction."""
    url = given.get("reasoner.base_url")
    chosen = given.get("reasoner.backend")
    if url is None:
        return
    readers = _section_option("reasoner", "base_url").readers
    if chosen is None and len(readers) == 1:
        given["reasoner.backend"] = readers[0]
    elif chosen is not None and readers and chosen not in readers:
        raise SegZeroError(f"--reasoner-url is read by the {', '.join(readers)} backend only, not {chosen}: "
                           f"drop it or use --reasoner-backend {readers[0]}")


def _warn_unread(args: argparse.Namespace, chosen: Mapping[str, str], command: str) -> None:
    """A flag given on the command line that the chosen backend does not read is worth a warning."""
    for kind in SECTIONS:
        for parameter in section_options(kind):
            unread = parameter.readers and chosen[kind] not in parameter.readers
            if unread and vars(args).get(parameter.name) is not None:
                print(f"segzero {command}: warning: --{parameter.name} is read by the {', '.join(parameter.readers)} "
                      f"backend only; the {chosen[kind]} {kind} ignores it", file=sys.stderr)


def pipeline_config_from_args(args: argparse.Namespace, command: str, *, tiny_instead: bool = False
                              ) -> PipelineConfig:
    """The reasoner and segmenter configs the flags describe (the tiny models with --tiny); SegZeroError
    (exit code 2) for contradicting flags or values a backend's config refuses. `tiny_instead`: the tiny
    models with the flags that do not choose weights (--tiny-fallback after a failed load)."""
    given = given_options(args)
    if tiny_instead:
        return _tiny_config({name: value for name, value in given.items() if name not in MODEL_NAMING}, args,
                            command)
    if args.tiny:
        named = [name for name in MODEL_NAMING if vars(args).get(name) is not None]
        if named:
            flags = ", ".join("--sam2" if name == SAM2_FLAG_DEST else "--" + name for name in named)
            raise SegZeroError(f"--tiny runs the tiny offline models; it contradicts {flags}: drop one")
        return _tiny_config(given, args, command)
    _choose_backends(given)
    reasoner = _section(given, "reasoner")
    segmenter = _section(given, "segmenter")
    chosen = {"reasoner": reasoner.pop("backend", ReasonerConfig().backend),
              "segmenter": segmenter.pop("backend", SegmenterConfig().backend)}
    _warn_unread(args, chosen, command)
    try:
        return PipelineConfig(
            reasoner=backend("reasoner", chosen["reasoner"]).make_config(**reasoner),  # type: ignore[arg-type]
            segmenter=backend("segmenter", chosen["segmenter"]).make_config(**segmenter),  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as exc:
        raise SegZeroError(str(exc)) from exc


def _tiny_config(given: dict[str, Any], args: argparse.Namespace, command: str) -> PipelineConfig:
    """The tiny models, with the given options that do not choose weights (device, precision, limits...)."""
    from segzero_ros.tiny import TINY_WARNING, tiny_pipeline_config

    print(f"NOTE: {TINY_WARNING}.", file=sys.stderr)
    reasoner, segmenter = _section(given, "reasoner"), _section(given, "segmenter")
    devices = {kind: "cpu" if values.get("device", "auto") == "auto" else values["device"]
               for kind, values in (("reasoner", reasoner), ("segmenter", segmenter))}
    chosen = {"reasoner": reasoner.pop("backend", "transformers"), "segmenter": segmenter.pop("backend", "sam2")}
    _warn_unread(args, chosen, command)
    segmenter.pop("device", None)
    try:
        tiny = tiny_pipeline_config(device=devices["segmenter"], family=reasoner.get("family", "auto"),
                                    segmenter=chosen["segmenter"], reasoner=chosen["reasoner"], **segmenter)
        return PipelineConfig(
            reasoner=backend("reasoner", chosen["reasoner"]).make_config(  # type: ignore[arg-type]
                **{**reasoner, "model": tiny.reasoner.model, "device": devices["reasoner"]}),
            segmenter=tiny.segmenter)
    except (TypeError, ValueError) as exc:
        raise SegZeroError(str(exc)) from exc
