"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): dynamic resolution, window attention, 2x2 merger.

Vision side.  The processor resizes each image to multiples of 28 px within
``[min_pixels, max_pixels]`` and cuts it into 14 px patches; the ViT runs window attention with a
few full-attention blocks (``fullatt_block_indexes``, the last block is one of them in the
released models) on patches ordered window by window, and the merger maps each 2x2 unit of
patches to one LLM token: ``mlp(concat_4(ln_q(h)))``, then undoes the window order.  One visual
token = one merged unit; ``grid`` = the merged grid ``(h/2, w/2)`` in raster order, so N varies
with the image (``num_patches`` = the most the processor allows, ``max_pixels / 28^2``).

What the pruners read, per merged unit (raster order):

* ``features``: the merger's MLP input ``concat_4(ln_q(h))`` (``4 * D_v``) -- the last vision
  representation before the projector, as CLIP layer -2 is for LLaVA; ``embeddings`` =
  ``merger.mlp(features)`` (exactly the stock merger output);
* ``cls_attention``: Qwen's ViT has no [CLS].  The saliency is the **attention each patch
  receives** in vision block ``saliency_block`` (default -1, the last block, a full-attention
  block): post-softmax, averaged over heads and over all query patches of the image, summed
  over the unit's 4 patches.  The weights are recomputed from that block's own ``qkv``
  projection and 2-D RoPE (the model keeps SDPA), as the official VisionZip port to Qwen2.5-VL
  does: its authors note that FlashAttention hides the weights so the vision attention must be
  recomputed (JIA-Lab-research/VisionZip issues #24, #25, #29; pruners.md §4).  A third-party
  port that reads token 0 as a "[CLS]" (Hanjiangli/VisionZip-Qwen2VL issue #3) is wrong for Qwen,
  which has none.  The LM-side alternative (text-to-image attention of the last prompt token)
  is what FastV / DART read inside the LLM here and what ``QueryContext.text_attention`` holds;
* ``keys``: that block's pre-RoPE keys, head mean, concatenated over the unit's 4 patches;
* ``cls_feature``: the mean of the image's ``features`` (a global-average token standing in for
  the [CLS] slot that VisionZip's merged sequence starts with).

Language side (M-RoPE).  transformers' ``get_rope_index`` gives text tokens ``(p, p, p)`` and the
image token at merged cell ``(r, c)`` ``(s, s + r, s + c)`` (``s`` = the image's first
position, ``t = 0`` for an image), and restarts the text after the image at ``s + max(h', w')``.
We compute those offsets for the *unpruned* image (``get_vision_position_ids``) and keep the
kept tokens' columns: no position is renumbered, and the text after the image keeps its
position.  For a merged selection (VisionZip's ``[CLS] + dominant + contextual`` layout) the
dominant tokens keep their positions and the other tokens sit at the image's first position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_window_index

from studylib.models.families.base import Family, VisualRow
from studylib.models.families.llava import gather_rows
from studylib.tokens import VisualTokens

#: query rows x keys x heads per attention chunk when recomputing the saliency block's weights
CHUNK_ELEMENTS = 2**26


def num_tokens(config, image_processor: dict) -> int:
    """The most merged tokens a Qwen2.5-VL checkpoint gives an image: ``max_pixels / (patch *
    merge)^2`` (``size.longest_edge`` in the processor's config, or the older ``max_pixels``)."""
    size = image_processor.get("size") or {}
    most = size.get("longest_edge") or image_processor["max_pixels"]
    vision = config.vision_config
    return most // (vision.patch_size * vision.spatial_merge_size) ** 2


def received_attention(attn, hidden: torch.Tensor, cu_seqlens: torch.Tensor,
                       position_embeddings: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S,)`` attention received by each patch (post-softmax, mean over heads and over the
    query patches of its attention segment) and ``(S, d)`` head-mean pre-RoPE keys, from one
    Qwen2.5-VL vision attention module's inputs (patches in the ViT's window order)."""
    length = hidden.shape[0]
    q, k, _ = attn.qkv(hidden).reshape(length, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    keys = k.float().mean(1)
    q, k = apply_rotary_pos_emb_vision(q, k, *position_embeddings)
    received = torch.zeros(length, dtype=torch.float32, device=hidden.device)
    bounds = cu_seqlens.tolist()
    for start, stop in zip(bounds[:-1], bounds[1:]):
        qh, kh = q[start:stop].transpose(0, 1).float(), k[start:stop].transpose(0, 1).float()
        n = stop - start
        rows = max(1, CHUNK_ELEMENTS // (attn.num_heads * n))
        for first in range(0, n, rows):
            weights = (qh[:, first:first + rows] @ kh.transpose(1, 2) * attn.scaling).softmax(-1)
            received[start:stop] += weights.sum((0, 1))
        received[start:stop] /= attn.num_heads * n
    return received, keys


class Qwen2_5_VLFamily(Family):
    """Qwen2.5-VL (module docstring); ``saliency_block`` picks the vision block whose received
    attention is the saliency (negative values count from the end)."""

    name = "qwen2_5_vl"
    variable_n = True
    position_dims = 3

    def __init__(self, model, processor, saliency_block: int = -1):
        super().__init__(model, processor)
        depth = len(model.model.visual.blocks)
        if not -depth <= saliency_block < depth:
            raise ValueError(f"saliency_block must index one of the {depth} vision blocks, got {saliency_block}")
        self.saliency_block = saliency_block % depth
        self.placeholder = processor.image_token
        self.merge = model.config.vision_config.spatial_merge_size

    @property
    def num_patches(self) -> int:
        return num_tokens(self.model.config, self.image_processor.to_dict())

    def build_prompt(self, question) -> str:
        return self.chat_prompt(question)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image], keys: tuple[str, ...]) -> list[VisualTokens]:
        batch = self.image_processor(list(images), return_tensors="pt")
        grid_thw = batch["image_grid_thw"]
        visual = self.model.model.visual
        captured: dict = {}
        hooks = [visual.merger.register_forward_pre_hook(lambda m, args: captured.__setitem__("merger_in", args[0])),
                 visual.blocks[self.saliency_block].attn.register_forward_pre_hook(
                     lambda m, args, kwargs: captured.__setitem__("attn", (args, kwargs)), with_kwargs=True)]
        try:
            visual(batch["pixel_values"].to(self.device, visual.dtype), grid_thw=grid_thw.to(self.device))
        finally:
            for hook in hooks:
                hook.remove()
        args, kwargs = captured["attn"]
        received, head_keys = received_attention(visual.blocks[self.saliency_block].attn, args[0],
                                                 kwargs["cu_seqlens"], kwargs["position_embeddings"])
        window_index, _ = get_vision_window_index(grid_thw, self.merge, visual.window_size, visual.patch_size)
        order = torch.argsort(window_index).to(self.device)
        unit = self.merge**2
        merger = visual.merger
        features = merger.ln_q(captured["merger_in"]).view(-1, merger.hidden_size)[order]
        signals = {"features": features, "embeddings": merger.mlp(features),
                   "cls_attention": received.view(-1, unit).sum(1)[order],
                   "keys": head_keys.view(-1, unit * head_keys.shape[-1])[order]}
        result, start = [], 0
        for (t, h, w), key in zip(grid_thw.tolist(), keys):
            rows, cols = h // self.merge, w // self.merge
            stop = start + t * rows * cols
            part = {name: value[start:stop][None] for name, value in signals.items()}
            result.append(VisualTokens(cls_feature=part["features"][0].mean(0, keepdim=True), grid=(t * rows, cols),
                                       image_keys=(key,), **part))
            start = stop
        return result

    def project(self, features: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.model.visual.merger.mlp(features.to(self.device, self.model.model.visual.dtype))

    def image_offsets(self, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``(3, N)`` M-RoPE offsets of an unpruned image's tokens from its first position, and
        the offset at which the text after it restarts (``get_rope_index``'s rule)."""
        rows, cols = grid
        grid_thw = torch.tensor([1, rows * self.merge, cols * self.merge])
        offsets = self.model.model.get_vision_position_ids(0, grid_thw, 1, self.merge)
        return offsets.cpu(), max(rows, cols)

    def visual_rows(self, tokens: VisualTokens, indices: torch.Tensor,
                    merged: torch.Tensor | None) -> list[VisualRow]:
        full, extent = self.image_offsets(tokens.grid)
        if merged is None:
            return [VisualRow(embeds, torch.arange(len(kept)), full[:, kept.cpu()], extent)
                    for embeds, kept in zip(gather_rows(tokens.embeddings, indices), indices)]
        rows = []
        for embeds, kept in zip(self.project(merged), indices):
            offsets = torch.zeros(3, embeds.shape[0], dtype=full.dtype)
            offsets[:, 1:1 + len(kept)] = full[:, kept.cpu()]
            rows.append(VisualRow(embeds, torch.arange(embeds.shape[0]), offsets, extent))
        return rows


__all__ = ["CHUNK_ELEMENTS", "Qwen2_5_VLFamily", "num_tokens", "received_attention"]
