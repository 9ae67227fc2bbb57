"""Test helpers: small synthetic VisualTokens / QueryContext (numpy PCG64 → stable across torch versions)."""

from __future__ import annotations

import numpy as np
import torch

from studylib.tokens import QueryContext, VisualTokens
from studylib.pruners import get_pruner, list_pruners


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def make_tokens(
    seed: int,
    b: int = 2,
    rows: int = 6,
    cols: int = 6,
    dv: int = 16,
    dl: int = 24,
    dh: int = 8,
    clusters: int = 4,
    dtype: torch.dtype = torch.float32,
    prefix: str = "img",
) -> tuple[VisualTokens, QueryContext]:
    """Clustered random features, a projected copy, a softmax-like CLS attention (CLS column dropped,
    not renormalised), head-mean keys, CLS feature; plus a query with text embedding and attention."""
    rng = np.random.default_rng(seed)
    n = rows * cols
    centers = rng.normal(size=(b, clusters, dv)) * 2.0
    assign = rng.integers(clusters, size=(b, n))
    feats = centers[np.arange(b)[:, None], assign] + 0.7 * rng.normal(size=(b, n, dv))
    w = rng.normal(size=(dv, dl)) / np.sqrt(dv)
    emb = np.tanh(feats @ w) + 0.05 * rng.normal(size=(b, n, dl))
    wk = rng.normal(size=(dv, dh)) / np.sqrt(dv)
    keys = feats @ wk + 0.1 * rng.normal(size=(b, n, dh))
    att = _softmax(1.5 * rng.normal(size=(b, n + 1)))[:, 1:]
    cls_feature = rng.normal(size=(b, dv))
    text = rng.normal(size=(b, dl))
    text_att = _softmax(rng.normal(size=(b, n)))

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)

    tokens = VisualTokens(
        features=t(feats), embeddings=t(emb), cls_attention=t(att), cls_feature=t(cls_feature),
        keys=t(keys), grid=(rows, cols), image_keys=tuple(f"{prefix}{seed}_{i}" for i in range(b)),
    )
    return tokens, QueryContext(text_embedding=t(text), text_attention=t(text_att))


def tokens_from(features=None, embeddings=None, attention=None, keys=None, cls_feature=None, grid=None,
                dtype=torch.float64) -> VisualTokens:
    """VisualTokens (batch 1) from hand-written arrays; unspecified fields get harmless defaults."""
    arrays = [a for a in (features, embeddings) if a is not None]
    n = len(arrays[0]) if arrays else len(attention)
    f = np.asarray(features if features is not None else np.eye(n, 2) + 1.0, dtype=np.float64)
    e = np.asarray(embeddings if embeddings is not None else f, dtype=np.float64)
    a = np.asarray(attention if attention is not None else np.full(n, 1.0 / (n + 1)), dtype=np.float64)
    k = np.asarray(keys if keys is not None else f, dtype=np.float64)
    c = np.asarray(cls_feature if cls_feature is not None else np.zeros(f.shape[1]), dtype=np.float64)
    grid = grid or (1, n)
    as_t = lambda x: torch.tensor(x, dtype=dtype).unsqueeze(0)  # noqa: E731
    return VisualTokens(as_t(f), as_t(e), as_t(a), as_t(c), as_t(k), grid, ("hand",))


#: every vision-stage pruner at its defaults plus the non-default variants worth exercising
VARIANT_SPECS = [
    "scope(alpha=0,p=1)", "scope(alpha=0.5,p=2)", "scope(combine=add)",
    "random(seed=1)", "fps(start=isolated)", "fps(start=saliency,space=vision)", "divprune(space=vision)",
    "vispruner(r=0.75)", "vispruner(r=0)", "vispruner(r=1)", "visionzip(cr=0.3)",
    "idselect(imp=unified)", "idselect(imp=relevance,update=max)", "idselect(gamma=0)",
    "agile(order=pick)", "agile(tau_max=2)", "agile_entropy(space=llm)",
    "agile_mix(div=fps)", "agile_mix(div=vispruner)", "agile_mix(slope=-2)",
    "cdpruner(negate=false)", "scope_adaptive(signal=entropy,inverse=true)",
]
VISION_SPECS = [str(get_pruner(n)) for n in list_pruners("vision")] + VARIANT_SPECS
