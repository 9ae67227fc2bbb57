"""In-LLM token pruning (FastV, DART; staged: PyramidDrop, SparseVLM) through forward hooks on
stock Llama decoder layers.

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

Staged pruners (``pdrop``, ``sparsevlm``: an in-LLM pruner without a ``layer``, whose rule gives a
:class:`~studylib.pruners._staged.StagePlan`) drop image tokens before several layers
(:class:`StagedDrops`).  At each drop the current visual tokens are scored by the head-mean
attention of query rows (the last token, or SparseVLM's raters) computed as above from the layer
about to run (PyramidDrop) or the layer before (SparseVLM), the top ones stay in raster order,
SparseVLM's recycled tokens are inserted after them, and the positions are **renumbered**
contiguously (both official codes): the rotary embeddings are recomputed with the model's own
``rotary_emb``, the attention mask is re-indexed (merged tokens are causal in their new order).
The first drop's ``K`` kept tokens are what ``record['kept']`` receives, as for FastV.  Qwen2.5-VL's
M-RoPE has no contiguous renumbering: there the survivors keep their positions, as FastV's do
(SparseVLM+'s "keep position id"; a deviation from both official codes, which run LLaVA only).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers.models.llama.modeling_llama import rotate_half

from studylib.pruners._similarity import top_k_raster
from studylib.pruners._staged import StagePlan


@dataclass
class LLMPruningState:
    """Layer-(k-1) signals for one batch; ``N`` image tokens per row at ``image_positions``."""

    attention_row: torch.Tensor  # (B, N)
    keys: torch.Tensor  # (B, L, H * d)
    normed_hidden: torch.Tensor  # (B, L, D)
    image_positions: torch.Tensor  # (B, N) sequence indices of the image tokens
    attention_mask: torch.Tensor  # (B, L) 1 = real token


class InLLMPruner(Protocol):
    """What the adapter needs from an in-LLM pruner (FastV, DART): its layer and its selection.
    A staged pruner instead has ``stage_plan(n_layers, k) -> StagePlan`` (and ``layer = None``)."""

    layer: int | None

    def select_in_llm(self, state: LLMPruningState, k: int) -> torch.Tensor:
        """(B, K) kept image-token indices in [0, N), ascending."""


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def _mask_rows_bias(mask_4d: torch.Tensor | None, padding: torch.Tensor, rows: torch.Tensor, dtype) -> torch.Tensor:
    """Additive bias ``(B, R, L)`` of the query rows ``rows`` ``(B, R)``: 0 where attended, -inf
    where masked (the model's 4-D mask, or causal order and padding when it passes none)."""
    if mask_4d is not None:
        allowed = mask_4d[:, 0].gather(1, rows.unsqueeze(-1).expand(-1, -1, mask_4d.shape[-1]))
        if allowed.dtype != torch.bool:
            return allowed.to(dtype)
    else:
        keys = torch.arange(padding.shape[1], device=padding.device)
        allowed = (keys <= rows.unsqueeze(-1)) & (padding != 0).unsqueeze(1)
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))


def query_projections(attn_module, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-RoPE queries ``(B, H, R, d)`` of the rows ``rows`` ``(B, R)`` and keys ``(B, H_kv, L, d)``
    of every position, from the layer's own projections."""
    b, length, _ = normed.shape
    n_rows = rows.shape[1]
    d = attn_module.head_dim
    gathered = normed.gather(1, rows.unsqueeze(-1).expand(-1, -1, normed.shape[-1]))
    q = attn_module.q_proj(gathered).view(b, n_rows, -1, d).transpose(1, 2)
    k = attn_module.k_proj(normed).view(b, length, -1, d).transpose(1, 2)
    at_rows = rows.unsqueeze(-1).expand(-1, -1, cos.shape[-1])
    q = _rope(q, cos.expand(b, -1, -1).gather(1, at_rows), sin.expand(b, -1, -1).gather(1, at_rows))
    return q, _rope(k, cos, sin)


def attention_rows(attn_module, q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Head-mean ``softmax(q K^T / sqrt(d) + bias)`` ``(B, R, L)`` in float32; ``bias`` ``(B, R, L)``
    additive (0 / -inf), or boolean (True: attended)."""
    k_full = k.repeat_interleave(attn_module.num_key_value_groups, dim=1)
    scores = (q.float() @ k_full.float().transpose(-1, -2)) * attn_module.scaling
    if bias.dtype == torch.bool:
        bias = torch.zeros(bias.shape, dtype=scores.dtype, device=bias.device).masked_fill(~bias, float("-inf"))
    return (scores + bias.to(scores.dtype).unsqueeze(1)).softmax(-1).mean(1)


def query_attention(attn_module, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    mask_4d: torch.Tensor | None, padding: torch.Tensor,
                    rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-mean attention ``(B, R, L)`` of the query rows ``rows`` ``(B, R)`` over all keys,
    ``softmax(q K^T / sqrt(d))`` from the layer's own projections and RoPE, and the post-RoPE keys
    ``(B, L, H * d)``."""
    q, k = query_projections(attn_module, normed, cos, sin, rows)
    attention = attention_rows(attn_module, q, k, _mask_rows_bias(mask_4d, padding, rows, torch.float32))
    keys = k.transpose(1, 2).reshape(normed.shape[0], normed.shape[1], -1)
    return attention, keys


def last_token_attention(attn_module, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         mask_4d: torch.Tensor | None, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-mean attention row ``(B, L)`` of the last query over all keys, and the post-RoPE keys."""
    last = torch.full((normed.shape[0], 1), normed.shape[1] - 1, dtype=torch.long, device=normed.device)
    attention, keys = query_attention(attn_module, normed, cos, sin, mask_4d, padding, last)
    return attention[:, 0], keys


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
    """Install the hooks for one forward pass; ``record['kept']`` receives the (B, K) choice (of
    the first drop, for a staged pruner)."""
    stage_plan = getattr(pruner, "stage_plan", None)
    if stage_plan is not None:
        language_model = model.model.language_model
        drops = StagedDrops(language_model, stage_plan(len(language_model.layers), k), image_positions,
                            attention_mask, record)
        handles = drops.install()
    else:
        handles = _single_drop_hooks(model, pruner, k, image_positions, attention_mask, record)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _single_drop_hooks(model, pruner: InLLMPruner, k: int, image_positions: torch.Tensor,
                       attention_mask: torch.Tensor, record: dict | None) -> list:
    """FastV / DART: capture layer ``k - 1``'s signals, choose before layer ``k``, slice after it."""
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
    return handles


def _uses_mrope(language_model) -> bool:
    rope = getattr(language_model.config, "rope_parameters", None) or getattr(language_model.config, "rope_scaling", None)
    return isinstance(rope, dict) and "mrope_section" in rope


class StagedDrops:
    """One forward pass of a staged in-LLM pruner (:class:`StagePlan`; module docstring).

    Tracks, in the current (shortened) sequence: ``visual`` ``(B, V)`` the positions of the visual
    tokens (the image tokens, then the kept and recycled ones), ``queries`` ``(B, R)`` with
    ``valid`` the query rows (SparseVLM's raters; ``None``: the last token), ``padding`` ``(B, L)``
    (1 = real token), and ``overrides``: the position ids, rotary embeddings and attention mask
    every layer after the latest drop receives."""

    def __init__(self, language_model, plan: StagePlan, image_positions: torch.Tensor,
                 padding: torch.Tensor, record: dict | None):
        self.lm, self.plan, self.record = language_model, plan, record
        self.renumber = not _uses_mrope(language_model)
        self.stage_of = {layer: stage for stage, layer in enumerate(plan.layers)}
        self.visual, self.padding = image_positions, padding
        self.queries = self.valid = self.scores = self.overrides = None

    def install(self) -> list:
        layers = self.lm.layers
        handles = []
        if self.plan.raters is not None:
            handles.append(layers[0].register_forward_pre_hook(self.choose_raters))
        if self.plan.score_layer == "previous":
            handles += [layers[layer - 1].self_attn.register_forward_pre_hook(self.capture_scores, with_kwargs=True)
                        for layer in self.plan.layers]
        handles += [layers[i].register_forward_pre_hook(functools.partial(self.before_layer, i), with_kwargs=True)
                    for i in range(self.plan.layers[0], len(layers))]
        return handles

    # -- signals ---------------------------------------------------------------------------------
    def choose_raters(self, module, args) -> None:
        """On the input embeddings: the plan's query rows among the tokens after the image."""
        embeds = args[0]
        length = embeds.shape[1]
        last_image = self.visual.amax(dim=1, keepdim=True)
        width = length - 1 - int(last_image.min())
        positions = torch.arange(length - width, length, device=embeds.device).expand(embeds.shape[0], -1)
        text = positions > last_image
        visual = _take_rows(embeds, self.visual)
        raters = self.plan.raters(visual, embeds[:, length - width:], text)
        order = torch.sort(raters.to(torch.int8), dim=1, descending=True, stable=True).indices
        n_rows = max(int(raters.sum(dim=1).max()), 1)
        self.queries = positions.gather(1, order[:, :n_rows])
        self.valid = raters.gather(1, order[:, :n_rows])

    def visual_scores(self, attn_module, normed, cos, sin, mask_4d) -> torch.Tensor:
        """``(B, V)``: the query rows' head-mean attention over the visual tokens, averaged over the rows."""
        if self.queries is None:
            rows = torch.full((normed.shape[0], 1), normed.shape[1] - 1, dtype=torch.long, device=normed.device)
            valid = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
        else:
            rows, valid = self.queries, self.valid
        attention, _ = query_attention(attn_module, normed, cos, sin, mask_4d, self.padding, rows)
        at_visual = attention.gather(2, self.visual.unsqueeze(1).expand(-1, rows.shape[1], -1))
        weight = valid.to(at_visual.dtype).unsqueeze(-1)
        return (at_visual * weight).sum(dim=1) / weight.sum(dim=1)

    def capture_scores(self, module, args, kwargs) -> None:
        cos, sin = kwargs["position_embeddings"]
        self.scores = self.visual_scores(module, kwargs["hidden_states"], cos, sin, kwargs.get("attention_mask"))

    # -- drops -----------------------------------------------------------------------------------
    def before_layer(self, index: int, module, args, kwargs):
        hidden = args[0]
        if self.overrides is not None:
            kwargs.update(self.overrides)
        stage = self.stage_of.get(index)
        if stage is None:
            return args, kwargs
        if stage == 0 and hidden.shape[1] != self.padding.shape[1]:
            raise RuntimeError("in-LLM pruning expects a full prefill (no KV cache)")
        if self.plan.score_layer == "own":
            cos, sin = kwargs["position_embeddings"]
            self.scores = self.visual_scores(module.self_attn, module.input_layernorm(hidden), cos, sin,
                                             kwargs.get("attention_mask"))
        hidden = self.drop(stage, hidden, kwargs)
        if self.overrides is not None:
            kwargs.update(self.overrides)
        return (hidden, *args[1:]), kwargs

    def drop(self, stage: int, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """Keep the plan's count of the best-scored visual tokens; returns the new hidden states."""
        n_visual = self.visual.shape[1]
        chosen = top_k_raster(self.scores, min(self.plan.keep[stage], n_visual))
        if stage == 0 and self.record is not None:
            self.record["kept"] = chosen
        if chosen.shape[1] == n_visual:
            return hidden
        merged = None
        if self.plan.recycle is not None:
            dropped = torch.ones_like(self.visual, dtype=torch.bool).scatter(1, chosen, False)
            dropped = dropped.nonzero()[:, 1].view(hidden.shape[0], -1)
            merged = self.plan.recycle(_take_rows(hidden, self.visual.gather(1, dropped)), self.scores.gather(1, dropped))
        return self.rebuild(hidden, chosen, merged, kwargs)

    def rebuild(self, hidden: torch.Tensor, chosen: torch.Tensor, merged: torch.Tensor | None,
                kwargs: dict) -> torch.Tensor:
        """The sequence after a drop: earlier tokens, the kept visual tokens, the ``c`` merged ones,
        the rest; updates the tracked positions and the layers' overrides."""
        c = 0 if merged is None else merged.shape[1]
        source, mask_source, moved = _layout_after_drop(self.visual, self.visual.gather(1, chosen), hidden.shape[1], c)
        self.visual = torch.cat([moved(self.visual.gather(1, chosen)),
                                 moved.slot + torch.arange(c, device=hidden.device)], dim=1)
        if self.queries is not None:
            self.queries = moved(self.queries)
        extended = hidden if merged is None else torch.cat([hidden, merged.to(hidden.dtype)], dim=1)
        hidden = _take_rows(extended, source)
        old_padding, self.padding = self.padding, self.padding.gather(1, mask_source)
        positions, rotary = self._positions_after(hidden, old_padding, mask_source, kwargs)
        mask = _slice_mask(kwargs.get("attention_mask"), mask_source)
        if c and torch.is_tensor(mask) and mask.dim() == 4:  # merged tokens: causal in their new order
            causal = torch.ones(mask.shape[-1], mask.shape[-1], dtype=torch.bool, device=mask.device).tril()
            mask = mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, torch.finfo(mask.dtype).min)
        self.overrides = {"position_ids": positions, "position_embeddings": rotary, "attention_mask": mask}
        return hidden

    def _positions_after(self, hidden, old_padding, mask_source, kwargs):
        """Position ids and rotary ``(cos, sin)`` of the new sequence: renumbered ``first, first + 1, …``
        over the real tokens (official), or with M-RoPE the survivors' own (merged tokens: the last
        kept visual token's)."""
        old = kwargs.get("position_ids")
        old = old.expand(hidden.shape[0], -1) if torch.is_tensor(old) else None
        if not self.renumber:
            rotary = tuple(_take_rows(x.expand(hidden.shape[0], -1, -1), mask_source) for x in kwargs["position_embeddings"])
            return (None if old is None else old.gather(1, mask_source)), rotary
        first = old.gather(1, old_padding.argmax(dim=1, keepdim=True))
        real = self.padding != 0
        positions = torch.where(real, first + real.long().cumsum(dim=1) - 1, old.gather(1, mask_source))
        return positions, self.lm.rotary_emb(hidden, positions)


class _Moved:
    """New index of a surviving old position after a drop (``slot``: where the merged tokens start)."""

    def __init__(self, new_of_old: torch.Tensor, last: torch.Tensor, slot: torch.Tensor, c: int):
        self.new_of_old, self.last, self.slot, self.c = new_of_old, last, slot, c

    def __call__(self, old: torch.Tensor) -> torch.Tensor:
        return self.new_of_old.gather(1, old) + self.c * (old > self.last)


def _layout_after_drop(visual: torch.Tensor, kept_visual: torch.Tensor, length: int, c: int):
    """Index maps of a drop from a ``(B, length)`` sequence whose visual tokens sit at ``visual``:
    ``source`` ``(B, L')`` into ``[hidden, merged]`` (merged after the last kept visual token),
    ``mask_source`` the same with each merged token mapped to that last kept token (its padding,
    mask row and position stand in for them), and the :class:`_Moved` map of surviving positions."""
    b = visual.shape[0]
    keep = torch.ones(b, length, dtype=torch.bool, device=visual.device)
    keep.scatter_(1, visual, False)
    keep.scatter_(1, kept_visual, True)
    kept = keep.nonzero()[:, 1].view(b, -1)
    new_of_old = keep.long().cumsum(dim=1) - 1
    last = kept_visual[:, -1:]
    slot = new_of_old.gather(1, last) + 1
    t = torch.arange(kept.shape[1] + c, device=visual.device).expand(b, -1)
    survivor = (t < slot) | (t >= slot + c)
    from_kept = kept.gather(1, torch.where(t < slot, t, (t - c).clamp(min=0)).clamp(max=kept.shape[1] - 1))
    source = torch.where(survivor, from_kept, length + t - slot)
    mask_source = torch.where(survivor, from_kept, last.expand(-1, t.shape[1]))
    return source, mask_source, _Moved(new_of_old, last, slot, c)


class RegistryInLLMPruner:
    """Binds a registry pruner of stage ``"llm"`` (``fastv``, ``dart``; staged: ``pdrop``,
    ``sparsevlm``) to the layer signals.

    FastV's rule reads the attention row; DART's rule reads the keys and normed hidden states
    of the whole sequence with one image span per row (rows are left-padded to different
    offsets, so DART runs row by row, which is how its official code runs: batch size 1).
    """

    def __init__(self, pruner):
        if getattr(pruner, "stage", None) != "llm":
            raise ValueError(f"{pruner} is not an in-LLM pruner")
        self.pruner = pruner
        self.layer = pruner.layer
        #: FastV and DART read only the image span and the text after it, so their rows may share
        #: the layers below the drop (:mod:`studylib.models.shared_in_llm`)
        self.shares_prefix = pruner.name in ("fastv", "dart")
        #: staged pruners (no ``layer``): their rule, ``(n_layers, k) -> StagePlan``
        self.stage_plan = pruner.rule if pruner.layer is None else None

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
