"""The shared backbone's rules on a small torch module: same pixels in inference → the stored output; anything
else (new pixels, grad mode, extra arguments, different weights, another device/dtype key) → computed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from segzero_ros.shared_backbone import cache_of, share_backbone  # noqa: E402


class Encoder(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(4, 3)

    def forward(self, pixel_values, scale=1.0):
        return self.proj(pixel_values) * scale


class Model(torch.nn.Module):
    """Shaped like transformers' SAM models: the backbone at vision_encoder.backbone."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.vision_encoder = torch.nn.Module()
        self.vision_encoder.backbone = Encoder(seed)


def test_equal_weights_share_one_module_and_same_pixels_reuse_the_output(tmp_path):
    first, second, different = Model(0), Model(0), Model(1)
    assert share_backbone(first, str(tmp_path), "cpu", torch.float32) is False
    assert share_backbone(second, str(tmp_path), "cpu", torch.float32) is True
    assert second.vision_encoder.backbone is first.vision_encoder.backbone
    assert share_backbone(different, str(tmp_path), "cpu", torch.float32) is False  # weights differ: its own
    other_dtype = Model(0)
    assert share_backbone(other_dtype, str(tmp_path), "cpu", torch.float16) is False

    cache = cache_of(first)
    assert cache is not None
    pixels = torch.rand(2, 4)
    with torch.inference_mode():
        out = first.vision_encoder.backbone(pixels)
        again = second.vision_encoder.backbone(pixels.clone())
        assert again is out and (cache.computed, cache.reused) == (1, 1)
        fresh = second.vision_encoder.backbone(pixels + 1)
        assert (cache.computed, cache.reused) == (2, 1)
        torch.testing.assert_close(fresh, first.vision_encoder.backbone.proj(pixels + 1), rtol=0, atol=0)
        scaled = first.vision_encoder.backbone(pixels + 1, scale=2.0)
        assert (cache.computed, cache.reused) == (2, 1) and torch.equal(scaled, fresh * 2)
    trained = first.vision_encoder.backbone(pixels + 1)  # grad mode: never from the cache
    assert trained.requires_grad and (cache.computed, cache.reused) == (2, 1)
    cache.forget()
    with torch.inference_mode():
        first.vision_encoder.backbone(pixels + 1)
    assert (cache.computed, cache.reused) == (3, 1)
