"""``random`` — uniform random subset of ``K`` tokens, seeded and reproducible.

For image ``b`` the draw is ``randperm(N, generator=g_b)[:K]`` (then sorted), where ``g_b`` is a
CPU ``torch.Generator`` seeded with a 63-bit BLAKE2b hash of ``"{seed}:{image_key}"``.  The
selection therefore depends only on ``(seed, image key, N, K)``: it is reproducible, independent
per image, and unchanged by how images are batched.  When ``VisualTokens.image_keys`` is empty the
batch position stands in for the key (``"{seed}:#{b}"``), which is deterministic but then depends
on the batch layout — pass image keys for runs that must be comparable across batchings.
Seed 000 reports the mean ± std over three seeds (e.g. 0, 1, 2).
"""

from __future__ import annotations

import hashlib

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import selection
from studylib.pruners.registry import Param, register


def image_seed(seed: int, key: str) -> int:
    """63-bit generator seed from the pruner seed and an image key."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@register(
    "random",
    Param("seed", int, 0, "seed of the per-image generator", low=0, key=True),
    summary="uniform random subset, seeded per image key",
    family="random", source="seed 000 Table 3 (random pruning, 3 seeds)",
)
def random_pruner(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, seed: int) -> Selection:
    """Uniform random ``K`` of ``N`` per image, generator seeded from ``(seed, image key)``."""
    b, n = tokens.batch_size, tokens.num_patches
    keys = tokens.image_keys or tuple(f"#{i}" for i in range(b))
    rows = []
    for key in keys:
        g = torch.Generator().manual_seed(image_seed(seed, key))
        rows.append(torch.randperm(n, generator=g)[:k].sort().values)
    return selection(torch.stack(rows).to(tokens.features.device))
