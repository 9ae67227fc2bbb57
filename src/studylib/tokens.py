"""Data types that flow from the vision encoder to the pruners and back into the language model.

An image is encoded once into :class:`VisualTokens`; a pruner reads them and returns a
:class:`Selection`; the adapter feeds the selection to the language model.  Everything is
batched over images: tensors carry a leading batch dimension ``B``.

Images of different sizes (LLaVA-NeXT's anyres tiles, Qwen2.5-VL's dynamic resolution) give
different token counts ``N``.  A :class:`VisualTokens` always holds images of one shape (same
``N``, ``grid`` and ``layout``); a batch of images of several shapes is a :class:`RaggedTokens`
(one :class:`VisualTokens` per image), which :func:`stack_tokens` builds and the model adapter
scores in sub-batches of one shape (pruners run on each sub-batch as they are, no padding).

Quantities that depend on the tokens only (cosine matrices, the erank, …) are computed once per
:class:`VisualTokens` object and kept in a private memo (:meth:`VisualTokens.derived`), so every
pruner configuration run on one batch shares them; a batch stacked from single images computes
them per image and keeps them there, so the batches of later configurations, stacked anew from
the adapter's cache, reuse them too.  The memo is bounded by a byte budget
(:func:`set_memo_budget`) and never part of equality, hashing, ``repr`` or pickles.  Small values
(per-image scalars such as the erank, at most :data:`MEMO_SMALL_BYTES`) are kept even when the
``N × N`` matrices have used the budget up: at LLaVA-1.5's shape the erank costs ~40 ms per image
(float64 Gram + eigenvalues) and the cosine matrices of a 556-image sweep alone exceed 2 GiB.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

#: bytes of derived tensors all :class:`VisualTokens` together may keep (:meth:`VisualTokens.derived`);
#: beyond it a derived quantity is computed and returned but not kept.  ``STUDYLIB_MEMO_BYTES``
#: overrides it; :func:`set_memo_budget` changes it at run time (0 keeps only the small values).
MEMO_BYTES_DEFAULT = 2 * 1024**3
#: derived values of at most this many bytes are kept whatever the budget (counted in it all the same)
MEMO_SMALL_BYTES = 1024
_memo_state = {"budget": int(os.environ.get("STUDYLIB_MEMO_BYTES", MEMO_BYTES_DEFAULT)), "used": 0}


def set_memo_budget(n_bytes: int) -> int:
    """Set the byte budget of the derived-quantity memo (0 = keep only values of at most
    :data:`MEMO_SMALL_BYTES`); returns the old one.
    Memos already kept stay until their :class:`VisualTokens` is freed."""
    old, _memo_state["budget"] = _memo_state["budget"], int(n_bytes)
    return old


def memo_bytes_used() -> int:
    """Bytes the memos of all live :class:`VisualTokens` hold now."""
    return _memo_state["used"]


def _release(held: list[int]) -> None:
    _memo_state["used"] -= held[0]


@dataclass(frozen=True)
class VisualTokens:
    """Everything a pre-LLM pruner may look at, for a batch of ``B`` images with ``N`` patches each.

    Attributes
    ----------
    features:
        ``(B, N, D_v)`` patch features of the penultimate vision layer (``hidden_states[-2]``,
        CLS dropped), **before** the multimodal projector. SCOPE, VisPruner and VisionZip
        measure similarity here.
    embeddings:
        ``(B, N, D_l)`` the same patches after the projector, i.e. what the language model
        receives. DivPrune and CDPruner measure similarity here.
    cls_attention:
        ``(B, N)`` row 0 (the CLS query) of the penultimate layer's post-softmax attention over
        all ``N + 1`` keys, averaged over heads, CLS column dropped and *not* renormalised.
    cls_feature:
        ``(B, D_v)`` the CLS token's penultimate-layer feature (VisionZip feeds it to the LLM).
    keys:
        ``(B, N, D_h)`` the penultimate layer's key vectors of the patches, averaged over
        heads (VisionZip's merge metric).
    grid:
        ``(rows, cols)`` of the patch grid; ``rows * cols == N``; index ``i`` is at
        ``(i // cols, i % cols)`` (raster order).  Qwen2.5-VL: the merged (2x2) grid.
        LLaVA-NeXT: ``(1, N)``, the tokens are not one rectangle (see ``layout``).
    image_keys:
        one identifier per image (used for caching and for result rows).
    layout:
        empty for a single raster grid; otherwise the consecutive raster grids ``(rows, cols)``
        the ``N`` tokens are made of, in order (LLaVA-NeXT: the base tile's grid, then the
        unpadded high-resolution grid; their sizes add up to ``N``).
    """

    features: torch.Tensor
    embeddings: torch.Tensor
    cls_attention: torch.Tensor
    cls_feature: torch.Tensor
    keys: torch.Tensor
    grid: tuple[int, int]
    image_keys: tuple[str, ...] = field(default=())
    layout: tuple[tuple[int, int], ...] = field(default=())
    #: derived per-image quantities (:meth:`derived`); private, not compared, hashed, shown or pickled
    _memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)
    #: the single-image parts this batch was concatenated from (:meth:`concat`), for :meth:`derived`
    _parts: tuple = field(default=(), init=False, compare=False, repr=False)
    _memo_bytes: list = field(default_factory=lambda: [0], init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        b, n, _ = self.features.shape
        if self.embeddings.shape[:2] != (b, n):
            raise ValueError(f"embeddings have shape {tuple(self.embeddings.shape)}, expected ({b}, {n}, D_l)")
        if self.cls_attention.shape != (b, n):
            raise ValueError(f"cls_attention has shape {tuple(self.cls_attention.shape)}, expected ({b}, {n})")
        if self.cls_feature.shape[0] != b or self.keys.shape[:2] != (b, n):
            raise ValueError("cls_feature / keys do not match the batch of features")
        if self.grid[0] * self.grid[1] != n:
            raise ValueError(f"grid {self.grid} does not hold {n} patches")
        if self.layout and sum(r * c for r, c in self.layout) != n:
            raise ValueError(f"layout {self.layout} does not hold {n} patches")
        if self.image_keys and len(self.image_keys) != b:
            raise ValueError(f"{len(self.image_keys)} image keys for a batch of {b} images")

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def derived(self, key: Hashable, compute: Callable[["VisualTokens"], torch.Tensor]) -> torch.Tensor:
        """``compute(self)`` — a batch-first tensor that depends on the tokens only (a similarity
        matrix, an erank, …) — computed once per object and ``key`` and then returned from the memo.

        Pruners use it so that every configuration of a sweep run on one batch pays for its
        ``N × N`` products once.  ``key`` must name everything ``compute`` depends on besides the
        tokens (quantity, feature space, dtype).  The returned tensor is shared: callers must not
        modify it in place.

        A batch built by :meth:`concat` (the adapter's cache of single images, stacked per batch)
        computes the quantity on each part and concatenates the rows, so the parts' memos serve
        every later batch holding the same images (and repeated images of one batch are computed
        once).  The memo is kept within the byte budget shared by all objects
        (:func:`set_memo_budget`), values of at most :data:`MEMO_SMALL_BYTES` always; what does not
        fit is recomputed when asked again, with the same result (the computation never depends on
        what is kept)."""
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if self._parts:
            rows = {id(p): p for p in self._parts}  # a repeated image is computed once
            values = {i: p.derived(key, compute) for i, p in rows.items()}
            value = torch.cat([values[id(p)] for p in self._parts])
        else:
            value = compute(self)
        self._keep(key, value)
        return value

    def _keep(self, key: Hashable, value: torch.Tensor) -> None:
        n_bytes = value.numel() * value.element_size()
        if _memo_state["used"] + n_bytes > _memo_state["budget"] and n_bytes > MEMO_SMALL_BYTES:
            return
        if not self._memo:  # the first kept value: give the bytes back when the object is freed
            weakref.finalize(self, _release, self._memo_bytes)
        self._memo[key] = value
        self._memo_bytes[0] += n_bytes
        _memo_state["used"] += n_bytes

    def __getstate__(self) -> dict:
        return {f: getattr(self, f) for f in ("features", "embeddings", "cls_attention", "cls_feature", "keys",
                                              "grid", "image_keys", "layout")}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_parts", ())
        object.__setattr__(self, "_memo_bytes", [0])

    @property
    def num_patches(self) -> int:
        return self.features.shape[1]

    @property
    def shape_key(self) -> tuple:
        """What images must share to sit in one batch: N, the grid and the layout."""
        return self.num_patches, self.grid, self.layout

    def __getitem__(self, index: int | slice | list[int] | torch.Tensor) -> "VisualTokens":
        """Sub-batch of images (an int keeps the batch dimension).  Of a batch stacked from single
        images, the sub-batch keeps those images as its parts (:meth:`derived`)."""
        if isinstance(index, int):
            index = [index]
        picked = torch.arange(self.batch_size)[index].tolist()
        keys = tuple(self.image_keys[i] for i in picked) if self.image_keys else ()
        sub = VisualTokens(
            features=self.features[index],
            embeddings=self.embeddings[index],
            cls_attention=self.cls_attention[index],
            cls_feature=self.cls_feature[index],
            keys=self.keys[index],
            grid=self.grid,
            image_keys=keys,
            layout=self.layout,
        )
        if len(self._parts) == self.batch_size:  # stacked from single images: keep computing on (and memoising in) them
            object.__setattr__(sub, "_parts", tuple(self._parts[i] for i in picked))
        return sub

    def to(self, device: torch.device | str) -> "VisualTokens":
        return VisualTokens(
            self.features.to(device), self.embeddings.to(device), self.cls_attention.to(device),
            self.cls_feature.to(device), self.keys.to(device), self.grid, self.image_keys, self.layout,
        )

    @staticmethod
    def concat(parts: list["VisualTokens"]) -> "VisualTokens":
        """Stack several batches (same grid) into one (:func:`stack_tokens` accepts several shapes)."""
        if not parts:
            raise ValueError("cannot concatenate an empty list of VisualTokens")
        grids = {p.shape_key for p in parts}
        if len(grids) != 1:
            raise ValueError(f"cannot concatenate VisualTokens with different grids {sorted(grids)}; "
                             f"use stack_tokens(...) for images of several sizes")
        keys = tuple(k for p in parts for k in p.image_keys)
        batch = VisualTokens(
            features=torch.cat([p.features for p in parts]),
            embeddings=torch.cat([p.embeddings for p in parts]),
            cls_attention=torch.cat([p.cls_attention for p in parts]),
            cls_feature=torch.cat([p.cls_feature for p in parts]),
            keys=torch.cat([p.keys for p in parts]),
            grid=parts[0].grid,
            image_keys=keys if len(keys) == sum(p.batch_size for p in parts) else (),
            layout=parts[0].layout,
        )
        # derived quantities are computed per part (and kept there): see derived()
        object.__setattr__(batch, "_parts", tuple(q for p in parts for q in (p._parts or (p,))))
        return batch


@dataclass(frozen=True)
class RaggedTokens:
    """A batch of images of several shapes: one single-image :class:`VisualTokens` per row.

    Pruners never see it: the adapter splits it into sub-batches of one shape
    (:meth:`groups`), prunes and scores each, and puts the rows back in order."""

    rows: tuple[VisualTokens, ...]

    def __post_init__(self) -> None:
        if any(r.batch_size != 1 for r in self.rows):
            raise ValueError("RaggedTokens holds one image per row")

    @property
    def batch_size(self) -> int:
        return len(self.rows)

    @property
    def image_keys(self) -> tuple[str, ...]:
        keys = tuple(k for r in self.rows for k in r.image_keys)
        return keys if len(keys) == len(self.rows) else ()

    @property
    def num_patches(self) -> int:
        """The largest N of the batch (each row's own N is ``rows[i].num_patches``)."""
        return max(r.num_patches for r in self.rows)

    def groups(self) -> list[tuple[list[int], VisualTokens]]:
        """(row indices, their tokens as one batch) per shape, in order of first appearance."""
        members: dict[tuple, list[int]] = {}
        for i, row in enumerate(self.rows):
            members.setdefault(row.shape_key, []).append(i)
        return [(idx, VisualTokens.concat([self.rows[i] for i in idx])) for idx in members.values()]

    def __getitem__(self, index: int | slice | list[int] | torch.Tensor) -> "VisualTokens | RaggedTokens":
        picked = torch.arange(len(self.rows))[[index] if isinstance(index, int) else index].tolist()
        return stack_tokens([self.rows[i] for i in picked])

    def to(self, device: torch.device | str) -> "RaggedTokens":
        return RaggedTokens(tuple(r.to(device) for r in self.rows))


def stack_tokens(parts: list[VisualTokens]) -> VisualTokens | RaggedTokens:
    """One batch from several: a :class:`VisualTokens` when every part has the same shape
    (N, grid, layout), else a :class:`RaggedTokens` with one row per image."""
    if not parts:
        raise ValueError("cannot stack an empty list of VisualTokens")
    if len({p.shape_key for p in parts}) == 1:
        return VisualTokens.concat(parts)
    # single images as they are (the adapter's cached rows keep their memo, see VisualTokens.derived)
    return RaggedTokens(tuple(p if p.batch_size == 1 else p[i] for p in parts for i in range(p.batch_size)))


@dataclass(frozen=True)
class QueryContext:
    """Question-side signals for instruction-aware pruners, one row per image of the batch.

    Attributes
    ----------
    text_embedding:
        ``(B, D_l)`` mean of the language model's input embeddings over the question's tokens
        (the question text only, without system prompt or answer instruction).
    text_attention:
        ``(B, N)`` attention of the last prompt token over the image tokens in one decoder
        layer of a full-token prefill, averaged over heads (``None`` when not computed).
    """

    text_embedding: torch.Tensor
    text_attention: torch.Tensor | None = None


@dataclass(frozen=True)
class Selection:
    """A pruner's output for a batch.

    Attributes
    ----------
    indices:
        ``(B, K)`` kept patch indices, ascending (raster order), distinct, in ``[0, N)``.
        For merging pruners these are the patches kept as they are.
    merged:
        ``None`` for pure selection. For merging pruners (VisionZip), the complete token
        sequence to feed the LLM, as ``(B, T, D_v)`` pre-projector features; the adapter
        projects them. ``indices`` then only documents which patches survived unmerged.
    """

    indices: torch.Tensor
    merged: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        """Number of visual tokens the LLM will see."""
        return self.indices.shape[1] if self.merged is None else self.merged.shape[1]
