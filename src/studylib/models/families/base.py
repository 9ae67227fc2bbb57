"""What a model family tells the adapter: how images become :class:`VisualTokens` and how kept
tokens become the language model's input.

A family wraps one stock Hugging Face model class and its processor.  The adapter
(:class:`~studylib.models.adapter.LlavaAdapter`) is family-blind: it tokenizes the prompt around
the family's image placeholder, asks the family for each row's visual block
(:class:`VisualRow`) and lays out ``[before ids][visual block][after ids]`` rows, left-padded.

Positions.  A row's position ids are ``P x L`` (``P = 1``: plain RoPE; ``P = 3``: Qwen2.5-VL's
M-RoPE ``(t, h, w)``).  The text before the image counts ``0..b-1``; the visual block adds its
``offsets`` (``P x T``) to ``b``; the text after the image continues at ``b + extent``.  For the
LLaVA families ``offsets = 0..T-1`` and ``extent = T``: the kept tokens sit at contiguous
positions, as with the official pre-LLM pruners.  For Qwen2.5-VL ``offsets`` are the kept tokens'
own ``(t, h, w)`` offsets in the *unpruned* image and ``extent`` is the unpruned image's, so no
position is renumbered (:mod:`studylib.models.families.qwen2_5_vl`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from studylib.models import prompts
from studylib.tokens import VisualTokens

if TYPE_CHECKING:
    from studylib.data.records import Question


@dataclass(frozen=True)
class VisualRow:
    """One row's visual block as the language model sees it.

    ``embeds``: ``(T, D_l)`` what fills the ``T`` image slots; ``patch_slots``: ``(K,)`` the slot
    of each kept patch (in-LLM pruners rank exactly these; LLaVA-NeXT's image-newline slots are
    not among them); ``offsets``: ``(P, T)`` position offsets from the first slot; ``extent``:
    how far the text after the image is shifted from the first slot."""

    embeds: torch.Tensor
    patch_slots: torch.Tensor
    offsets: torch.Tensor
    extent: int

    @property
    def length(self) -> int:
        return self.embeds.shape[0]


def contiguous_row(embeds: torch.Tensor, patch_slots: torch.Tensor | None = None) -> VisualRow:
    """A visual block at contiguous 1-D positions (the LLaVA families)."""
    t = embeds.shape[0]
    slots = torch.arange(t) if patch_slots is None else patch_slots
    return VisualRow(embeds, slots, torch.arange(t).unsqueeze(0), t)


def row_positions(before: int, row: VisualRow, after: int) -> torch.Tensor:
    """``(P, before + T + after)`` position ids of one unpadded row (module docstring)."""
    p = row.offsets.shape[0]
    text_before = torch.arange(before).expand(p, -1)
    text_after = torch.arange(after).expand(p, -1) + before + row.extent
    return torch.cat([text_before, row.offsets + before, text_after], dim=1)


class Family:
    """Base class: the family-specific half of the adapter (see the module docstring).

    Subclasses set ``name``, ``placeholder`` (the image slot's text in a rendered prompt),
    ``position_dims`` and ``variable_n`` and implement :meth:`encode_images`, :meth:`project` and :meth:`visual_rows`."""

    name = "base"
    placeholder = prompts.IMAGE_PLACEHOLDER
    position_dims = 1
    variable_n = False  # True: N depends on the image; budgets above an image's N keep all its tokens

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor
        self.image_processor = processor.image_processor

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_token_id(self) -> int:
        config = self.model.config
        return getattr(config, "image_token_id", None) or config.image_token_index

    @property
    def num_patches(self) -> int:
        """N of a fixed-size image; for families whose N varies with the image, the maximum."""
        raise NotImplementedError

    def encode_images(self, images: Sequence[Image.Image], keys: tuple[str, ...]) -> list[VisualTokens]:
        """One single-image :class:`VisualTokens` per image (one vision forward for the batch)."""
        raise NotImplementedError

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-projector features -> language-model embeddings (merged selections)."""
        raise NotImplementedError

    def visual_rows(self, tokens: VisualTokens, indices: torch.Tensor,
                    merged: torch.Tensor | None) -> list[VisualRow]:
        """The visual block of each row given its (B, K) kept indices (raster order) or, for
        merging pruners, the (B, T, D_v) merged sequence."""
        raise NotImplementedError

    def build_prompt(self, question: Question) -> str:
        """The single-turn evaluation prompt (LLaVA-1.5's vicuna_v1 unless overridden)."""
        return prompts.build_prompt(question)

    def chat_prompt(self, question: Question) -> str:
        """The processor's own chat template around ``[image][question + answer instruction]``."""
        body = prompts.user_message(question, with_image=False)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": body}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class ClipAttentionCapture:
    """Capture one CLIP encoder layer's post-softmax attention and its key projections.

    Used by the LLaVA families: the [CLS] row of layer ``vision_feature_layer`` (layer -2) is the
    saliency every [CLS]-attention pruner reads, and its head-mean keys are VisionZip's merge
    metric (pruners.md §4).  The tower must run eager attention (``loading.ATTENTION``)."""

    def __init__(self, tower, layer_index: int):
        encoder = getattr(tower, "vision_model", tower).encoder  # older transformers nest it
        self.layer = encoder.layers[layer_index]
        self.captured: dict[str, torch.Tensor] = {}
        self._hooks: list = []

    def __enter__(self) -> dict[str, torch.Tensor]:
        self._hooks = [
            self.layer.self_attn.register_forward_hook(lambda m, a, out: self.captured.__setitem__("attn", out[1])),
            self.layer.self_attn.k_proj.register_forward_hook(lambda m, a, out: self.captured.__setitem__("keys", out)),
        ]
        return self.captured

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        if exc[0] is None and self.captured.get("attn") is None:
            raise RuntimeError("the vision tower returned no attention weights; load the model with "
                               "attn_implementation={'vision_config': 'eager', 'text_config': 'sdpa'}")


def clip_signals(captured: dict[str, torch.Tensor], hidden: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per tile: patch features (CLS dropped), the CLS row of the head-mean attention over the
    patches (not renormalised), head-mean patch keys and the CLS feature."""
    attention = captured["attn"]  # (tiles, heads, N + 1, N + 1), post-softmax
    b, length, _ = captured["keys"].shape
    head_mean_keys = captured["keys"].view(b, length, attention.shape[1], -1).mean(2)
    return {"features": hidden[:, 1:], "cls_attention": attention[:, :, 0, 1:].float().mean(1),
            "keys": head_mean_keys[:, 1:], "cls_feature": hidden[:, 0]}


__all__ = ["ClipAttentionCapture", "Family", "VisualRow", "clip_signals", "contiguous_row", "row_positions"]
