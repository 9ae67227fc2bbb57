"""Result rows of the adapter and the bookkeeping of batches of images of several sizes.

A batch whose images have different token counts (a :class:`~studylib.tokens.RaggedTokens`,
LLaVA-NeXT / Qwen2.5-VL) is scored as one sub-batch per size; each sub-batch is pruned and
scored exactly as a batch of its own (a left-padded row gives the logits of the row alone), and
the rows are put back in order here.  Budgets larger than a size's N are clipped to N (that
image keeps all its tokens; its row shows ``n_kept < k``), and the (B, K) kept indices are
padded with ``-1`` on rows that kept fewer tokens than the widest row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from studylib.tokens import QueryContext, Selection, VisualTokens

#: marks "no token" in kept indices of rows that kept fewer tokens than the widest row
NO_TOKEN = -1


@dataclass
class ScoreResult:
    """First-token scores of a batch of prompts.

    ``labels[i]`` are prompt i's answer labels; ``probs[i, :len(labels[i])]`` their
    probabilities renormalised over the verbalizer (NaN-padded to the widest row);
    ``logits`` the class logits ``log sum_{v in variants} exp(z_v)`` (softmax of a row's class
    logits equals its ``probs``; temperature scaling acts on them); ``verbalizer_mass`` the
    full-vocabulary probability of all variants together (how much mass the verbalizer
    captures); ``top_token`` the full-vocabulary argmax token; ``kept`` the (B, K) indices of
    the visual tokens the LLM kept (``-1``-padded when images of several sizes kept different
    counts).
    """

    labels: list[tuple[str, ...]]
    probs: np.ndarray
    logits: np.ndarray
    verbalizer_mass: np.ndarray
    top_token: list[str]
    kept: torch.Tensor

    @property
    def prediction(self) -> list[str]:
        return [lab[int(np.nanargmax(p))] for lab, p in zip(self.labels, self.probs)]

    @property
    def confidence(self) -> np.ndarray:
        return np.nanmax(self.probs, axis=1)


def pick(items: Sequence, rows: Sequence[int]) -> list:
    return [items[i] for i in rows]


def clip_budget(k: int | None, tokens: VisualTokens) -> int | None:
    """``min(k, N)`` of a sub-batch (``None`` stays ``None``)."""
    return None if k is None else min(k, tokens.num_patches)


def sub_query(query: QueryContext | None, rows: Sequence[int], tokens: VisualTokens) -> QueryContext | None:
    """The question signals of ``rows``, the text attention cut to the sub-batch's N."""
    if query is None:
        return None
    attention = query.text_attention
    if attention is not None:
        attention = attention[rows, : tokens.num_patches]
    return QueryContext(query.text_embedding[rows], attention)


def distinct_images(tokens: VisualTokens) -> tuple[list[int], list[int]] | None:
    """``(first row of each distinct image, distinct image of each row)`` when several rows hold the
    same image (the questions of one image in a sweep batch), else ``None``.  Rows share an image
    when their image keys agree and their features are equal bitwise (a key reused for another
    image is never shared; rows stacked from one cached image object are equal without comparing)."""
    keys = tokens.image_keys
    if not keys or len(set(keys)) == len(keys):
        return None
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    parts = tokens._parts if len(tokens._parts) == len(keys) else None  # rows stacked from cached images

    def same(row: int, other: int) -> bool:
        return (parts is not None and parts[row] is parts[other]) or torch.equal(tokens.features[row],
                                                                                 tokens.features[other])

    if not all(same(row, first[key]) for row, key in enumerate(keys)):
        return None
    slot = {key: i for i, key in enumerate(first)}
    return list(first.values()), [slot[key] for key in keys]


def repeat_selection(selection: Selection, rows: Sequence[int]) -> Selection:
    """The selection of each distinct image given back to every row of it (:func:`distinct_images`)."""
    index = torch.as_tensor(list(rows), device=selection.indices.device)
    merged = None if selection.merged is None else selection.merged[index.to(selection.merged.device)]
    return Selection(selection.indices[index], merged)


def merge_kept(batch: int, parts: list[tuple[list[int], torch.Tensor]]) -> torch.Tensor:
    """(B, max K) kept indices from per-size parts, ``-1``-padded."""
    width = max(kept.shape[1] for _, kept in parts)
    out = torch.full((batch, width), NO_TOKEN, dtype=torch.long)
    for rows, kept in parts:
        out[rows, : kept.shape[1]] = kept.cpu()
    return out


def merge_scores(batch: int, parts: list[tuple[list[int], ScoreResult]]) -> ScoreResult:
    """One :class:`ScoreResult` in row order from per-size parts."""
    width = max(p.probs.shape[1] for _, p in parts)
    probs, logits = np.full((batch, width), np.nan), np.full((batch, width), np.nan)
    mass = np.empty(batch)
    labels: list = [()] * batch
    top: list = [""] * batch
    for rows, part in parts:
        probs[rows, : part.probs.shape[1]] = part.probs
        logits[rows, : part.logits.shape[1]] = part.logits
        mass[rows] = part.verbalizer_mass
        for j, i in enumerate(rows):
            labels[i], top[i] = part.labels[j], part.top_token[j]
    return ScoreResult(labels, probs, logits, mass, top, merge_kept(batch, [(r, p.kept) for r, p in parts]))


@torch.inference_mode()
def greedy_decode(model, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, max_new_tokens: int,
                  eos: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """KV-cached greedy decoding that carries explicit position ids (M-RoPE): every new token
    sits one position after its row's last one on all axes (text positions are equal on the
    three axes).  Returns the (B, steps) generated ids (finished rows padded with ``eos``) and
    the (B, V) float32 logits of the first step."""
    cache = DynamicCache()
    out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float()
    logits, step = first, positions[..., -1:] + 1
    finished = torch.zeros(embeds.shape[0], dtype=torch.bool, device=embeds.device)
    generated = []
    for _ in range(max_new_tokens):
        token = logits.argmax(-1)
        if eos is not None:
            token = token.masked_fill(finished, eos)
            finished |= token == eos
        generated.append(token)
        if bool(finished.all()) or len(generated) == max_new_tokens:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(inputs_embeds=model.get_input_embeddings()(token[:, None]), attention_mask=mask,
                    position_ids=step, past_key_values=cache, use_cache=True)
        logits, step = out.logits[:, -1].float(), step + 1
    return torch.stack(generated, dim=1), first


__all__ = ["NO_TOKEN", "ScoreResult", "clip_budget", "distinct_images", "greedy_decode", "merge_kept",
           "merge_scores", "pick", "repeat_selection",
           "sub_query"]
