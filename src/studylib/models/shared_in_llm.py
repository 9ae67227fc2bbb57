"""Shared-prefix scoring under a single-drop in-LLM pruner (FastV, DART): the layers before the
drop on the cached prefix, the pruned sequence from the drop on.

FastV and DART keep, before decoder layer ``ℓ``, ``K`` image tokens chosen from layer ``ℓ − 1``'s
signals (:mod:`studylib.pruners.fastv`, :mod:`studylib.pruners.dart`).  Below ``ℓ`` nothing is
pruned, and in a causal LM the states of ``[system text][image][shared question text]`` at layers ``< ℓ`` do not
depend on the rest of the question, so the rows of one image share them exactly as unpruned rows do
(:mod:`studylib.models.prefix_cache`):

1. the group prefixes run once per group on the cached system text, up to layer ``ℓ`` (the
   layers ``≥ ℓ`` are not run: what they would compute is not what any row sees);
2. each row's suffix runs on the gathered ``[system][prefix]`` keys/values of layers ``< ℓ``;
   before layer ``ℓ − 1``'s attention the last token's head-mean attention row over
   ``[system][prefix][suffix]`` and the suffix's post-RoPE keys are computed from that layer's
   projections and RoPE (as the single forward's :func:`~studylib.models.llm_pruning.last_token_attention`);
3. before layer ``ℓ`` each row's sequence is ``[its group's prefix states at layer ℓ][its suffix
   states]``; the pruner chooses on it (DART's keys of layer ``ℓ − 1``: the prefix's cached ones,
   then the suffix's), the dropped image tokens leave, the survivors keep their original positions;
   layers ``≥ ℓ`` run it on the cached system text with their own causal/padding mask.

Every kept token then sees the keys, values and rotary positions of the single forward of
:func:`~studylib.models.llm_pruning.in_llm_pruning` (to float rounding) and the last position is
the row's real last token.  The pruner sees its sequence without the system text and with the
suffix's left padding between the prefix and the suffix (masked); FastV and DART read only the
image span and the real text after it, in order, so they choose the same tokens
(``RegistryInLLMPruner.shares_prefix``).  Layers ``< ℓ`` cost what the unpruned shared forward
costs; layers ``≥ ℓ`` run ``K`` image tokens per row.  The staged pruners (PyramidDrop, SparseVLM:
first drop before layer 1 on the toy, raters over the whole text) and M-RoPE rows keep the single
forward.

Captions re-prune at every generated token (FastV's in-place variant), but below ``ℓ`` the
prompt's states never change, so :class:`InLLMPrefixes` runs each row's prompt up to ``ℓ`` once
(one group per row where no two rows share an image) and every step runs only the prompt's last
token and the tokens generated so far on it (``benchmarks/in_llm_captions.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from studylib.models.families.base import VisualRow, row_positions
from studylib.models.llm_pruning import LLMPruningState, attention_rows, query_projections
from studylib.models.prefix_cache import (PromptRows, _num_layers, _Pieces, common_system, equal_prefixes,
                                          padded_positions, prefix_groups, shared_text, system_states)


class _StopBeforeLayer(Exception):
    """Raised by a pre-hook to end a prefix forward before the layers no row needs."""


def shares_prefix(in_llm) -> bool:
    """Whether an in-LLM pruner takes this module's path: a single drop whose rule reads only the
    image span and the text after it (FastV, DART)."""
    return getattr(in_llm, "layer", None) is not None and getattr(in_llm, "shares_prefix", False)


class InLLMPrefixes:
    """The cached system text and group prefixes of one batch, run up to the drop layer ``ℓ``
    once; :meth:`logits` runs the rows' suffixes on them, once for scoring or once per generated
    token (the prompt's last token and the tokens generated so far) for captions."""

    @classmethod
    def build(cls, adapter, rows: PromptRows, image_keys: Sequence[str], visual: Sequence[VisualRow],
              indices: torch.Tensor, in_llm, k: int, every_row: bool = False) -> InLLMPrefixes | None:
        """The prefixes of ``rows`` under ``in_llm`` at budget ``k``, or ``None`` where the single
        forward applies (no shared prefix, M-RoPE, a pruner that is not :func:`shares_prefix`).
        ``every_row``: give every row its prefix even where no two rows share one (generation runs
        it once for many steps, so it pays without sharing)."""
        if not shares_prefix(in_llm) or not 1 <= in_llm.layer < _num_layers(adapter):
            return None
        if adapter.family.position_dims != 1:
            return None
        system = common_system(rows)
        group_of = (equal_prefixes(rows, image_keys, visual, indices) if every_row
                    else prefix_groups(rows, image_keys, visual, indices, len(system)))
        return None if group_of is None else cls(adapter, rows, visual, in_llm, k, system, group_of)

    def __init__(self, adapter, rows: PromptRows, visual: Sequence[VisualRow], in_llm, k: int,
                 system: tuple[int, ...], group_of: list[int]):
        self.adapter, self.rows, self.visual, self.in_llm, self.k = adapter, rows, visual, in_llm, k
        s, device = len(system), adapter.device
        positions = [row_positions(len(before), v, len(after)) for (before, after), v in zip(rows, visual)]
        self.pieces = _Pieces()
        if system:
            self.pieces.add(system_states(adapter, system, positions[0][:, :s]),
                            torch.ones((1, s), dtype=torch.long, device=device),
                            torch.zeros(len(rows), dtype=torch.long, device=device))
        self.text = shared_text(rows, group_of)
        first_rows = [group_of.index(g) for g in range(len(self.text))]
        prefixes = [list(rows[r][0][s:]) + [adapter.image_token_id] * visual[r].length
                    + list(rows[r][1][: self.text[g]]) for g, r in enumerate(first_rows)]
        self.prefix = _prefix_until(adapter, self.pieces, prefixes, [visual[r] for r in first_rows],
                                    [positions[r][:, s: s + len(prefixes[g])] for g, r in enumerate(first_rows)],
                                    torch.tensor(first_rows, device=device), in_llm.layer)
        width = self.prefix.hidden.shape[1]
        image_slots = torch.stack([visual[r].patch_slots + width - len(prefixes[g]) + len(rows[r][0]) - s
                                   for g, r in enumerate(first_rows)]).to(device)  # (U, N) in the padded prefix
        self.group_of = group_of
        self.group = torch.tensor(group_of, device=device)
        self.image_slots = image_slots.index_select(0, self.group)
        self.pieces.add(self.prefix.states, self.prefix.mask, self.group)
        self.system = s

    def logits(self, extra: Sequence[Sequence[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-token logits and ``(B, K)`` chosen patch indices (into each row's ``patch_slots``) of
        every row, with ``extra[i]`` (e.g. the tokens generated so far) appended to row ``i``'s
        prompt."""
        adapter, n_layers = self.adapter, _num_layers(self.adapter)
        extra = [()] * len(self.rows) if extra is None else extra
        suffixes = [list(after[self.text[g]:]) + list(more)
                    for (_, after), g, more in zip(self.rows, self.group_of, extra)]
        positions = [row_positions(len(before), v, len(after) + len(more))[0, -len(suffix):]
                     for (before, after), v, more, suffix in zip(self.rows, self.visual, extra, suffixes)]
        drop = _Drop(self.in_llm, self.k, self.group, self.prefix, self.image_slots, self.system)
        ids, mask = adapter.left_padded(suffixes)
        layer = self.in_llm.layer
        cache, masks = self.pieces.cache(n_layers, layers_of=[n_layers, layer] if self.system else [layer])
        handles = drop.install(adapter.model.model.language_model, masks, mask)
        try:
            out = adapter.model(inputs_embeds=adapter.embed_ids(ids), attention_mask=torch.cat([*masks, mask], 1),
                                position_ids=padded_positions([p.unsqueeze(0) for p in positions],
                                                              ids.shape[1]).to(adapter.device),
                                past_key_values=cache, use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        return out.logits[:, -1].float(), drop.chosen


class _Prefix:
    """The group prefixes at the drop: hidden states entering layer ``ℓ`` ``(U, P, D)``, their
    position ids ``(U, P)`` and padding mask ``(U, P)``, and the keys/values of layers ``< ℓ``."""

    def __init__(self, hidden, positions, mask, states):
        self.hidden, self.positions, self.mask, self.states = hidden, positions, mask, states


def _prefix_until(adapter, pieces: _Pieces, sequences, visual, positions, source, layer: int) -> _Prefix:
    """Run the left-padded prefix ``sequences`` on ``pieces`` through layers ``< layer`` only."""
    ids, mask = adapter.left_padded(sequences)
    cache, masks = pieces.cache(_num_layers(adapter), source)
    position_ids = padded_positions(positions, ids.shape[1]).to(adapter.device)
    captured = {}

    def stop(module, args):
        captured["hidden"] = args[0]
        raise _StopBeforeLayer

    handle = adapter.model.model.language_model.layers[layer].register_forward_pre_hook(stop)
    try:
        adapter.model(inputs_embeds=adapter.embed_ids(ids, visual), attention_mask=torch.cat([*masks, mask], 1),
                      position_ids=position_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    except _StopBeforeLayer:
        pass
    finally:
        handle.remove()
    return _Prefix(captured["hidden"], position_ids, mask, [cache.layers[i].new for i in range(layer)])


class _Drop:
    """The hooks of a suffix forward: the attention row at layer ``ℓ − 1``, the pruned
    ``[prefix][suffix]`` sequence from layer ``ℓ`` on (module docstring)."""

    def __init__(self, in_llm, k: int, group: torch.Tensor, prefix: _Prefix, image_slots: torch.Tensor, system: int):
        self.in_llm, self.k, self.group, self.prefix = in_llm, k, group, prefix
        self.image_slots, self.system = image_slots, system  # (B, N) slots in the padded prefix; system length
        self.row = self.own_keys = self.chosen = self.overrides = None

    def install(self, language_model, piece_masks: list[torch.Tensor], suffix_mask: torch.Tensor) -> list:
        self.lm, self.piece_masks, self.suffix_mask = language_model, piece_masks, suffix_mask
        layers = language_model.layers
        handles = [layers[self.in_llm.layer - 1].self_attn.register_forward_pre_hook(self.attention_row,
                                                                                        with_kwargs=True)]
        handles += [layers[i].register_forward_pre_hook(self.before_layer, with_kwargs=True)
                    for i in range(self.in_llm.layer, len(layers))]
        return handles

    def attention_row(self, module, args, kwargs) -> None:
        """Head-mean attention of each row's last token over ``[system][prefix][suffix]``, and the
        suffix's post-RoPE keys."""
        normed = kwargs["hidden_states"]
        cos, sin = kwargs["position_embeddings"]
        last = torch.full((normed.shape[0], 1), normed.shape[1] - 1, dtype=torch.long, device=normed.device)
        q, self.own_keys = query_projections(module, normed, cos, sin, last)
        cached = kwargs["past_key_values"].layers[module.layer_idx]
        keys = torch.cat([k.index_select(0, rows) for k, _, rows in cached.segments] + [self.own_keys], dim=-2)
        visible = torch.cat([*self.piece_masks, self.suffix_mask], 1).bool().unsqueeze(1)  # (B, 1, keys)
        self.row = attention_rows(module, q, keys, visible)[:, 0]

    def before_layer(self, module, args, kwargs):
        if self.overrides is None:
            hidden = self.pruned_sequence(args[0], kwargs)
            args = (hidden, *args[1:])
        kwargs.update(self.overrides)
        return args, kwargs

    def pruned_sequence(self, suffix_hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """Choose the kept image tokens and build ``[prefix][suffix]`` without the others; sets the
        position ids, rotary embeddings and mask of layers ``≥ ℓ``."""
        b, n = self.image_slots.shape
        width = self.prefix.hidden.shape[1]
        full = torch.cat([self.prefix.hidden.index_select(0, self.group), suffix_hidden], 1)
        real = torch.cat([self.prefix.mask.index_select(0, self.group), self.suffix_mask], 1)
        prefix_keys = self.prefix.states[self.in_llm.layer - 1][0].index_select(0, self.group)
        keys = torch.cat([prefix_keys, self.own_keys], dim=2).transpose(1, 2).reshape(b, full.shape[1], -1)
        row = self.row[:, self.system:].gather(1, self.image_slots)
        signals = LLMPruningState(row, keys, self.lm.norm(full), self.image_slots, real)
        self.chosen = self.in_llm.select_in_llm(signals, self.k)
        dropped = torch.ones((b, n), dtype=torch.bool, device=row.device).scatter(1, self.chosen, False)
        keep = torch.ones(full.shape[:2], dtype=torch.bool, device=row.device)
        keep[:, :width].scatter_(1, self.image_slots, ~dropped)
        keep = keep.nonzero()[:, 1].view(b, -1)
        hidden = full.gather(1, keep.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        positions = torch.cat([self.prefix.positions.index_select(0, self.group),
                               kwargs["position_ids"].expand(b, -1)], 1).gather(1, keep)
        real = real.gather(1, keep).bool()
        self.overrides = {"position_ids": positions, "position_embeddings": self.lm.rotary_emb(hidden, positions),
                          "attention_mask": self._mask(real, kwargs.get("attention_mask"))}
        return hidden

    def _mask(self, real: torch.Tensor, model_mask) -> torch.Tensor:
        """``(B, 1, L, system + L)``: every query sees the system text and the real keys at or
        before it, in the dtype convention of the model's own mask (bool: True attends)."""
        length = real.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
        itself = torch.eye(length, dtype=torch.bool, device=real.device)  # a padding query attends to itself only
        allowed = (causal.unsqueeze(0) & real.unsqueeze(1)) | itself
        if self.system:
            allowed = torch.cat([torch.ones((real.shape[0], length, self.system), dtype=torch.bool,
                                            device=real.device), allowed], 2)
        allowed = allowed.unsqueeze(1)
        if torch.is_tensor(model_mask) and model_mask.dtype != torch.bool:
            return torch.zeros(allowed.shape, dtype=model_mask.dtype, device=real.device).masked_fill(
                ~allowed, torch.finfo(model_mask.dtype).min)
        return allowed


__all__ = ["InLLMPrefixes", "shares_prefix"]
