"""The two torch modules that become the exported SAM2 graphs, built from a loaded sam2 model.

They call the sam2 package's own modules (image encoder, prompt encoder, mask decoder) the way
SAM2ImagePredictor does, so the graphs compute exactly what the predictor computes; what differs is only
where work happens (normalisation moves into the encoder graph; mask choice and upsampling move out of
the decoder graph into numpy, see processing.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from segzero_ros.segmentation.processing import IMAGE_MEAN, IMAGE_STD
from segzero_ros.segmentation.sam2_backend import sam2_feature_sizes


class Sam2ImageEncoderGraph(nn.Module):
    """image 1×3×S×S float32 RGB 0..255 (already resized) → image_embed 1×256×S/16², high_res_feats_0
    1×32×S/4², high_res_feats_1 1×64×S/8²: the features SAM2ImagePredictor.set_image stores."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        if not model.use_high_res_features_in_sam:
            raise ValueError("this SAM2 config does not feed high-resolution features to the mask decoder; "
                             "only configs that do (all released hiera t/s/b+/l) can be exported")
        self.model = model
        self.feature_sizes = sam2_feature_sizes(int(model.image_size), int(model.backbone_stride))
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGE_STD, dtype=torch.float32).reshape(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The predictor's ToTensor (/255) + Normalize, in the same operation order.
        normalized = ((image / 255.0) - self.mean) / self.std
        backbone_out = self.model.forward_image(normalized)
        _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        maps = [feat.permute(1, 2, 0).reshape(1, -1, height, width)
                for feat, (height, width) in zip(vision_feats, self.feature_sizes, strict=True)]
        return maps[2], maps[0], maps[1]


class Sam2PromptDecoderGraph(nn.Module):
    """Image features + prompt points → masks 1×4×S/4² (logits of all four mask tokens) and
    iou_predictions 1×4. point_coords 1×N×2 are in the S×S encoder frame, point_labels 1×N int32
    (1 positive, 0 negative, 2/3 box corners); N is dynamic."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.mask_decoder = model.sam_mask_decoder
        # A constant of the model: computing it once keeps a CumSum-built grid out of the graph.
        with torch.no_grad():
            self.register_buffer("image_pe", model.sam_prompt_encoder.get_dense_pe().detach().clone())

    def forward(self, image_embed: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # As SAM2ImagePredictor._predict: the box arrives as two corner points, so boxes=None and the
        # prompt encoder appends its padding point.
        sparse, dense = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        masks, iou_predictions, _, _ = self.mask_decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        return masks, iou_predictions


@contextlib.contextmanager
def frozen_position_embedding(model: Any) -> Iterator[None]:
    """Hiera resizes its position embedding with bicubic interpolation on every call, which TensorRT's
    Resize does not support. For a fixed input size it is a constant: compute it once and let the trunk
    return that constant while the graph is traced."""
    trunk = model.image_encoder.trunk
    size = int(model.image_size)
    with torch.no_grad():
        grid = trunk.patch_embed(torch.zeros(1, 3, size, size, device=model.device)).shape[1:3]
        constant = trunk._get_pos_embed(tuple(grid)).detach().clone()

    def fixed(hw: tuple[int, int]) -> Any:
        if tuple(hw) != tuple(grid):
            raise ValueError(f"position embedding was frozen for a {tuple(grid)} grid, asked for {tuple(hw)}")
        return constant

    trunk._get_pos_embed = fixed  # an instance attribute shadows the method
    try:
        yield
    finally:
        del trunk._get_pos_embed
