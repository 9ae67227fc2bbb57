"""Shared-prefix scoring: run each unique ``[system text][image]`` prefix once per batch.

Every prompt is ``[before ids][K visual tokens][after ids]`` and a sweep asks several questions
about one image, so rows often share the whole prefix ``[before][visual]`` (system text + image:
~180 of ~200 tokens on the toy, ~610 of ~630 on LLaVA-1.5-7B).  In a causal LM the keys/values of
a prefix depend on the prefix only, so a batch is scored in two forwards:

1. the U unique prefixes, left-padded to width P, with ``use_cache=True`` (a group's prefix also
   takes the leading ``after`` ids all its rows share, e.g. ``"Is there a"`` of POPE questions);
2. the B suffixes (the rest of ``after`` + optional extra ids), left-padded to width S, on top of
   that cache: row b attends ``[prefix mask of its group, its suffix mask]`` and its suffix
   positions are the single forward's (the row's position ids, 1-D or M-RoPE, split at the end
   of the prefix), so every real token sees exactly the keys, values and rotary positions of
   the single forward, and the last position is the row's real last token (``logits_to_keep=1``).

This costs ``U*P + B*S`` token slots instead of ``B*(P+S)`` and is used whenever that is fewer.
Two rows share a prefix when they have the same ``before`` ids, image key and kept indices
*and* bitwise-equal visual token rows (which also covers merged selections: VisionZip rows
share only when their merged tokens are equal).  Tokens without image keys, rows with an empty
suffix and in-LLM pruning (FastV/DART hooks need the whole prompt in one forward) take the
single-forward path.  The cached prefix is held once per group and gathered to the batch rows
one decoder layer at a time (:class:`SharedPrefixLayer`), so memory grows with U, not B.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from studylib.models.families.base import VisualRow, row_positions

PromptRows = list[tuple[tuple[int, ...], tuple[int, ...]]]  # (before ids, after ids) per prompt


def real_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each real token among its row's real tokens; left pads get 0 (they are
    masked out as keys and their outputs are unused)."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def padded_positions(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Left-pad per-row ``(P, L_i)`` position ids to ``width`` with zeros (pads are masked):
    ``(B, width)`` for plain RoPE (``P = 1``), ``(P, B, width)`` for M-RoPE."""
    dims = rows[0].shape[0]
    out = torch.zeros((dims, len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        out[:, i, width - row.shape[1]:] = row
    return out[0] if dims == 1 else out


def sharing_pays(rows: PromptRows, group_of: Sequence[int], lengths: Sequence[int]) -> bool:
    """Whether ``U*P + B*S`` (unique padded prefixes + padded suffixes) is fewer token slots
    than the single forward's ``B*(P+S)`` (with P, S, P+S the padded widths); ``lengths`` are
    the rows' visual block lengths."""
    prefix = [len(before) + k for (before, _), k in zip(rows, lengths)]
    suffix = [len(after) for _, after in rows]
    whole = max(p + s for p, s in zip(prefix, suffix))
    shared = (max(group_of) + 1) * max(prefix) + len(rows) * max(suffix)
    return shared < len(rows) * whole


def prefix_groups(rows: PromptRows, image_keys: Sequence[str], visual: Sequence[VisualRow],
                  indices: torch.Tensor) -> list[int] | None:
    """Group of each row's prefix ``[before][visual]``, or ``None`` when sharing saves nothing.

    Rows are candidates for one group when their ``before`` ids, image key and kept indices
    agree; a candidate joins a group only if its visual rows equal the group's bitwise, so merged
    selections and a key reused for another image are never shared wrongly."""
    if not image_keys or len(image_keys) != len(rows):
        return None
    if any(not after for _, after in rows):
        return None  # the last real token would sit in the prefix
    kept = indices.cpu().numpy()
    candidates: dict[tuple, list[int]] = {}
    first_rows: list[int] = []
    group_of = []
    for row, (before, _) in enumerate(rows):
        key = (before, image_keys[row], kept[row].tobytes())
        groups = candidates.setdefault(key, [])
        group = next((g for g in groups if same_block(visual[row], visual[first_rows[g]])), None)
        if group is None:
            group = len(first_rows)
            first_rows.append(row)
            groups.append(group)
        group_of.append(group)
    return group_of if sharing_pays(rows, group_of, [v.length for v in visual]) else None


def same_block(a: VisualRow, b: VisualRow) -> bool:
    """Bitwise-equal visual blocks (embeddings and positions)."""
    return torch.equal(a.embeds, b.embeds) and torch.equal(a.offsets, b.offsets) and a.extent == b.extent


class SharedPrefixLayer(DynamicLayer):
    """One decoder layer's prefix keys/values, held once per group, gathered to the batch rows
    on use.  ``update`` returns ``[prefix of the row's group, new states]`` without storing it:
    the suffix forward is the last one, so a gathered (B, heads, P + S, d) copy lives for one
    layer at a time."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, group: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values, self.group = keys, values, group

    def update(self, key_states, value_states, *args, **kwargs):
        keys = torch.cat([self.keys.index_select(0, self.group), key_states], dim=-2)
        values = torch.cat([self.values.index_select(0, self.group), value_states], dim=-2)
        return keys, values


def shared_text(rows: PromptRows, group_of: Sequence[int]) -> list[int]:
    """Per group: how many leading ``after`` ids all its rows share (``"Is there a"`` of every POPE
    question), at most each row's suffix length minus one so that every row keeps its last token
    in the suffix forward.  Those ids join the group's prefix."""
    shared: dict[int, tuple[int, ...]] = {}
    for (_, after), group in zip(rows, group_of):
        common = shared.setdefault(group, after[:-1])
        n = 0
        for a, b in zip(common, after[:-1]):
            if a != b:
                break
            n += 1
        shared[group] = common[:n]
    return [len(shared[g]) for g in range(len(shared))]


def _prefix_cache(adapter, rows: PromptRows, visual: Sequence[VisualRow], group_of: list[int],
                  positions: list[torch.Tensor], text: list[int]):
    """Prefill the unique prefixes ``[before][visual][the group's shared after ids]`` once: (per-layer
    (keys, values) of the U groups, their (U, P) padding mask)."""
    first_rows = [group_of.index(g) for g in range(len(text))]
    sequences = [list(rows[r][0]) + [adapter.image_token_id] * visual[r].length + list(rows[r][1][: text[g]])
                 for g, r in enumerate(first_rows)]
    ids, mask = adapter.left_padded(sequences)
    prefix_positions = [positions[r][:, : len(sequences[g])] for g, r in enumerate(first_rows)]
    cache = DynamicCache()
    adapter.model(inputs_embeds=adapter.embed_ids(ids, [visual[r] for r in first_rows]), attention_mask=mask,
                  position_ids=padded_positions(prefix_positions, ids.shape[1]).to(adapter.device),
                  past_key_values=cache, use_cache=True, logits_to_keep=1)
    states = [(layer.keys, layer.values) for layer in cache.layers]
    return states, mask


def shared_prefix_logits(adapter, rows: PromptRows, visual: Sequence[VisualRow], group_of: list[int]) -> torch.Tensor:
    """Last-token logits of every row from one forward over the unique prefixes and one over
    the left-padded suffixes on top of the gathered prefix cache (module docstring).  Every
    row's position ids are those of its single-forward row (:func:`row_positions`), split at
    the end of the prefix; a group's prefix ends after the ``after`` ids all its rows share
    (:func:`shared_text`).

    ``adapter`` provides ``model``, ``image_token_id``, ``left_padded`` and ``embed_ids``
    (:class:`~studylib.models.adapter.LlavaAdapter`)."""
    positions = [row_positions(len(before), v, len(after)) for (before, after), v in zip(rows, visual)]
    text = shared_text(rows, group_of)
    states, prefix_mask = _prefix_cache(adapter, rows, visual, group_of, positions, text)
    group = torch.tensor(group_of, device=adapter.device)
    suffixes = [after[text[g]:] for (_, after), g in zip(rows, group_of)]
    ids, suffix_mask = adapter.left_padded(suffixes)
    suffix_positions = [p[:, p.shape[1] - len(suffix):] for p, suffix in zip(positions, suffixes)]
    positions = padded_positions(suffix_positions, ids.shape[1]).to(adapter.device)
    cache = Cache(layers=[SharedPrefixLayer(keys, values, group) for keys, values in states])
    mask = torch.cat([prefix_mask[group], suffix_mask], 1)
    out = adapter.model(inputs_embeds=adapter.embed_ids(ids), attention_mask=mask, position_ids=positions,
                        past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].float()


__all__ = ["PromptRows", "SharedPrefixLayer", "padded_positions", "prefix_groups", "real_positions", "same_block",
           "shared_prefix_logits", "shared_text", "sharing_pays"]
