"""In-LLM token pruning (FastV, DART) through forward hooks on stock Llama decoder layers.

At decoder layer ``k`` the image tokens are ranked from signals of layer ``k - 1`` and only
``K`` of them stay for layers ``>= k``; all text tokens stay, and the survivors keep their
**original** rotary positions (official FastV/DART behaviour): we slice the hidden states,
the precomputed ``(cos, sin)`` position embeddings, ``position_ids`` and the attention mask.

Signals gathered for the rule (:class:`LLMPruningState`):

* ``attention_row`` — FastV's score: the post-softmax attention of the **last** prompt token
  over the image tokens at layer ``k - 1``, averaged over heads.  Only that one query row is
  computed (``softmax(q_last K^T / sqrt(d))`` from the layer's own projections and RoPE), so
  the language model keeps SDPA everywhere.
* ``keys`` — layer ``k - 1``'s post-RoPE key states, heads concatenated (DART's pivots).
* ``normed_hidden`` — the hidden states entering layer ``k`` passed through the model's final
  RMSNorm (DART's similarity space).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers.models.llama.modeling_llama import rotate_half


@dataclass
class LLMPruningState:
    """Layer-(k-1) signals for one batch; ``N`` image tokens per row at ``image_positions``."""

    attention_row: torch.Tensor  # (B, N)
    keys: torch.Tensor  # (B, L, H * d)
    normed_hidden: torch.Tensor  # (B, L, D)
    image_positions: torch.Tensor  # (B, N) sequence indices of the image tokens
    attention_mask: torch.Tensor  # (B, L) 1 = real token


class InLLMPruner(Protocol):
    """What the adapter needs from an in-LLM pruner (FastV, DART)."""

    layer: int

    def select_in_llm(self, state: LLMPruningState, k: int) -> torch.Tensor:
        """(B, K) kept image-token indices in [0, N), ascending."""


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def _mask_row_bias(mask_4d: torch.Tensor | None, padding: torch.Tensor, dtype) -> torch.Tensor:
    """Additive bias of the last query row: 0 where attended, -inf where masked."""
    if mask_4d is not None:
        row = mask_4d[:, 0, -1, :]
        if row.dtype == torch.bool:
            return torch.zeros(row.shape, dtype=dtype).masked_fill(~row, float("-inf"))
        return row.to(dtype)
    return torch.zeros(padding.shape, dtype=dtype).masked_fill(padding == 0, float("-inf"))


def last_token_attention(attn_module, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         mask_4d: torch.Tensor | None, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-mean attention row of the last query over all keys, and the post-RoPE keys."""
    b, length, _ = normed.shape
    d = attn_module.head_dim
    q = attn_module.q_proj(normed[:, -1:]).view(b, 1, -1, d).transpose(1, 2)
    k = attn_module.k_proj(normed).view(b, length, -1, d).transpose(1, 2)
    q = _rope(q, cos[:, -1:], sin[:, -1:])
    k = _rope(k, cos, sin)
    k_full = k.repeat_interleave(attn_module.num_key_value_groups, dim=1)
    scores = (q.float() @ k_full.float().transpose(-1, -2)).squeeze(2) * attn_module.scaling
    scores = scores + _mask_row_bias(mask_4d, padding, scores.dtype).unsqueeze(1)
    row = scores.softmax(-1).mean(1)
    keys = k.transpose(1, 2).reshape(b, length, -1)
    return row, keys


def _take_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x[b, keep[b]]`` for (B, L, ...) tensors."""
    index = keep.view(*keep.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


def _slice_mask(mask: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    if mask is None or not torch.is_tensor(mask) or mask.dim() != 4:
        return mask
    rows = mask.gather(2, keep[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3]))
    return rows.gather(3, keep[:, None, None, :].expand(-1, mask.shape[1], rows.shape[2], -1))


@contextlib.contextmanager
def in_llm_pruning(model, pruner: InLLMPruner, k: int, image_positions: torch.Tensor,
                   attention_mask: torch.Tensor, record: dict | None = None):
    """Install the hooks for one forward pass; ``record['kept']`` receives the (B, K) choice."""
    layers = model.model.language_model.layers
    layer = pruner.layer
    if not 1 <= layer < len(layers):
        raise ValueError(f"in-LLM pruning layer must be in [1, {len(layers) - 1}] for this "
                         f"{len(layers)}-layer language model, got {layer}")
    final_norm = model.model.language_model.norm
    captured: dict = {}
    state: dict = {}

    def capture_attention_input(module, args, kwargs):
        normed = kwargs.get("hidden_states", args[0] if args else None)
        cos, sin = kwargs["position_embeddings"]
        captured["row"], captured["keys"] = last_token_attention(
            module, normed, cos, sin, kwargs.get("attention_mask"), attention_mask)

    def prune(module, args, kwargs):
        hidden = args[0]
        if "keep" not in state:  # first pruned layer: choose the survivors
            if hidden.shape[1] != attention_mask.shape[1]:
                raise RuntimeError("in-LLM pruning expects a full prefill (no KV cache)")
            row = captured["row"].gather(1, image_positions)
            signals = LLMPruningState(row, captured["keys"], final_norm(hidden), image_positions, attention_mask)
            chosen = pruner.select_in_llm(signals, k)
            if chosen.shape != (hidden.shape[0], k):
                raise RuntimeError(f"in-LLM pruner returned shape {tuple(chosen.shape)}, expected ({hidden.shape[0]}, {k})")
            dropped = torch.ones_like(image_positions, dtype=torch.bool).scatter(1, chosen, False)
            keep_mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
            keep_mask.scatter_(1, image_positions, ~dropped)
            state["keep"] = keep_mask.nonzero()[:, 1].view(hidden.shape[0], -1)
            if record is not None:
                record["kept"] = chosen
            args = (_take_rows(hidden, state["keep"]), *args[1:])
        keep = state["keep"]
        cos, sin = kwargs["position_embeddings"]
        kwargs["position_embeddings"] = (_take_rows(cos, keep), _take_rows(sin, keep))
        if torch.is_tensor(kwargs.get("position_ids")):
            kwargs["position_ids"] = kwargs["position_ids"].expand(keep.shape[0], -1).gather(1, keep)
        kwargs["attention_mask"] = _slice_mask(kwargs.get("attention_mask"), keep)
        return args, kwargs

    handles = [layers[layer - 1].self_attn.register_forward_pre_hook(capture_attention_input, with_kwargs=True)]
    handles += [layers[i].register_forward_pre_hook(prune, with_kwargs=True) for i in range(layer, len(layers))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class RegistryInLLMPruner:
    """Binds a registry pruner of stage ``"llm"`` (``fastv``, ``dart``) to the layer signals.

    FastV's rule reads the attention row; DART's rule reads the keys and normed hidden states
    of the whole sequence with one image span per row (rows are left-padded to different
    offsets, so DART runs row by row, which is how its official code runs: batch size 1).
    """

    def __init__(self, pruner):
        if getattr(pruner, "stage", None) != "llm":
            raise ValueError(f"{pruner} is not an in-LLM pruner")
        self.pruner = pruner
        self.layer = pruner.layer

    def select_in_llm(self, state: LLMPruningState, k: int) -> torch.Tensor:
        rule = self.pruner.rule
        if self.pruner.name == "fastv":
            return rule(state.attention_row, k)
        if self.pruner.name == "dart":
            rows = []
            for i in range(state.keys.shape[0]):
                start = int(state.image_positions[i, 0])
                rows.append(rule(state.keys[i:i + 1], state.normed_hidden[i:i + 1], start,
                                 state.image_positions.shape[1], k, text_mask=state.attention_mask[i:i + 1]))
            return torch.cat(rows)
        raise ValueError(f"no layer signals are wired for in-LLM pruner {self.pruner.name!r}")

    def __str__(self) -> str:
        return str(self.pruner)
