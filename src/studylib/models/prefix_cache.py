"""Shared-prefix scoring: run each unique ``[system text][image]`` prefix once per batch.

Every prompt is ``[before ids][K visual tokens][after ids]`` and a sweep asks several questions
about one image, so rows often share the whole prefix ``[before][visual]`` (system text + image:
~180 of ~200 tokens on the toy, ~610 of ~630 on LLaVA-1.5-7B).  In a causal LM the keys/values of
a prefix depend on the prefix only, so a batch is scored in two forwards:

1. the U unique prefixes, left-padded to width P, with ``use_cache=True``;
2. the B suffixes (``after`` ids + optional extra ids), left-padded to width S, on top of
   that cache: row b attends ``[prefix mask of its group, its suffix mask]`` and its suffix
   positions continue from its real prefix length, so every real token sees exactly the keys,
   values and rotary positions of the single forward, and the last position is the row's
   real last token (``logits_to_keep=1``).

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

PromptRows = list[tuple[tuple[int, ...], tuple[int, ...]]]  # (before ids, after ids) per prompt


def real_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each real token among its row's real tokens; left pads get 0 (they are
    masked out as keys and their outputs are unused)."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def sharing_pays(rows: PromptRows, group_of: Sequence[int], k: int) -> bool:
    """Whether ``U*P + B*S`` (unique padded prefixes + padded suffixes) is fewer token slots
    than the single forward's ``B*(P+S)`` (with P, S, P+S the padded widths)."""
    prefix = [len(before) + k for before, _ in rows]
    suffix = [len(after) for _, after in rows]
    whole = max(p + s for p, s in zip(prefix, suffix))
    shared = (max(group_of) + 1) * max(prefix) + len(rows) * max(suffix)
    return shared < len(rows) * whole


def prefix_groups(rows: PromptRows, image_keys: Sequence[str], visual: torch.Tensor,
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
        group = next((g for g in groups if torch.equal(visual[row], visual[first_rows[g]])), None)
        if group is None:
            group = len(first_rows)
            first_rows.append(row)
            groups.append(group)
        group_of.append(group)
    return group_of if sharing_pays(rows, group_of, visual.shape[1]) else None


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


def _prefix_cache(adapter, rows: PromptRows, visual: torch.Tensor, group_of: list[int]):
    """Prefill the unique prefixes once: (per-layer (keys, values) of the U groups, their
    (U, P) padding mask, each group's real prefix length)."""
    first_rows = [group_of.index(g) for g in range(max(group_of) + 1)]
    k = visual.shape[1]
    sequences = [list(rows[r][0]) + [adapter.image_token_id] * k for r in first_rows]
    ids, mask = adapter.left_padded(sequences)
    cache = DynamicCache()
    adapter.model(inputs_embeds=adapter.embed_ids(ids, visual[first_rows]), attention_mask=mask,
                  position_ids=real_positions(mask), past_key_values=cache, use_cache=True, logits_to_keep=1)
    states = [(layer.keys, layer.values) for layer in cache.layers]
    return states, mask, mask.sum(1)


def shared_prefix_logits(adapter, rows: PromptRows, visual: torch.Tensor, group_of: list[int]) -> torch.Tensor:
    """Last-token logits of every row from one forward over the unique prefixes and one over
    the left-padded suffixes on top of the gathered prefix cache (module docstring).

    ``adapter`` provides ``model``, ``image_token_id``, ``left_padded`` and ``embed_ids``
    (:class:`~studylib.models.adapter.LlavaAdapter`)."""
    states, prefix_mask, prefix_lengths = _prefix_cache(adapter, rows, visual, group_of)
    group = torch.tensor(group_of, device=adapter.device)
    ids, suffix_mask = adapter.left_padded([list(after) for _, after in rows])
    positions = prefix_lengths[group].unsqueeze(1) + real_positions(suffix_mask)
    cache = Cache(layers=[SharedPrefixLayer(keys, values, group) for keys, values in states])
    mask = torch.cat([prefix_mask[group], suffix_mask], 1)
    out = adapter.model(inputs_embeds=adapter.embed_ids(ids), attention_mask=mask, position_ids=positions,
                        past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].float()


__all__ = ["PromptRows", "SharedPrefixLayer", "prefix_groups", "real_positions", "shared_prefix_logits",
           "sharing_pays"]
