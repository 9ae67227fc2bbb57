"""LLaVA-1.5 (``LlavaForConditionalGeneration``, 7B and 13B): one 336 px CLIP-L/14 tile, 576 tokens.

Images are padded to a square with the processor's mean colour (LLaVA-1.5's
``image_aspect_ratio='pad'``), encoded once, and everything the pruners read comes from the
vision layer the projector reads (``vision_feature_layer = -2``): patch features, the [CLS]
row of the head-mean attention, head-mean keys and the [CLS] feature
(:func:`~studylib.models.families.base.clip_signals`).  The language model receives the kept
tokens in raster order at contiguous positions (official pre-LLM pruners); a merged selection
(VisionZip) is projected and fed as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from studylib.models.families.base import ClipAttentionCapture, Family, VisualRow, clip_signals, contiguous_row
from studylib.tokens import VisualTokens


def num_tokens(config) -> int:
    """N of a LLaVA-1.5 checkpoint: ``(image_size / patch_size)^2``."""
    vision = config.vision_config
    return (vision.image_size // vision.patch_size) ** 2


def gather_rows(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``x[b, indices[b]]`` for ``(B, N, D)`` ``x`` and ``(B, K)`` indices."""
    index = indices.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.gather(1, index)


class LlavaFamily(Family):
    """LLaVA-1.5: square-padded single tile, [CLS] attention from CLIP layer -2."""

    name = "llava"

    def __init__(self, model, processor, pad_to_square: bool = True):
        super().__init__(model, processor)
        self.pad_to_square = pad_to_square

    @property
    def num_patches(self) -> int:
        return num_tokens(self.model.config)

    def _square(self, image: Image.Image) -> Image.Image:
        """LLaVA-1.5's ``image_aspect_ratio='pad'``: pad to square with the mean colour."""
        w, h = image.size
        if w == h or not self.pad_to_square:
            return image
        fill = tuple(int(round(m * 255)) for m in self.image_processor.image_mean)
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = self.image_processor([self._square(im) for im in images], return_tensors="pt")
        return batch["pixel_values"].to(self.device, self.model.dtype)

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[Image.Image], image_keys: tuple[str, ...]) -> VisualTokens:
        """Run the vision tower once and read everything the pruners need from layer -2."""
        tower = self.model.model.vision_tower
        layer = self.model.config.vision_feature_layer
        with ClipAttentionCapture(tower, layer) as captured:
            out = tower(self.pixel_values(images), output_hidden_states=True)
        signals = clip_signals(captured, out.hidden_states[layer])
        n = signals["features"].shape[1]
        rows = int(round(n**0.5))
        return VisualTokens(embeddings=self.project(signals["features"]), grid=(rows, n // rows),
                            image_keys=image_keys, **signals)

    def encode_images(self, images: Sequence[Image.Image], keys: tuple[str, ...]) -> list[VisualTokens]:
        encoded = self.encode_batch(images, keys)
        return [encoded[i] for i in range(len(images))]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.model.multi_modal_projector(features.to(self.device, self.model.dtype))

    def visual_rows(self, tokens: VisualTokens, indices: torch.Tensor,
                    merged: torch.Tensor | None) -> list[VisualRow]:
        visual = self.project(merged) if merged is not None else gather_rows(tokens.embeddings, indices)
        return [contiguous_row(row) for row in visual]


__all__ = ["LlavaFamily", "gather_rows", "num_tokens"]
