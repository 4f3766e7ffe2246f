"""Typed, frozen, validated configuration of reasoners, segmenters and the pipeline.

Every field is declared once with :func:`segzero_ros.options.option` (description, range or choices, when it
applies); the `segzero infer` / `eval` model flags, the ROS parameters, `config/segzero.yaml` and the docs
table all come from these classes (through `segzero_ros.registry.section_options`). Each backend has its own
class holding only the fields it reads, registered with the backend in `segzero_ros.registry`. A plain
`ReasonerConfig` / `SegmenterConfig` naming a backend is widened to that backend's class (its other fields at
their defaults) when built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from segzero_ros.core.families import AUTO, COORDINATES, FAMILY_NAMES
from segzero_ros.core.formats import ANSWER_FORMAT_NAMES, SEG_ZERO
from segzero_ros.options import DEVICE_HINT, DEVICE_PATTERN, check_options, option, options_of

DEFAULT_REASONER_MODEL = "Ricky06662/Seg-Zero-7B"
DEFAULT_SAM2_MODEL = "facebook/sam2-hiera-large"
DEFAULT_SAM3_MODEL = "facebook/sam3"
DEFAULT_EDGETAM_MODEL = "yonigozlan/EdgeTAM-hf"
DTYPES = ("auto", "bfloat16", "float16", "float32")
GRAPH_PRECISIONS = ("auto", "fp32", "fp16", "int8")

_SEGMENTER_BACKEND = "Segmenter backend (sam2, onnxruntime, tensorrt, box or a plug-in's; see segzero_ros.registry)."


def dtype_option() -> Any:
    """Weights' dtype of a model loaded in this process (declared once; reasoners and segmenters read it)."""
    return option("auto", "auto (bfloat16 on CUDA, float32 on CPU), bfloat16, float16 or float32.", choices=DTYPES)


def torch_device_option() -> Any:
    return option("auto", "Torch device.", pattern=DEVICE_PATTERN, pattern_hint=DEVICE_HINT)


def family_option() -> Any:
    """The reasoner's model family (declared here once; the reasoner config and the GRPO recipe both read it)."""
    return option(AUTO, "Model family: qwen2_5_vl (Seg-Zero-7B, VisionReasoner-7B), qwen3_vl or qwen3_vl_moe. "
                        "auto = from the checkpoint's config.model_type; a server or recorded outputs cannot be seen, "
                        "so auto means qwen2_5_vl there.", choices=(AUTO, *FAMILY_NAMES))


def coordinates_option() -> Any:
    return option(AUTO, "What the answers' numbers are: absolute = pixels of the reasoning frame (Qwen2/2.5-VL), "
                        "relative_1000 = 0..1000 whatever the image size (Qwen3-VL); auto = the family's.",
                  choices=(AUTO, *COORDINATES))


def frame_size_option() -> Any:
    return option(0, "Side of the square the image is resized to before the reasoner sees it; 0 = the family's "
                     "(840 for Qwen2.5-VL, as Seg-Zero; 832 for Qwen3-VL: 840 on its 32-pixel grid). A checkpoint "
                     "answers best in the frame it was trained on.", minimum=0, maximum=4096)


@dataclass(frozen=True)
class BackendConfig:
    """A model section's config: validated where it is made, with messages naming the flat option."""

    section = ""
    """Prefix of its flat option names ("reasoner" → reasoner.model)."""

    backend: str

    def __post_init__(self) -> None:
        check_options(self, f"{self.section}.")
        if not self.backend.strip():
            raise ValueError(f"{self.section}.backend must name a backend")

    @property
    def source(self) -> str:
        """What will really be loaded (a local file or folder when one is given, else the model id); "" when
        the backend loads nothing or picks for itself."""
        return getattr(self, "model", None) or ""

    def describe(self) -> str:
        """`backend:source`, for logs and reports."""
        return f"{self.backend}:{self.source}" if self.source else self.backend

    def loading_step(self) -> str:
        """What loading this backend looks like from outside (the node's status while it loads)."""
        return f"loading {self.section} {self.describe()}"


@dataclass(frozen=True)
class ReasonerConfig(BackendConfig):
    """What every reasoner backend reads."""

    section = "reasoner"
    served = False
    """True for backends whose model runs elsewhere (a server): tiny:=true leaves them as configured."""

    backend: str = option("transformers", "Reasoner backend (transformers, openai, scripted or a plug-in's; see "
                                          "segzero_ros.registry).")
    model: str | None = option(None, "Hugging Face model id or local model folder; unset = the backend's own "
                                     f"default (transformers: {DEFAULT_REASONER_MODEL}; openai: the model the "
                                     "server serves; scripted: required, a JSON file of recorded outputs).", kind=str)
    answer_format: str = option(SEG_ZERO, "What the checkpoint answers: seg_zero = one box + two points "
                                          "(Seg-Zero-7B); vision_reasoner = a list of objects, [] when none is in "
                                          "view (VisionReasoner-7B). Selects prompt, parser and segmentation.",
                                choices=ANSWER_FORMAT_NAMES)
    family: str = family_option()
    coordinates: str = coordinates_option()
    frame_size: int = frame_size_option()


@dataclass(frozen=True)
class GeneratingReasonerConfig(ReasonerConfig):
    """What every backend that generates text with a language model reads."""

    max_new_tokens: int = option(1024, "Generation limit; Seg-Zero answers usually take 100-200 tokens "
                                       "(VisionReasoner's reference allows 2048).", minimum=1, maximum=32768)


GENERATIONS = ("eager", "static")
QUANTIZATIONS = ("none", "int8", "int4")


@dataclass(frozen=True)
class TransformersReasonerConfig(GeneratingReasonerConfig):
    """The in-process Qwen2.5-VL reasoner (`transformers` backend)."""

    model: str = option(DEFAULT_REASONER_MODEL, "Hugging Face model id or local model folder.")
    device: str = torch_device_option()
    dtype: str = dtype_option()
    attn_implementation: str | None = option(None, "Attention kernel, e.g. sdpa or flash_attention_2; unset "
                                                   "lets transformers choose.", kind=str)
    trust_remote_code: bool = option(False, "Allow a model folder to run its own Python code (never needed "
                                            "for Qwen2.5-VL).")
    generation: str = option("eager", "eager: transformers' growing KV cache; static: a preallocated cache that "
                                      "transformers compiles on CUDA (prompts padded to 64-token buckets so a "
                                      "few compiled shapes serve every command; same greedy tokens).",
                             choices=GENERATIONS)
    quantization: str = option("none", "Weight-only quantization at load (torchao): none, int8 (half of bf16's "
                                       "weight memory) or int4 (a quarter; CUDA). Changes answers slightly; "
                                       "pre-quantized AWQ/GPTQ checkpoints load as they are with none.",
                               choices=QUANTIZATIONS)
    warm_up: bool = option(True, "One short generation right after loading, so the first command does not pay "
                                 "for kernel selection (and, with generation static on CUDA, compilation).")
    max_reasoning_tokens: int | None = option(None, "Reasoning budget: after this many generated tokens without "
                                                    "</think>, the tag is forced and the model answers at once. "
                                                    "Unset (or 0) = Seg-Zero's behaviour; set, answers "
                                                    "change.", kind=int, minimum=0, maximum=32768)

    def describe(self) -> str:
        text = super().describe()
        return text if self.dtype == "auto" else f"{text} ({self.dtype})"


@dataclass(frozen=True)
class Sam3ConceptReasonerConfig(ReasonerConfig):
    """SAM3's concept detector as the reasoner (`sam3_concept` backend): the command itself is the text prompt of
    Sam3Model, every instance above the threshold an object (its box and the point deepest inside its mask).
    Fast, no language model: for plain noun phrases ("the red mug"), not for reasoning ("something to cut
    bread with")."""

    backend: str = option("sam3_concept", "Reasoner backend (transformers, openai, scripted or a plug-in's).")
    model: str = option(DEFAULT_SAM3_MODEL, "Hugging Face id or local folder of a SAM3 checkpoint (Sam3Model).")
    device: str = torch_device_option()
    dtype: str = dtype_option()
    score_threshold: float = option(0.5, "sam3_concept: instances scoring below this are not objects of the "
                                         "answer (none above it: not_found).", minimum=0.0, maximum=1.0)
    max_objects: int = option(16, "sam3_concept: at most this many instances, best first.", minimum=1,
                              maximum=200)


@dataclass(frozen=True)
class OpenAIReasonerConfig(GeneratingReasonerConfig):
    """A reasoner served over the OpenAI chat-completions API (`openai` backend: vLLM, SGLang, transformers
    serve). The robot sends the 840×840 frame and the prompt; the server runs the model."""

    backend: str = option("openai", "Reasoner backend (transformers, openai, scripted or a plug-in's).")
    model: str | None = option(None, "The served model's name as the server lists it; unset = the first model "
                                     "the server serves.", kind=str)
    base_url: str = option("http://127.0.0.1:8000/v1", "openai: the server's API root, e.g. "
                                                       "https://gpu-server:8000/v1 (TLS verified).",
                           pattern=r"https?://\S+", pattern_hint="an http:// or https:// URL")
    timeout_s: float = option(60.0, "openai: a command's whole time budget at the server, retries included; "
                                    "past it the command answers `timeout`.", minimum=0.1, maximum=3600.0)
    connect_timeout_s: float = option(5.0, "openai: limit for opening the connection.", minimum=0.1,
                                      maximum=600.0)
    max_retries: int = option(2, "openai: retries (with backoff) after a connection error or a 5xx answer; "
                                 "never after 4xx or a timeout.", minimum=0, maximum=10)
    concurrency: int = option(4, "openai: parallel requests for a batch of commands.", minimum=1, maximum=256)
    api_key_env: str = option("SEGZERO_REASONER_API_KEY", "openai: environment variable holding the API key "
                                                          "(the key itself is never a parameter).")
    api_key_file: str | None = option(None, "openai: file holding the API key (first line); read at configure.",
                                      kind=str)
    verify_tls: bool = option(True, "openai: verify the server's TLS certificate (https).")
    ca_file: str | None = option(None, "openai: CA bundle for a private certificate authority.", kind=str)
    served = True

    server_wait_s: float = option(0.0, "openai: configure waits up to this long for the server to answer "
                                       "(GET <base_url>/models) before loading fails; 0 = no wait. The launch "
                                       "file's managed server (reasoner_server:=…) sets it.",
                                  minimum=0.0, maximum=3600.0)

    def loading_step(self) -> str:
        if self.server_wait_s > 0:
            return f"waiting for reasoner server at {self.base_url}"
        return super().loading_step()


@dataclass(frozen=True)
class SegmenterConfig(BackendConfig):
    """What every segmenter backend reads. A plain SegmenterConfig names the sam2 backend and is widened to
    Sam2SegmenterConfig (or the class of the backend it names) when built."""

    section = "segmenter"

    backend: str = option("sam2", _SEGMENTER_BACKEND)
    model: str | None = option(None, "Hugging Face id or local folder of the segmentation model; unset = the "
                                     f"backend's own default (sam2: {DEFAULT_SAM2_MODEL}; sam3: {DEFAULT_SAM3_MODEL}; "
                                     f"edgetam: {DEFAULT_EDGETAM_MODEL}).", kind=str)
    device: str = option("auto", "Device (torch, or the onnxruntime/TensorRT GPU).", pattern=DEVICE_PATTERN,
                         pattern_hint=DEVICE_HINT)
    multimask_output: bool = option(True, "Let the model propose three masks and keep the best-scoring one "
                                          "(Seg-Zero's setting).")


def compile_option() -> Any:
    return option(False, "torch.compile the model's heavy parts (image encoder; tracking: memory attention and "
                         "memory encoder) at configure, with a warm-up so no command pays for it. For CUDA: "
                         "compiling takes minutes on first load; on CPU it is slower to load and no faster.")


@dataclass(frozen=True)
class Sam2WeightsConfig(SegmenterConfig):
    """Which SAM2 weights: what the `sam2` backend and the backends of its exported graphs all read."""

    model: str = option(DEFAULT_SAM2_MODEL, "Hugging Face id of a SAM2 checkpoint; ignored when "
                                            "segmenter.checkpoint is set.")
    config: str | None = option(None, "sam2 config name (e.g. configs/sam2.1/sam2.1_hiera_l.yaml), needed with "
                                      "a checkpoint file.", kind=str)
    checkpoint: str | None = option(None, "Local SAM2 .pt checkpoint; unset resolves segmenter.model.", kind=str)
    image_size: int | None = option(None, "Encoder input side in pixels; unset keeps the model's own (1024). "
                                          "Smaller sizes are for fast tests.", kind=int, minimum=0, maximum=4096)

    @property
    def source(self) -> str:
        return self.checkpoint or self.model


@dataclass(frozen=True)
class Sam2SegmenterConfig(Sam2WeightsConfig):
    """SAM2 from the `sam2` package, in torch (`sam2` backend)."""

    compile: bool = compile_option()


@dataclass(frozen=True)
class TransformersSamConfig(SegmenterConfig):
    """A promptable segmenter and tracker through transformers' own classes (SAM3's tracker, EdgeTAM)."""

    dtype: str = dtype_option()
    compile: bool = compile_option()


@dataclass(frozen=True)
class Sam3SegmenterConfig(TransformersSamConfig):
    """SAM3's promptable tracker (`sam3` backend: Sam3TrackerModel, Sam3TrackerVideoModel)."""

    backend: str = option("sam3", _SEGMENTER_BACKEND)
    model: str = option(DEFAULT_SAM3_MODEL, "Hugging Face id or local folder of a SAM3 checkpoint.")


@dataclass(frozen=True)
class EdgeTamSegmenterConfig(TransformersSamConfig):
    """EdgeTAM, SAM2's tracker rebuilt for devices (`edgetam` backend: EdgeTamModel, EdgeTamVideoModel)."""

    backend: str = option("edgetam", _SEGMENTER_BACKEND)
    model: str = option(DEFAULT_EDGETAM_MODEL, "Hugging Face id or local folder of an EdgeTAM checkpoint.")


@dataclass(frozen=True)
class BoxSegmenterConfig(SegmenterConfig):
    """The box-fill baseline (`box` backend): the mask is the reasoner's box; it loads no model."""

    backend: str = option("box", _SEGMENTER_BACKEND)

    @property
    def source(self) -> str:
        return ""


@dataclass(frozen=True)
class ExportedGraphsConfig(Sam2WeightsConfig):
    """What both runtimes of the exported SAM2 graphs read."""

    onnx_dir: str | None = option(None, "Folder from `segzero export-sam2`; unset exports segmenter.model once "
                                        "into the cache (needs torch + sam2 on this machine).", kind=str)
    precision: str = option("auto", "fp32 or fp16 graphs/engines; auto = fp16 for tensorrt, fp32 for "
                                    "onnxruntime; int8 = onnxruntime CPU only, int8 encoder weights (faster, not "
                                    "parity-exact).", choices=GRAPH_PRECISIONS)

    @property
    def source(self) -> str:
        return self.onnx_dir or super().source

    @property
    def graph_precision(self) -> str:
        """Which exported graphs the precision reads (int8 is derived from fp32)."""
        return {"auto": "fp32", "int8": "fp32"}.get(self.precision, self.precision)


@dataclass(frozen=True)
class OnnxRuntimeSegmenterConfig(ExportedGraphsConfig):
    backend: str = option("onnxruntime", _SEGMENTER_BACKEND)
    providers: str = option("", "onnxruntime execution providers, comma-separated in priority order; empty = "
                                "chosen from segmenter.device.")
    cpu_threads: int = option(0, "onnxruntime CPU intra-op threads; 0 = onnxruntime's default.",
                              minimum=0, maximum=1024)


@dataclass(frozen=True)
class TensorRTSegmenterConfig(ExportedGraphsConfig):
    backend: str = option("tensorrt", _SEGMENTER_BACKEND)
    engine_cache_dir: str | None = option(None, "Folder for built TensorRT engines and the timing cache; unset "
                                                "= <cache root>/tensorrt.", kind=str)

    @property
    def graph_precision(self) -> str:
        return "fp16" if self.precision == "auto" else self.precision


@dataclass(frozen=True)
class PipelineConfig:
    reasoner: ReasonerConfig = field(default_factory=TransformersReasonerConfig)
    segmenter: SegmenterConfig = field(default_factory=Sam2SegmenterConfig)


C = TypeVar("C")


def widen(config: Any, cls: type[C]) -> C:
    """`config` as an instance of `cls`: unchanged when it already is one; a base-class config (e.g. a plain
    SegmenterConfig naming the onnxruntime backend) gains `cls`'s extra fields at their defaults."""
    if isinstance(config, cls):
        return config
    if type(config) not in cls.__mro__:
        raise TypeError(f"backend {config.backend!r} takes a {cls.__name__}, not a {type(config).__name__}")
    values = {f.name: value for f in dataclasses.fields(config) if (value := getattr(config, f.name)) is not None}
    return cls(**values)  # unset (None) fields take `cls`'s own defaults


def from_flat(cls: type[C], values: dict[str, Any]) -> C:
    """A config of `cls` from flat option values (ROS parameters, YAML scalars) by field name: missing names
    and unset values ("" / 0 of optional fields) take `cls`'s own defaults, names `cls` does not have are
    ignored."""
    declared = options_of(cls)
    kwargs = {name: flat for name, value in values.items()
              if name in declared and (flat := declared[name].from_flat(value)) is not None}
    return cls(**kwargs)


__all__ = [
    "DEFAULT_EDGETAM_MODEL",
    "DEFAULT_REASONER_MODEL",
    "DEFAULT_SAM2_MODEL",
    "DEFAULT_SAM3_MODEL",
    "DTYPES",
    "GRAPH_PRECISIONS",
    "BackendConfig",
    "BoxSegmenterConfig",
    "EdgeTamSegmenterConfig",
    "ExportedGraphsConfig",
    "GeneratingReasonerConfig",
    "OnnxRuntimeSegmenterConfig",
    "OpenAIReasonerConfig",
    "PipelineConfig",
    "ReasonerConfig",
    "Sam2SegmenterConfig",
    "Sam2WeightsConfig",
    "Sam3ConceptReasonerConfig",
    "Sam3SegmenterConfig",
    "SegmenterConfig",
    "TensorRTSegmenterConfig",
    "TransformersReasonerConfig",
    "TransformersSamConfig",
    "from_flat",
    "widen",
]
