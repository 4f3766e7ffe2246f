"""The backends, one record each: name, config class, factory, and for segmenters the tracker and a preparation
step. The one registry and the one "module:attribute" loader of the package; torch-free.

A backend is added by one registration::

    register_segmenter("mine", "my_package.segmenter:MySegmenter.from_config", config=MySegmenterConfig,
                       tracker="my_package.tracker:MyTracker.from_config")

Everything else comes from that record: `build_segmenter` / `build_tracker`, the node's `segmenter.*` ROS
parameters, the `--segmenter.<option>` flags of `segzero infer` / `eval`, the generated params file and docs.
Installed packages add backends through the entry-point group ``segzero_ros.backends``: each entry point names
a zero-argument callable that calls the register functions. Plug-ins are loaded once, before backends are
listed or built (as pytest and other tools find theirs).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from segzero_ros.config import (
    BackendConfig,
    BoxSegmenterConfig,
    EdgeTamSegmenterConfig,
    OnnxRuntimeSegmenterConfig,
    OpenAIReasonerConfig,
    ReasonerConfig,
    Sam2SegmenterConfig,
    Sam3ConceptReasonerConfig,
    Sam3SegmenterConfig,
    SegmenterConfig,
    TensorRTSegmenterConfig,
    TransformersReasonerConfig,
    widen,
)
from segzero_ros.options import FlatOption, Option, options_of

LOG = logging.getLogger(__name__)

PLUGIN_GROUP = "segzero_ros.backends"
"""Entry-point group of backend plug-ins (each entry point loads a zero-argument callable that registers)."""

Kind = Literal["reasoner", "segmenter"]
Loadable = str | Callable[..., Any]
"""A callable, or "module:attribute.path" naming one (imported only when the backend is built)."""


@dataclass(frozen=True)
class Backend:
    """One backend: everything the package knows about it, in one place."""

    name: str
    config: type[BackendConfig]
    """The config class it reads; a section's base config naming this backend is widened to it."""
    factory: Loadable
    """config → the model (Reasoner / Segmenter)."""
    prepare: Loadable | None = None
    """Optional config → config step run before the factory (e.g. export the graphs the backend runs)."""
    tracker: Loadable | None = None
    """Segmenters: (config, **tracker options) → the streaming Tracker over the same model; None = no tracking."""

    def make_config(self, **values: Any) -> BackendConfig:
        """This backend's config from option values by field name; None values and fields it does not read
        are left out (so a command line can offer every backend's flags)."""
        fields = {field.name for field in dataclasses.fields(self.config)}
        kwargs = {name: value for name, value in values.items() if name in fields and value is not None}
        kwargs["backend"] = self.name
        return self.config(**kwargs)


_REGISTRY: dict[str, dict[str, Backend]] = {"reasoner": {}, "segmenter": {}}
_BASE_CONFIG: dict[str, type[BackendConfig]] = {"reasoner": ReasonerConfig, "segmenter": SegmenterConfig}
_plugins = {"loaded": False}
_plugins_lock = threading.Lock()


def _register(kind: Kind, name: str | None, factory: Loadable, config: type[BackendConfig], *,
              prepare: Loadable | None = None, tracker: Loadable | None = None) -> Backend:
    base = _BASE_CONFIG[kind]
    if not (isinstance(config, type) and issubclass(config, base)):
        raise TypeError(f"a {kind} backend's config must be a subclass of {base.__name__}, not {config!r}")
    backend_name = name if name is not None else str(options_of(config)["backend"].default)
    if not backend_name.strip() or backend_name != backend_name.strip():
        raise ValueError(f"{kind} backend name {backend_name!r} must be a non-empty word")
    record = Backend(backend_name, config, factory, prepare, tracker)
    _REGISTRY[kind][backend_name] = record
    return record


def register_reasoner(name: str | None, factory: Loadable, config: type[ReasonerConfig] = ReasonerConfig) -> Backend:
    """Add (or replace) reasoner backend `name`; None takes the name from `config`'s `backend` default."""
    return _register("reasoner", name, factory, config)


def register_segmenter(name: str | None, factory: Loadable, config: type[SegmenterConfig] = SegmenterConfig,
                       tracker: Loadable | None = None, prepare: Loadable | None = None) -> Backend:
    """Add (or replace) segmenter backend `name`, with its tracker (if it can track) and preparation step."""
    return _register("segmenter", name, factory, config, prepare=prepare, tracker=tracker)


def unregister(kind: Kind, name: str) -> None:
    """Remove a backend (tests that register temporary ones clean up with it)."""
    _REGISTRY[kind].pop(name, None)


def backends(kind: Kind) -> Mapping[str, Backend]:
    """Every registered backend of `kind` (installed plug-ins included), by name, in registration order."""
    load_plugins()
    return dict(_REGISTRY[kind])


def backend(kind: Kind, name: str) -> Backend:
    """The record of backend `name`; ValueError listing the available ones when there is none."""
    registered = backends(kind)
    if name not in registered:
        raise ValueError(f"unknown {kind} backend {name!r}; available: {', '.join(sorted(registered))}")
    return registered[name]


def config_for(kind: Kind, config: BackendConfig) -> BackendConfig:
    """`config` as its backend's own config class (validated): a base config gains the backend's fields."""
    return widen(config, backend(kind, config.backend).config)


def load(entry: Loadable) -> Callable[..., Any]:
    """The callable itself, or the one "module:attribute.path" names (imported now)."""
    if callable(entry):
        return entry
    module_name, separator, attribute_path = entry.partition(":")
    if not separator:
        raise ValueError(f"{entry!r} must be 'module:attribute'")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        target = getattr(target, attribute)
    return target  # type: ignore[no-any-return]


def load_plugins() -> None:
    """Run every installed plug-in's registration once. A broken plug-in is logged and skipped: one bad package
    must not take the robot's perception down."""
    if _plugins["loaded"]:
        return
    with _plugins_lock:
        if _plugins["loaded"]:
            return
        _plugins["loaded"] = True
        for entry_point in metadata.entry_points(group=PLUGIN_GROUP):
            try:
                entry_point.load()()
            except Exception as exc:
                LOG.warning("segzero_ros backend plug-in %r (%s) failed to register: %s: %s", entry_point.name,
                            entry_point.value, type(exc).__name__, exc)


def section_options(kind: Kind) -> list[FlatOption]:
    """The options of every registered backend of `kind`, base fields first, one per field name: the ROS
    parameters and the command-line flags of a model section both come from this list."""
    base = _BASE_CONFIG[kind]
    registered = backends(kind)
    declared: dict[str, Option] = dict(options_of(base))
    readers: dict[str, list[str]] = {}
    for record in registered.values():
        for field_name, info in options_of(record.config).items():
            declared.setdefault(field_name, info)
            readers.setdefault(field_name, []).append(record.name)
    everyone = set(registered)
    return [FlatOption(f"{kind}.{field_name}", info,
                          () if field_name in options_of(base) or set(readers.get(field_name, everyone)) == everyone
                          else tuple(readers[field_name]))
            for field_name, info in declared.items()]


# The built-in backends. A dedicated config class names its backend (its `backend` default); shared ones
# are registered under an explicit name.
register_reasoner(None, "segzero_ros.reasoning.transformers_backend:TransformersReasoner.from_config",
                  config=TransformersReasonerConfig)
register_reasoner("scripted", "segzero_ros.reasoning.scripted:ScriptedReasoner.from_config")
register_reasoner(None, "segzero_ros.reasoning.openai_backend:OpenAIReasoner.from_config",
                  config=OpenAIReasonerConfig)
register_reasoner(None, "segzero_ros.reasoning.sam3_concept:Sam3ConceptReasoner.from_config",
                  config=Sam3ConceptReasonerConfig)
register_segmenter(None, "segzero_ros.segmentation.sam2_backend:Sam2Segmenter.from_config", config=Sam2SegmenterConfig,
                   tracker="segzero_ros.tracking.sam2_tracker:Sam2Tracker.from_config")
register_segmenter(None, "segzero_ros.segmentation.box:BoxSegmenter.from_config", config=BoxSegmenterConfig)
register_segmenter(None, "segzero_ros.segmentation.onnx_backend:OnnxRuntimeSegmenter.from_config",
                   config=OnnxRuntimeSegmenterConfig, prepare="segzero_ros.export.onnx_export:with_exported_graphs",
                   tracker="segzero_ros.tracking.onnx_tracker:OnnxTracker.from_config")
register_segmenter(None, "segzero_ros.segmentation.tensorrt_backend:TensorRTSegmenter.from_config",
                   config=TensorRTSegmenterConfig, prepare="segzero_ros.export.onnx_export:with_exported_graphs",
                   tracker="segzero_ros.tracking.tensorrt_tracker:TensorRTTracker.from_config")
register_segmenter(None, "segzero_ros.segmentation.transformers_sam:TransformersSamSegmenter.from_config",
                   config=Sam3SegmenterConfig,
                   tracker="segzero_ros.tracking.transformers_sam_tracker:TransformersSamTracker.from_config")
register_segmenter(None, "segzero_ros.segmentation.transformers_sam:TransformersSamSegmenter.from_config",
                   config=EdgeTamSegmenterConfig,
                   tracker="segzero_ros.tracking.transformers_sam_tracker:TransformersSamTracker.from_config")

__all__ = ["PLUGIN_GROUP", "Backend", "backend", "backends", "config_for", "load", "load_plugins",
           "register_reasoner", "register_segmenter", "section_options", "unregister"]
