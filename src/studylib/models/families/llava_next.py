"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``, anyres): a base tile plus high-resolution tiles.

Stock layout (transformers' ``LlavaNextModel.pack_image_features``, LLaVA-NeXT's
``mm_patch_merge_type = spatial_unpad``): the image is resized to the best grid pinpoint and cut
into ``nh x nw`` CLIP tiles of ``s x s`` patches, plus the whole image as the base tile.  The LLM
sees the base tile's ``s*s`` tokens, then the high-resolution grid (tiles stitched into
``nh*s x nw*s``, the rows or columns added by the aspect-preserving padding removed: ``H' x W'``)
row by row, each row followed by one learned image-newline token.

Visual tokens (what pruners see): the ``N = s*s + H'*W'`` patch tokens in that order, without
the newline tokens (``layout = ((s, s), (H', W'))``, ``grid = (1, N)``).  N depends on the
image's aspect ratio: ``num_patches`` is the maximum over the pinpoints (2,880 for
``llava-v1.6-*``: 576 + 48 x 48, the "2880 tokens" of seed 002).  Each tile's tokens carry that
tile's own [CLS] attention row from CLIP layer -2 (head mean, not renormalised, as for
LLaVA-1.5), keys of the same layer, and ``cls_feature`` is the base tile's [CLS].

Rebuilding the LM input from kept indices (raster order): the kept base tokens, then for every
high-resolution row that keeps at least one token, its kept tokens followed by one newline
token; a row with nothing kept loses its newline too.  With K = N this is exactly the stock
sequence.  The LLM therefore sees ``K`` visual tokens plus one newline per surviving row; the
budget counts patch tokens only.  Merged selections (VisionZip) are fed as they are, without
newline tokens, as VisionZip's own LLaVA-NeXT code does (pruners.md §4).

``prune_scope``: ``"sequence"`` (default) prunes the whole visual sequence at once (DivPrune's
choice for NeXT); ``"section"`` prunes the base tile and the high-resolution grid separately,
the budget split by their token shares (``round(K * s^2 / N)`` for the base, at least one token
each).  The official VisionZip / VisPruner / CDPruner NeXT code applies the budget per crop with
unpadding switched off (pruners.md §13); per-crop pruning of the *unpadded* grid is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from PIL import Image
from transformers.models.llava_next.modeling_llava_next import (get_anyres_image_grid_shape,
                                                                 image_size_to_num_patches, unpad_image)

from studylib.models.families.base import ClipAttentionCapture, Family, VisualRow, clip_signals, contiguous_row
from studylib.models.families.llava import gather_rows
from studylib.tokens import QueryContext, Selection, VisualTokens

SCOPES = ("sequence", "section")


def stitch_tiles(tiles: torch.Tensor, tile_grid: tuple[int, int], side: int, image_size) -> torch.Tensor:
    """``(nh*nw, side*side, C)`` high-resolution tile tokens -> ``(H', W', C)`` stitched grid with
    the padding rows/columns removed (transformers' ``unpad_image``)."""
    nh, nw = tile_grid
    channels = tiles.shape[-1]
    grid = tiles.reshape(nh, nw, side, side, channels).permute(4, 0, 2, 1, 3).reshape(channels, nh * side, nw * side)
    return unpad_image(grid, image_size).permute(1, 2, 0)


def num_tokens(config) -> int:
    """The most patch tokens a LLaVA-NeXT checkpoint gives an image: the base tile plus the
    largest pinpoint's grid (no unpadding at that aspect ratio); newline tokens not counted."""
    vision = config.vision_config
    largest = max(h * w for h, w in config.image_grid_pinpoints) // vision.patch_size**2
    return (vision.image_size // vision.patch_size) ** 2 + largest


def slice_tokens(tokens: VisualTokens, start: int, stop: int, grid: tuple[int, int]) -> VisualTokens:
    """The tokens ``start:stop`` of every image as a batch with its own grid."""
    return VisualTokens(features=tokens.features[:, start:stop], embeddings=tokens.embeddings[:, start:stop],
                        cls_attention=tokens.cls_attention[:, start:stop], cls_feature=tokens.cls_feature,
                        keys=tokens.keys[:, start:stop], grid=grid, image_keys=tokens.image_keys)


def slice_query(query: QueryContext | None, start: int, stop: int) -> QueryContext | None:
    if query is None or query.text_attention is None:
        return query
    return replace(query, text_attention=query.text_attention[:, start:stop])


class LlavaNextFamily(Family):
    """LLaVA-NeXT anyres (module docstring)."""

    name = "llava_next"
    variable_n = True

    def __init__(self, model, processor, prune_scope: str = "sequence"):
        super().__init__(model, processor)
        if prune_scope not in SCOPES:
            raise ValueError(f"prune_scope must be one of {SCOPES}, got {prune_scope!r}")
        self.prune_scope = prune_scope
        vision = model.config.vision_config
        self.side = vision.image_size // vision.patch_size

    @property
    def num_patches(self) -> int:
        return num_tokens(self.model.config)

    def build_prompt(self, question) -> str:
        return self.chat_prompt(question) if self.processor.chat_template else super().build_prompt(question)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image], keys: tuple[str, ...]) -> list[VisualTokens]:
        batch = self.image_processor(list(images), return_tensors="pt")
        config = self.model.config
        sizes = batch["image_sizes"].tolist()
        counts = [image_size_to_num_patches(s, config.image_grid_pinpoints, config.vision_config.image_size)
                  for s in sizes]
        pixels = torch.cat([p[:c] for p, c in zip(batch["pixel_values"], counts)]).to(self.device, self.model.dtype)
        tower = self.model.model.vision_tower
        with ClipAttentionCapture(tower, config.vision_feature_layer) as captured:
            out = tower(pixels, output_hidden_states=True)
        signals = clip_signals(captured, out.hidden_states[config.vision_feature_layer])
        result, start = [], 0
        for size, count, key in zip(sizes, counts, keys):
            per_tile = {name: value[start:start + count] for name, value in signals.items()}
            start += count
            result.append(self._image_tokens(per_tile, size, key))
        return result

    def _image_tokens(self, tiles: dict[str, torch.Tensor], image_size, key: str) -> VisualTokens:
        """One image's tokens: base tile then the unpadded high-resolution grid."""
        config = self.model.config
        tile_grid = get_anyres_image_grid_shape(image_size, config.image_grid_pinpoints, config.vision_config.image_size)
        sequences, high_grid = {}, None
        for name in ("features", "keys", "cls_attention"):
            value = tiles[name] if tiles[name].dim() == 3 else tiles[name].unsqueeze(-1)
            high = stitch_tiles(value[1:], tile_grid, self.side, image_size)
            high_grid = tuple(high.shape[:2])
            sequence = torch.cat([value[0], high.reshape(-1, value.shape[-1])])
            sequences[name] = sequence if tiles[name].dim() == 3 else sequence.squeeze(-1)
        n = sequences["features"].shape[0]
        return VisualTokens(features=sequences["features"][None], embeddings=self.project(sequences["features"])[None],
                            cls_attention=sequences["cls_attention"][None], cls_feature=tiles["cls_feature"][:1],
                            keys=sequences["keys"][None], grid=(1, n), image_keys=(key,),
                            layout=((self.side, self.side), high_grid))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.model.multi_modal_projector(features.to(self.device, self.model.dtype))

    def select(self, pruner, tokens: VisualTokens, k: int, query: QueryContext | None) -> Selection:
        """The pruner's selection over the whole sequence, or per section (``prune_scope``)."""
        if self.prune_scope == "sequence" or k < 2:
            return pruner(tokens, k, query)
        (rows, cols), high_grid = tokens.layout
        n_base, n = rows * cols, tokens.num_patches
        k_base = min(max(round(k * n_base / n), 1, k - (n - n_base)), n_base, k - 1)
        parts = [pruner(slice_tokens(tokens, 0, n_base, (rows, cols)), k_base, slice_query(query, 0, n_base)),
                 pruner(slice_tokens(tokens, n_base, n, high_grid), k - k_base, slice_query(query, n_base, n))]
        indices = torch.cat([parts[0].indices, parts[1].indices + n_base], dim=1)
        if parts[0].merged is None:
            return Selection(indices)
        return Selection(indices, torch.cat([parts[0].merged, parts[1].merged], dim=1))

    def visual_rows(self, tokens: VisualTokens, indices: torch.Tensor,
                    merged: torch.Tensor | None) -> list[VisualRow]:
        if merged is not None:
            return [contiguous_row(row) for row in self.project(merged)]
        (rows, cols), (_, high_cols) = tokens.layout
        newline = self.model.model.image_newline
        return [self._row(embeds, kept.cpu(), rows * cols, high_cols, newline)
                for embeds, kept in zip(gather_rows(tokens.embeddings, indices), indices)]

    @staticmethod
    def _row(embeds: torch.Tensor, kept: torch.Tensor, n_base: int, cols: int, newline: torch.Tensor) -> VisualRow:
        """Kept tokens in order with one newline after the last kept token of each high-res row."""
        high_row = torch.where(kept >= n_base, (kept - n_base) // cols, -1)
        ends_row = (kept >= n_base) & (high_row != torch.cat([high_row[1:], high_row.new_full((1,), -2)]))
        slots = torch.arange(len(kept)) + ends_row.long().cumsum(0) - ends_row.long()
        out = embeds.new_empty(len(kept) + int(ends_row.sum()), embeds.shape[-1])
        out[slots] = embeds
        out[slots[ends_row] + 1] = newline.to(out.dtype)
        return contiguous_row(out, slots)


__all__ = ["LlavaNextFamily", "SCOPES", "num_tokens", "slice_tokens", "stitch_tiles"]
