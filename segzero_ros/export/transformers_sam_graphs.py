"""The image path of transformers' SAM3 tracker and EdgeTAM as the same two graphs as an exported SAM2, so the
`onnxruntime` and `tensorrt` segmenter backends run them unchanged.

The graphs keep SAM2's contract (`segzero_ros.export.wrappers`): the encoder takes the resized RGB image 0..255
and applies the model's own normalisation inside (SAM3: mean = std = 0.5; EdgeTAM: ImageNet's), returning the
image embedding and the two high-resolution feature maps; the decoder takes them with the box corners (labels 2,
3) and positive points in the encoder frame and returns all four mask tokens and their IoU predictions. Box
corners as labelled points plus the padding point is the prompt transformers builds from a box (its box
embedding adds the same padding point), so the decoder graph equals the model called with `input_boxes`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TransformersSamEncoderGraph(nn.Module):
    """image 1×3×S×S float32 RGB 0..255 → image_embed, high_res_feats_0, high_res_feats_1 (what the model's
    `get_image_embeddings` returns, last first)."""

    def __init__(self, model: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalized = ((image / 255.0) - self.mean) / self.std  # the processor's rescale + normalize
        maps = self.model.get_image_embeddings(normalized)
        return maps[-1], maps[0], maps[1]


class TransformersSamDecoderGraph(nn.Module):
    """Image features + prompt points (1×N×2 in the S×S frame, labels 1×N int32) → masks 1×4×S'×S' (all four
    mask tokens: 0 = single-mask output, 1–3 = multimask) and iou_predictions 1×4."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        with torch.no_grad():  # a constant of the model: keeps its grid construction out of the graph
            self.register_buffer("image_pe", model.get_image_wide_positional_embeddings().detach().clone())

    def forward(self, image_embed: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(input_points=point_coords[:, None], input_labels=point_labels[:, None],
                                            input_boxes=None, input_masks=None)
        features = [high_res_feats_0, high_res_feats_1]
        multimask, multimask_iou, _, _ = self.mask_decoder(
            image_embeddings=image_embed, image_positional_embeddings=self.image_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True, high_resolution_features=features)
        dynamic = self.mask_decoder.dynamic_multimask_via_stability
        self.mask_decoder.dynamic_multimask_via_stability = False  # token 0 itself; the runtime applies the rule
        try:
            single, single_iou, _, _ = self.mask_decoder(
                image_embeddings=image_embed, image_positional_embeddings=self.image_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
                high_resolution_features=features)
        finally:
            self.mask_decoder.dynamic_multimask_via_stability = dynamic
        masks = torch.cat([single[:, 0], multimask[:, 0]], dim=1)
        return masks, torch.cat([single_iou[:, 0], multimask_iou[:, 0]], dim=1)
