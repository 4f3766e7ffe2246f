"""Tiny SAM3 and EdgeTAM models built offline from configs (random weights, real architectures), each saved as
one folder that all its classes load, like a released checkpoint.

SAM3: a whole Sam3VideoModel (the concept detector with a 1-layer CLIP text tower over a byte vocabulary, and the
tracker) on one 2-layer ViT backbone at 224 px, laid out as facebook/sam3 is, so Sam3Model, Sam3TrackerModel and
Sam3TrackerVideoModel all load it and share that backbone's weights. EdgeTAM: timm's RepViT-M1 backbone (randomly
initialised) at 256 px with a small perceiver memory. Their masks mean nothing; they run the same transformers
code paths as the released models, for tests and `--tiny` smoke runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_ros.files import build_folder_atomically, default_cache_root

RECIPE_MARKER = "segzero_tiny_recipe.json"


@dataclass(frozen=True)
class TinySamRecipe:
    backend: str
    version: str
    image_size: int

    @property
    def dirname(self) -> str:
        return f"tiny-{self.backend}-{self.image_size}px-r{self.version}"


SAM3 = TinySamRecipe("sam3", "2", 224)
EDGETAM = TinySamRecipe("edgetam", "1", 256)
RECIPES = {"sam3": SAM3, "edgetam": EDGETAM, "sam3_concept": SAM3}
"""By backend: the sam3 segmenter and the sam3_concept reasoner load the same folder, as with facebook/sam3."""

_SMALL_HEADS: dict[str, Any] = {
    "prompt_encoder_config": {"hidden_size": 128},
    "mask_decoder_config": {"hidden_size": 128, "mlp_dim": 128, "num_attention_heads": 2, "iou_head_hidden_dim": 64},
    # Memory attention reads 64-channel memories; its own width must be a larger multiple of 64.
    "memory_attention_hidden_size": 128, "memory_attention_num_layers": 1, "memory_encoder_hidden_size": 128,
    "memory_encoder_output_channels": 64, "mask_downsampler_embed_dim": 128, "memory_fuser_embed_dim": 128,
    "memory_fuser_intermediate_dim": 128,
}


def ensure_tiny_sam(backend: str, cache_root: Path | None = None) -> Path:
    """Folder with the tiny model of `backend` (sam3, sam3_concept or edgetam) and its processor; built if
    missing."""
    if backend not in RECIPES:
        raise ValueError(f"there is no tiny {backend} model; tiny ones: {', '.join(RECIPES)}")
    recipe = RECIPES[backend]
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / recipe.dirname
    if not (target / RECIPE_MARKER).is_file():
        build_folder_atomically(target, lambda folder: build_tiny_sam(folder, recipe),
                                lambda folder: (folder / RECIPE_MARKER).is_file())
    return target


def tiny_video_config(recipe: TinySamRecipe) -> Any:
    import transformers

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    size = recipe.image_size
    prompt = {**_SMALL_HEADS["prompt_encoder_config"], "image_size": size}
    heads = {**_SMALL_HEADS, "prompt_encoder_config": prompt}
    if recipe is SAM3:
        backbone = {"model_type": "sam3_vit_model", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "image_size": size, "patch_size": 14, "window_size": 8,
                    "global_attn_indexes": [1], "pretrain_image_size": size}
        vision = {"model_type": "sam3_vision_model", "backbone_config": backbone, "fpn_hidden_size": 128}
        return hf.Sam3TrackerVideoConfig(vision_config=vision, image_size=size,
                                         memory_attention_feed_forward_hidden_size=128,
                                         **{**heads, "prompt_encoder_config": {**prompt, "patch_size": 14}})
    # transformers' own default spells "architecture" wrongly, so the RepViT backbone is named explicitly.
    backbone = hf.TimmWrapperConfig(architecture="repvit_m1", model_args={"in_chans": 3, "features_only": True,
                                                                          "out_indices": [0, 1, 2, 3]})
    vision = hf.EdgeTamVisionConfig(backbone_config=backbone, backbone_channel_list=[384, 192, 96, 48],
                                    backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
                                    fpn_hidden_size=128)
    return hf.EdgeTamVideoConfig(
        vision_config=vision, image_size=size, memory_attention_mlp_hidden_size=128,
        memory_attention_rope_feat_sizes=[size // 16] * 2, memory_attention_rope_k_sizes=[4, 4],
        perceiver_resampler_num_latents=16, perceiver_resampler_num_latents_2d=16,  # = rope_k_sizes' 4 × 4
        perceiver_resampler_num_layers=1, **{**heads, "prompt_encoder_config": {**prompt, "patch_size": 16}})


def tiny_sam3_config(tokenizer: Any) -> Any:
    """Sam3VideoConfig: the concept detector and the tracker on one backbone (the same ViT settings in both)."""
    import transformers

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    return hf.Sam3VideoConfig(detector_config=tiny_concept_config(SAM3, tokenizer).to_dict(),
                              tracker_config=tiny_video_config(SAM3).to_dict())


def tiny_concept_config(recipe: TinySamRecipe, tokenizer: Any) -> Any:
    import transformers

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    size, hidden = recipe.image_size, 128
    backbone = {"model_type": "sam3_vit_model", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 2, "image_size": size, "patch_size": 14, "window_size": 8,
                "global_attn_indexes": [1], "pretrain_image_size": size}
    layers = {"num_attention_heads": 2, "intermediate_size": 128}
    return hf.Sam3Config(
        vision_config={"backbone_config": backbone, "fpn_hidden_size": hidden},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "num_hidden_layers": 1, "projection_dim": hidden,
                     "max_position_embeddings": 32, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, **layers},
        geometry_encoder_config={"hidden_size": hidden, "num_layers": 1, **layers},
        detr_encoder_config={"hidden_size": hidden, "num_layers": 1, **layers},
        detr_decoder_config={"hidden_size": hidden, "num_layers": 1, "num_queries": 8, **layers},
        mask_decoder_config={"hidden_size": hidden, "num_attention_heads": 2})


def tiny_clip_tokenizer() -> Any:
    """CLIP's tokenizer over a vocabulary of single bytes (no merges): offline, and enough to run the text tower."""
    import transformers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    characters = list(bytes_to_unicode().values())  # type: ignore[no-untyped-call]
    vocab = {character: index for index, character in enumerate(characters)}
    vocab.update({character + "</w>": len(characters) + index for index, character in enumerate(characters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return hf.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)


def build_tiny_sam(output_dir: Path, recipe: TinySamRecipe, seed: int = 0) -> None:
    import torch
    import transformers

    hf: Any = transformers  # its partial annotations trip mypy --strict; use it untyped
    size = recipe.image_size
    tokenizer = tiny_clip_tokenizer() if recipe is SAM3 else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if recipe is SAM3:
            model = hf.Sam3VideoModel(tiny_sam3_config(tokenizer)).eval()
        else:
            model = hf.EdgeTamVideoModel(tiny_video_config(recipe)).eval()
    image_processor_class = hf.Sam2ImageProcessor if recipe is EDGETAM else hf.Sam3ImageProcessor
    mask_side = 4 * size // (16 if recipe is EDGETAM else 14)
    image_processor = image_processor_class(size={"height": size, "width": size},
                                            mask_size={"height": mask_side, "width": mask_side})
    output_dir.mkdir(parents=True, exist_ok=True)
    if recipe is SAM3:
        save_hub_layout(model, output_dir)
    else:
        model.save_pretrained(output_dir)
    if tokenizer is not None:
        hf.Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(output_dir)
    else:
        image_processor.save_pretrained(output_dir)
    marker = {"backend": recipe.backend, "recipe_version": recipe.version, "image_size": size, "seed": seed}
    (output_dir / RECIPE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def save_hub_layout(model: Any, output_dir: Path) -> None:
    """Config + weights under the model's own parameter names, as facebook/sam3 stores them. (transformers 5.25's
    save_pretrained of a Sam3VideoModel writes `tracker_model.tracker_model.*`, which Sam3TrackerModel then
    cannot load.)"""
    from safetensors.torch import save_file

    model.config.save_pretrained(output_dir)
    weights = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(output_dir / "model.safetensors"), metadata={"format": "pt"})
