"""Shared-prefix scoring: the system text once per adapter, each ``[image][shared text]`` once per batch.

Every prompt is ``[before ids][K visual tokens][after ids]``.  In a causal LM the keys/values of
a prefix depend on the prefix only, so what several rows share is computed once:

* the **system text** (``before``: the system prompt and ``USER:``, 32 tokens on the toy, ~35 on
  LLaVA-1.5), identical for every row of a sweep, is prefilled once per adapter and kept
  (:func:`system_states`);
* the rows of one **image** (same kept tokens) share ``[visual][the leading after ids all of
  them have, e.g. "Is there a"]``: prefilled once per group on top of the system text;
* each row's **suffix** (the rest of ``after`` + optional extra ids) runs on top of both.

A batch is scored in one forward over its rows' ``[visual][after]`` on top of the system text
(no two rows share an image, e.g. ScienceQA), or in two: the U unique group prefixes, then the B
suffixes, when ``U*P + B*S`` token slots are fewer than ``B*(P+S)``.  Row b attends
``[system text, prefix of its group (padding masked), its own tokens]``, and its position ids
are the single forward's (1-D or M-RoPE, split where the pieces meet), so every real token sees
exactly the keys, values and rotary positions of the single forward, and the last position is
the row's real last token (``logits_to_keep=1``): the logits are the single forward's to float
rounding.

Two rows share a group when they have the same ``before`` ids, image key and kept indices *and*
bitwise-equal visual token rows (which also covers merged selections: VisionZip rows share only
when their merged tokens are equal); rows whose ``before`` ids differ use no system-text cache.
Rows with an empty suffix take the plain single forward; in-LLM pruning shares the layers below
its drop through :mod:`studylib.models.shared_in_llm` (FastV, DART) or takes the single forward.
Cached keys/values are held once per source (one row for the system text, one per group) and
gathered to the batch rows one decoder layer at a time (:class:`SharedPrefixLayer`), so memory
grows with U, not B.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

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


def sharing_pays(rows: PromptRows, group_of: Sequence[int], lengths: Sequence[int], system: int = 0) -> bool:
    """Whether ``U*P + B*S`` (unique padded prefixes + padded suffixes) is fewer token slots
    than the single forward's ``B*(P+S)`` (with P, S, P+S the padded widths); ``lengths`` are
    the rows' visual block lengths, ``system`` the number of leading ids served by the system-text cache."""
    prefix = [len(before) - system + k for (before, _), k in zip(rows, lengths)]
    suffix = [len(after) for _, after in rows]
    whole = max(p + s for p, s in zip(prefix, suffix))
    shared = (max(group_of) + 1) * max(prefix) + len(rows) * max(suffix)
    return shared < len(rows) * whole


def prefix_groups(rows: PromptRows, image_keys: Sequence[str], visual: Sequence[VisualRow],
                  indices: torch.Tensor, system: int = 0) -> list[int] | None:
    """Group of each row's prefix ``[before][visual]`` (:func:`equal_prefixes`), or ``None`` when
    sharing saves nothing (``system``: as in :func:`sharing_pays`)."""
    group_of = equal_prefixes(rows, image_keys, visual, indices)
    if group_of is None:
        return None
    return group_of if sharing_pays(rows, group_of, [v.length for v in visual], system) else None


def equal_prefixes(rows: PromptRows, image_keys: Sequence[str], visual: Sequence[VisualRow],
                   indices: torch.Tensor) -> list[int] | None:
    """Group of each row's prefix ``[before][visual]``, whether or not sharing pays; ``None``
    without an image key per row or when some row has no ``after`` ids.

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
    return group_of


def same_block(a: VisualRow, b: VisualRow) -> bool:
    """Bitwise-equal visual blocks (embeddings and positions)."""
    return torch.equal(a.embeds, b.embeds) and torch.equal(a.offsets, b.offsets) and a.extent == b.extent


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


#: per layer, the (keys, values) of a cached piece, each (sources, heads, length, head_dim)
States = list[tuple[torch.Tensor, torch.Tensor]]


class SharedPrefixLayer(DynamicLayer):
    """One decoder layer's cached pieces (``segments``: keys, values, and the source row of each
    batch row), gathered to the batch rows on use.  ``update`` returns ``[piece 1, piece 2, ...,
    new states]`` without storing it (a gathered (B, heads, length, d) copy lives for one layer at
    a time) and keeps the new states alone (:attr:`new`), which a prefix forward hands on."""

    def __init__(self, segments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.segments = segments
        self.length = sum(keys.shape[-2] for keys, _, _ in segments)
        self.new: tuple[torch.Tensor, torch.Tensor] | None = None

    def get_seq_length(self) -> int:
        return self.length

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.new = (key_states, value_states)
        if not self.segments:
            return key_states, value_states
        keys = torch.cat([k.index_select(0, rows) for k, _, rows in self.segments] + [key_states], dim=-2)
        values = torch.cat([v.index_select(0, rows) for _, v, rows in self.segments] + [value_states], dim=-2)
        return keys, values


def system_states(adapter, ids: tuple[int, ...], positions: torch.Tensor) -> States:
    """Keys/values of the system text ``ids`` (one row, at ``positions``, (P, s)), prefilled once per
    adapter and text (kept in ``adapter._system_states``; :meth:`LlavaAdapter.clear_cache` empties it)."""
    if ids not in adapter._system_states:
        tokens = torch.tensor([ids], device=adapter.device)
        cache = Cache(layers=[SharedPrefixLayer([]) for _ in range(_num_layers(adapter))])
        adapter.model(inputs_embeds=adapter.embed_ids(tokens), attention_mask=torch.ones_like(tokens),
                      position_ids=padded_positions([positions], len(ids)).to(adapter.device),
                      past_key_values=cache, use_cache=True, logits_to_keep=1)
        adapter._system_states[ids] = [layer.new for layer in cache.layers]
    return adapter._system_states[ids]


def _num_layers(adapter) -> int:
    config = adapter.model.config
    return getattr(config, "text_config", config).num_hidden_layers


class _Pieces:
    """The cached pieces the next forward runs on: per piece, its states and (sources, length)
    padding mask, held once per source, and the source of each row of the batch being scored."""

    def __init__(self):
        self.pieces: list[tuple[States, torch.Tensor, torch.Tensor]] = []

    def add(self, states: States, mask: torch.Tensor, source: torch.Tensor) -> None:
        self.pieces.append((states, mask, source))

    def forward(self, adapter, sequences: list[list[int]], visual: Sequence[VisualRow] | None,
                positions: list[torch.Tensor], source: torch.Tensor | None = None):
        """One forward of the left-padded ``sequences`` on top of the pieces; ``source``: which batch
        rows these sequences stand for (a prefix forward runs the first row of each group), all of
        them by default.  Returns the last-token logits, the new states and the padding mask."""
        ids, mask = adapter.left_padded(sequences)
        cache, masks = self.cache(_num_layers(adapter), source)
        out = adapter.model(inputs_embeds=adapter.embed_ids(ids, visual), attention_mask=torch.cat([*masks, mask], 1),
                            position_ids=padded_positions(positions, ids.shape[1]).to(adapter.device),
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float(), [layer.new for layer in cache.layers], mask

    def cache(self, n_layers: int, source: torch.Tensor | None = None,
              layers_of: Sequence[int] | None = None) -> tuple[Cache, list[torch.Tensor]]:
        """A cache of ``n_layers`` :class:`SharedPrefixLayer` holding the pieces for the rows
        ``source`` (all by default), and each piece's padding mask gathered to those rows.
        ``layers_of``: per piece, on how many leading layers it is present (all by default)."""
        segments, masks = [[] for _ in range(n_layers)], []
        for n, (states, piece_mask, rows) in enumerate(self.pieces):
            rows = rows if source is None else rows.index_select(0, source)
            depth = n_layers if layers_of is None else layers_of[n]
            for layer, (keys, values) in zip(segments[:depth], states):
                layer.append((keys, values, rows))
            masks.append(piece_mask.index_select(0, rows))
        return Cache(layers=[SharedPrefixLayer(layer) for layer in segments]), masks


def common_system(rows: PromptRows) -> tuple[int, ...]:
    """The ``before`` ids of every row when all rows have the same, else ``()``."""
    first = rows[0][0]
    return first if all(before == first for before, _ in rows) else ()


def cached_prefix_logits(adapter, rows: PromptRows, image_keys: Sequence[str], visual: Sequence[VisualRow],
                         indices: torch.Tensor) -> torch.Tensor | None:
    """Last-token logits of every row through the cached system text and shared group prefixes
    (module docstring), or ``None`` where only the plain single forward applies.

    ``adapter`` provides ``model``, ``device``, ``image_token_id``, ``left_padded``, ``embed_ids``
    and ``_system_states`` (:class:`~studylib.models.adapter.LlavaAdapter`)."""
    if any(not after for _, after in rows):
        return None  # the last real token would sit in a cached piece
    system = common_system(rows)
    group_of = prefix_groups(rows, image_keys, visual, indices, len(system))
    if group_of is None and not system:
        return None
    s, device = len(system), adapter.device
    positions = [row_positions(len(before), v, len(after)) for (before, after), v in zip(rows, visual)]
    pieces = _Pieces()
    if system:
        states = system_states(adapter, system, positions[0][:, :s])
        pieces.add(states, torch.ones((1, s), dtype=torch.long, device=device),
                   torch.zeros(len(rows), dtype=torch.long, device=device))
    if group_of is None:  # one forward: [before after the system text][visual][after] per row
        sequences = [list(before[s:]) + [adapter.image_token_id] * v.length + list(after)
                     for (before, after), v in zip(rows, visual)]
        return pieces.forward(adapter, sequences, visual, [p[:, s:] for p in positions])[0]
    text = shared_text(rows, group_of)
    first_rows = [group_of.index(g) for g in range(len(text))]
    prefixes = [list(rows[r][0][s:]) + [adapter.image_token_id] * visual[r].length + list(rows[r][1][: text[g]])
                for g, r in enumerate(first_rows)]
    first = torch.tensor(first_rows, device=device)
    _, states, prefix_mask = pieces.forward(adapter, prefixes, [visual[r] for r in first_rows],
                                            [positions[r][:, s: s + len(prefixes[g])] for g, r in enumerate(first_rows)],
                                            source=first)
    pieces.add(states, prefix_mask, torch.tensor(group_of, device=device))
    suffixes = [list(after[text[g]:]) for (_, after), g in zip(rows, group_of)]
    return pieces.forward(adapter, suffixes, None, [p[:, p.shape[1] - len(x):] for p, x in zip(positions, suffixes)])[0]


__all__ = ["PromptRows", "SharedPrefixLayer", "cached_prefix_logits", "common_system", "equal_prefixes",
           "padded_positions", "prefix_groups", "real_positions", "same_block", "shared_text", "sharing_pays",
           "system_states"]
